"""The fast preprocessing path against the checkpoint's own image processor."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BlipImageProcessorPil, CLIPImageProcessorPil, SiglipImageProcessorPil

import vlmzoo
from vlmzoo.engine.cpu.fast_prep import FastPrep
from vlmzoo.images import load_image

PROCESSORS = {
    "clip-224": CLIPImageProcessorPil(),  # shortest edge 224, centre crop 224
    "clip-tiny": CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    "siglip-224": SiglipImageProcessorPil(),  # squash to 224x224, mean/std 0.5
    "blip-384": BlipImageProcessorPil(),
}


@pytest.mark.parametrize("name", PROCESSORS)
def test_fast_prep_equals_the_processor(name, photos):
    proc = PROCESSORS[name]
    fast = FastPrep.for_processor(proc)
    assert fast is not None
    images = [load_image(p).image for p in photos] + [Image.new("RGB", (300, 1000), (10, 200, 30))]
    for img in images:  # square, landscape, portrait
        ours = fast.finish(np.stack([fast.pixels(img)]))
        theirs = proc([img], return_tensors="pt")["pixel_values"]
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=1e-5), (name, img.size, (ours - theirs).abs().max())



@pytest.mark.parametrize("name", ["clip-224", "siglip-224", "blip-384"])
def test_approximate_resize_is_within_rounding_of_pil(name, photos):
    """Outside exact mode torch's antialiased resize stands in for PIL's (same filter)."""
    proc = PROCESSORS[name]
    fast = FastPrep.for_processor(proc)
    images = [load_image(p).image.resize((1024, 768)) for p in photos[:3]]
    images.append(Image.new("RGB", (300, 1000), (10, 200, 30)))
    for img in images:
        exact, approx = fast.pixels(img).astype(int), fast.pixels(img, approximate=True).astype(int)
        assert exact.shape == approx.shape
        # rounding differences (a few values off by 2 in bicubic), not a shifted grid
        assert np.abs(exact - approx).max() <= 2
        assert (exact != approx).mean() < 0.01
    photo = images[0]  # the check can fail: a picture moved by one pixel is far more than 2 levels off
    moved = fast.pixels(photo.transform(photo.size, Image.AFFINE, (1, 0, 1, 0, 1, 0)), approximate=True)
    assert np.abs(moved.astype(int) - fast.pixels(photo).astype(int)).max() > 2


def test_unusual_processors_fall_back():
    class Custom(CLIPImageProcessorPil):
        def _preprocess(self, *args, **kwargs):
            return super()._preprocess(*args, **kwargs)

    assert FastPrep.for_processor(Custom()) is None
    assert FastPrep.for_processor(object()) is None


def test_draft_decodes_jpegs_smaller_but_never_below_the_target(tmp_path, photos):
    src = load_image(photos[0]).image.resize((1024, 768))
    src.save(tmp_path / "big.jpg", quality=90)
    fast = FastPrep.for_processor(PROCESSORS["clip-224"])
    drafted = load_image(tmp_path / "big.jpg", draft=fast.draft_request()).image
    assert drafted.size == (512, 384)  # 1/2 scale: 1/4 would put the short side under 224
    assert load_image(tmp_path / "big.jpg").image.size == (1024, 768)
    assert load_image(photos[0], draft=(224, 224)).image.size == load_image(photos[0]).image.size  # PNG: no draft


def test_bf16_with_draft_keeps_embeddings_close_to_exact_fp32(tiny, photos, tmp_path):
    for i, p in enumerate(photos):
        load_image(p).image.resize((1024, 768)).save(tmp_path / f"{i}.jpg", quality=90)
    jpgs = sorted(str(p) for p in tmp_path.glob("*.jpg"))
    exact = vlmzoo.load(tiny["clip"], dtype="float32").embed_images(jpgs).vectors
    fast = vlmzoo.load(tiny["clip"], dtype="bfloat16").embed_images(jpgs).vectors
    cos = (exact * fast).sum(axis=1)
    assert cos.min() >= 0.999, cos


@pytest.mark.parametrize("family", ["siglip", "clip"])
def test_bf16_fuses_the_mlp_activations_and_keeps_embeddings_close(tiny, photos, family):
    """The fused linear+activation path (engine/cpu/fused_mlp.py: GELU for SigLIP, quick_gelu via
    rescaled weights and silu for CLIP) is on in bf16 and off in exact fp32, and changes
    embeddings by no more than bf16 rounding does."""
    from transformers import AutoModel

    from vlmzoo.engine.cpu.fused_mlp import _onednn_runs_bf16_fusion, fuse_mlp_activations

    exact = vlmzoo.load(tiny[family], dtype="float32")
    fast = vlmzoo.load(tiny[family], dtype="bfloat16")
    config = fast.model.config
    head = 1 if family == "siglip" else 0  # SigLIP's attention-pooling head has an MLP too
    assert exact.fused_mlps == 0
    # oneDNN needs AVX-512 for a bf16 fused linear; elsewhere nothing is fused and the model still runs
    mlps = config.vision_config.num_hidden_layers + config.text_config.num_hidden_layers + head
    assert fast.fused_mlps == (mlps if _onednn_runs_bf16_fusion() else 0)
    assert fuse_mlp_activations(fast.model) == 0  # a second call changes nothing
    # the same bf16 model, unfused: what the fusion alone changes
    plain = vlmzoo.load(tiny[family], dtype="bfloat16")
    plain.model = AutoModel.from_pretrained(tiny[family], dtype=torch.bfloat16).eval()
    images = photos[:4]
    fused_vecs, plain_vecs = fast.embed_images(images).vectors, plain.embed_images(images).vectors
    assert (fused_vecs * plain_vecs).sum(axis=1).min() >= 0.9999
    assert (fused_vecs * exact.embed_images(images).vectors).sum(axis=1).min() >= 0.999
    texts = ["a cat", "a red car"]
    assert (fast.embed_texts(texts).vectors * plain.embed_texts(texts).vectors).sum(axis=1).min() >= 0.9999


def test_bf16_without_onednn_fusion_runs_unfused(tiny, photos, monkeypatch):
    """On a CPU where oneDNN has no bf16 fused linear (AVX2 only) the MLPs stay as they are."""
    from vlmzoo.engine.cpu import fused_mlp

    monkeypatch.setattr(fused_mlp, "_onednn_runs_bf16_fusion", lambda: False)
    fast = vlmzoo.load(tiny["siglip"], dtype="bfloat16")
    assert fast.fused_mlps == 0
    assert not hasattr(fast.model.vision_model.encoder.layers[0].mlp, "_gelu_algorithm")
    exact = vlmzoo.load(tiny["siglip"], dtype="float32")
    images = photos[:2]
    assert (fast.embed_images(images).vectors * exact.embed_images(images).vectors).sum(axis=1).min() >= 0.999
