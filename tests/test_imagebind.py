"""ImageBind, implemented in vlmzoo, held to the official code's own outputs.

tests/data/imagebind/ holds a tiny random checkpoint in the official layout (imagebind_huge.pth,
a pickled state dict) and the official implementation's outputs on fixed inputs of all six
modalities (its README says from where and how). vlmzoo loads the checkpoint through
``vlmzoo.load`` (the pickle read with weights_only=True and converted once to safetensors) and
must reproduce them: preprocessing exactly, embeddings and the README's similarity matrices
within 1e-5 in float32. The full-size check maps every tensor of imagebind_huge onto vlmzoo's
modules built at full size on the meta device. (Audio preprocessing: test_imagebind_audio.py;
the tokenizer: test_imagebind_tokenizer.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pickles import Payload, with_payload
from PIL import Image

import vlmzoo
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.checkpoints import plan
from vlmzoo.families.imagebind import convert, processing
from vlmzoo.families.imagebind.modeling import ImageBind, ImageBindConfig
from vlmzoo.families.pickled import converted
from vlmzoo.modalities import IMU, Audio, Depth, Thermal

DATA = Path(__file__).parent / "data" / "imagebind"
IMAGES = Path(__file__).parent / "data" / "moondream2" / "images"
TOL = 1e-5
WAVS = ["tone-16k-mono.wav", "chirp-44k-stereo.wav", "short-22k-mono.wav"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """vlmzoo's cache (where the pickle is converted) in a folder of this module's own."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["XDG_CACHE_HOME"])
    if old is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="module")
def model(cache):
    return vlmzoo.load(DATA / "checkpoint", dtype="float32")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((DATA / "reference.json").read_text(encoding="utf-8"))


def _images(reference) -> list[Path]:
    return [IMAGES / f for f in reference["preprocessed"]["vision"]["files"]]


def _official_inputs(model, reference) -> dict:
    """Every modality's model input as the official run had it, from vlmzoo's preprocessing."""
    return {
        "vision": processing.vision_pixels([Image.open(p).convert("RGB") for p in _images(reference)]),
        "text": model.processor(reference["preprocessed"]["text"]["texts"]),
        "audio": torch.stack([model._inputs("audio", [Audio(str(DATA / w))])[1][0] for w in WAVS]),
        "depth": torch.stack([processing.depth_input(Depth(str(DATA / f))) for f in ("depth-room.png", "depth-sphere.png")]),
        "thermal": torch.stack([processing.thermal_input(Thermal(str(DATA / f)))
                                for f in ("thermal-blobs.png", "thermal-stripes.png")]),
        "imu": torch.stack([processing.imu_input(IMU(x)) for x in np.load(DATA / "imu.npy")]),
    }


# -- preprocessing -------------------------------------------------------------------------------


def test_vision_preprocessing_is_bit_exact(reference):
    pixels = processing.vision_pixels([Image.open(p).convert("RGB") for p in _images(reference)])
    want = reference["preprocessed"]["vision"]
    assert list(pixels.shape) == want["shape"]
    assert hashlib.sha256(pixels.numpy().tobytes()).hexdigest() == want["sha256_f32"]
    for got, image in zip(pixels, want["per_image"]):
        assert hashlib.sha256(got.numpy().tobytes()).hexdigest() == image["sha256_f32"]


def test_text_ids_equal_the_official(model, reference):
    want = reference["preprocessed"]["text"]
    ids = model.processor(want["texts"])
    assert ids.tolist() == want["ids"]
    assert ids.argmax(dim=-1).tolist() == want["seq_len_argmax"]


@pytest.mark.parametrize("modality", ["depth", "thermal"])
def test_depth_and_thermal_files_become_the_recorded_model_inputs(modality):
    files = {"depth": ("depth-room.png", "depth-sphere.png"), "thermal": ("thermal-blobs.png", "thermal-stripes.png")}
    read = {"depth": lambda f: processing.depth_input(Depth(str(DATA / f))),
            "thermal": lambda f: processing.thermal_input(Thermal(str(DATA / f)))}[modality]
    got = torch.stack([read(f) for f in files[modality]]).numpy()
    np.testing.assert_array_equal(got, np.load(DATA / f"{modality}-input.npy"))


def test_audio_files_become_the_official_melspec(model):
    got = torch.stack([model._inputs("audio", [Audio(str(DATA / w))])[1][0] for w in WAVS]).numpy()
    np.testing.assert_allclose(got, np.load(DATA / "audio-melspec.npy"), rtol=0, atol=1e-4)


# -- the model -----------------------------------------------------------------------------------


def test_every_modality_embeds_as_the_official_model(model, reference):
    inputs = _official_inputs(model, reference)
    with torch.inference_mode():
        out = model.model(inputs)
    for modality in inputs:
        want = np.load(DATA / f"embeddings-{modality}.npy")
        np.testing.assert_allclose(out[modality].numpy(), want, rtol=0, atol=TOL, err_msg=modality)
        np.testing.assert_allclose(out[modality].numpy(), np.array(reference["embeddings"][modality]["values"]),
                                   rtol=0, atol=TOL, err_msg=modality)
    # head outputs too (before normalising and scaling): the trunks, not only the directions
    with torch.inference_mode():
        head = model.model.encoders["depth"].head_output(inputs["depth"])
    np.testing.assert_allclose(head.numpy(), np.array(reference["embeddings"]["depth"]["head_output"]["values"]), atol=TOL)


def test_video_clips_are_averaged_as_the_official_model(model, reference):
    pixels = processing.vision_pixels([Image.open(p).convert("RGB") for p in _images(reference)])
    video = torch.stack([torch.stack([pixels[0], pixels[1]], dim=1), torch.stack([pixels[2], pixels[3]], dim=1)])
    with torch.inference_mode():
        got = model.model.encoders["vision"](video[None])  # (1, 2 clips, 3, 2 frames, 224, 224)
        still = model.model.encoders["vision"](torch.stack([pixels[4], pixels[4]], dim=1)[None, None])
        image = model.model.encoders["vision"](pixels[4:5])
    np.testing.assert_allclose(got[0].numpy(), reference["extra"]["vision_video"]["embedding"], atol=TOL)
    np.testing.assert_allclose(still.numpy(), image.numpy(), atol=1e-6)  # a still clip is the image


@pytest.mark.parametrize("pair", ["vision_x_text", "audio_x_text", "depth_x_text", "thermal_x_text", "imu_x_text"])
def test_classify_gives_the_readme_softmax(model, reference, pair):
    """``classify`` with the texts as labels is the official README's softmax(emb_x @ emb_text.T)."""
    texts = reference["preprocessed"]["text"]["texts"]
    modality = pair.split("_x_")[0]
    items = {"vision": [str(p) for p in _images(reference)],
             "audio": [Audio(str(DATA / w)) for w in WAVS],
             "depth": [Depth(str(DATA / f)) for f in ("depth-room.png", "depth-sphere.png")],
             "thermal": [Thermal(str(DATA / f)) for f in ("thermal-blobs.png", "thermal-stripes.png")],
             "imu": [IMU(x) for x in np.load(DATA / "imu.npy")]}[modality]
    results = model.classify(items, texts)
    got = np.array([[r.as_dict()[t] for t in texts] for r in results])
    np.testing.assert_allclose(got, np.array(reference["similarities"][pair]), atol=1e-5)


def test_embed_and_match_give_unit_vectors_and_their_cosines(model, reference):
    audio = model.embed([Audio(str(DATA / w)) for w in WAVS])
    assert audio.modality == "audio" and audio.inputs == tuple(str(DATA / w) for w in WAVS)
    np.testing.assert_allclose(np.linalg.norm(audio.vectors, axis=1), 1.0, atol=1e-6)
    official = np.load(DATA / "embeddings-audio.npy")
    np.testing.assert_allclose(audio.vectors, official / np.linalg.norm(official, axis=1, keepdims=True), atol=TOL)
    images = model.embed_images([str(p) for p in _images(reference)[:2]])
    scores = model.match([str(p) for p in _images(reference)[:2]], [Audio(str(DATA / w)) for w in WAVS])
    assert scores.kind == "cosine" and scores.scores.shape == (2, 3)
    np.testing.assert_allclose(scores.scores, images.vectors @ audio.vectors.T, atol=1e-6)
    hits = model.retrieve(images=[Audio(str(DATA / w)) for w in WAVS], texts=["A dog.", "A car"], k=2)
    assert [h.query for h in hits] == ["A dog.", "A car"]
    text = model.embed_texts(["A dog.", "A car"]).vectors
    for q, row in zip(hits, text):
        cos = audio.vectors @ row
        assert [h.index for h in q.hits] == list(np.argsort(-cos, kind="stable")[:2])


def test_an_audio_array_embeds_as_its_file(model):
    import soundfile

    samples, rate = soundfile.read(DATA / "chirp-44k-stereo.wav", dtype="float32", always_2d=True)
    from_file = model.embed(Audio(str(DATA / "chirp-44k-stereo.wav"))).vectors
    from_array = model.embed(Audio(samples.T.copy(), rate=rate))
    np.testing.assert_array_equal(from_array.vectors, from_file)
    assert from_array.inputs == ("<audio array 2x110250>",)


# -- the checkpoint ------------------------------------------------------------------------------


def test_full_size_layout_maps_every_official_tensor():
    facts = json.loads((DATA / "tensors-full-size.json").read_text())
    with torch.device("meta"):
        model = ImageBind(ImageBindConfig())
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    steps = plan({k: tuple(v) for k, v in facts["tensors"].items()}, convert.TABLE, expected)
    assert steps.problems == []
    assert len(steps.steps) == facts["n_tensors"] == 1311
    assert sum(p.numel() for p in model.parameters()) == facts["total_parameters"] == 1_200_781_057


def test_an_unmapped_or_missing_tensor_is_an_error(tmp_path, cache):
    state = torch.load(DATA / "checkpoint" / "imagebind_huge.pth", weights_only=True)
    state["modality_heads.audio.9.weight"] = torch.zeros(1)
    shutil.copy(DATA / "checkpoint" / "bpe_simple_vocab_16e6.txt.gz", tmp_path)
    shutil.copy(DATA / "checkpoint" / "config.json", tmp_path)
    torch.save(state, tmp_path / "imagebind_huge.pth")
    with pytest.raises(UnknownModelError, match=r"no rule maps.*modality_heads\.audio\.9\.weight"):
        vlmzoo.load(tmp_path)
    del state["modality_heads.audio.9.weight"], state["modality_trunks.imu.blocks.1.norm_2.bias"]
    torch.save(state, tmp_path / "imagebind_huge.pth")
    with pytest.raises(UnknownModelError, match=r"does not hold.*encoders\.imu\.blocks\.1\.norm_2\.bias"):
        vlmzoo.load(tmp_path)


def test_the_pickle_is_converted_once(model, cache):
    folder = converted(DATA / "checkpoint" / "imagebind_huge.pth")
    file = folder / "model.safetensors"
    assert folder.parent.parent == cache / "vlmzoo" and file.is_file()
    stamp = file.stat().st_mtime_ns
    vlmzoo.load(DATA / "checkpoint", dtype="float32")
    assert file.stat().st_mtime_ns == stamp  # read again, not written again
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no half-written file left


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the legacy pickle below: refused anyway
def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    marker = tmp_path / "ran"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(DATA / "checkpoint" / "bpe_simple_vocab_16e6.txt.gz", folder)
    shutil.copy(DATA / "checkpoint" / "imagebind_huge.pth", folder)
    with_payload(folder / "imagebind_huge.pth", marker)
    with pytest.raises(UnknownModelError, match=r"imagebind_huge\.pth: refused: the pickle holds more than tensors"):
        vlmzoo.load(folder)
    assert not marker.exists()
    # the same payload in a legacy (non-zip) pickle
    with open(folder / "imagebind_huge.pth", "wb") as f:
        pickle.dump({"x": Payload(marker)}, f)
    with pytest.raises(UnknownModelError, match="refused"):
        vlmzoo.load(folder)
    assert not marker.exists()
    assert not list((tmp_path / "cache").rglob("*.safetensors"))  # nothing converted, nothing half-written


def test_damaged_or_foreign_pickles_are_named(tmp_path, cache):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    data = (DATA / "checkpoint" / "imagebind_huge.pth").read_bytes()
    (folder / "imagebind_huge.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnknownModelError, match=r"imagebind_huge\.pth: not a readable PyTorch weights file"):
        vlmzoo.load(folder)
    torch.save([torch.zeros(2)], folder / "imagebind_huge.pth")
    with pytest.raises(UnknownModelError, match="not a state dict of tensors"):
        vlmzoo.load(folder)


def test_a_folder_without_the_vocabulary_is_named(tmp_path, cache):
    shutil.copy(DATA / "checkpoint" / "imagebind_huge.pth", tmp_path)
    shutil.copy(DATA / "checkpoint" / "config.json", tmp_path)
    with pytest.raises(UnknownModelError, match=str(tmp_path)):
        vlmzoo.load(tmp_path)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_inputs_get_errors_naming_them(model, tmp_path):
    rgb = tmp_path / "rgb-depth.png"
    Image.new("RGB", (64, 48)).save(rgb)
    with pytest.raises(InputError, match=r"rgb-depth\.png: a depth map must be a single-channel 16-bit PNG"):
        model.embed(Depth(str(rgb)))
    deep = tmp_path / "deep-thermal.png"
    Image.fromarray(np.zeros((40, 40), np.uint16)).save(deep)
    with pytest.raises(InputError, match=r"deep-thermal\.png: a thermal image must be 8-bit"):
        model.embed(Thermal(str(deep)))
    short = tmp_path / "short-imu.npy"
    np.save(short, np.zeros((6, 500), np.float32))
    with pytest.raises(InputError, match=r"short-imu\.npy: .*6 channels .* 2000 samples.*\(6, 500\)"):
        model.embed(IMU(str(short)))
    csv = tmp_path / "imu.csv"
    csv.write_text("ax,ay,az,gx,gy,gz\n" + "\n".join("1,2,3,4,5,x" for _ in range(3)))
    with pytest.raises(InputError, match=r"imu\.csv: not a CSV of numbers"):
        model.embed(IMU(str(csv)))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match=r"objects\.npy: not a readable \.npy array"):
        model.embed(Depth(str(objects)))
    with pytest.raises(InputError, match=r"nowhere\.wav"):
        model.embed(Audio(str(tmp_path / "nowhere.wav")))
    with pytest.raises(InputError, match="mixes modalities"):
        model.embed([Audio(str(DATA / WAVS[0])), Depth(str(DATA / "depth-room.png"))])
    with pytest.raises(InputError, match="rate"):
        Audio(np.zeros((1, 16000), np.float32))
    with pytest.raises(InputError, match="Audio takes a file path, a numpy array or a file's bytes, got int"):
        Audio(12)


def test_an_imu_csv_with_samples_in_rows_reads_as_the_array(model, tmp_path):
    series = np.load(DATA / "imu.npy")[0]
    csv = tmp_path / "walk.csv"
    csv.write_text("ax,ay,az,gx,gy,gz\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in series.T))
    np.testing.assert_array_equal(model.embed(IMU(str(csv))).vectors, model.embed(IMU(series)).vectors)


def test_the_catalog_card_is_supported_and_names_the_upstream_commit():
    card = vlmzoo.catalog.get("imagebind").card
    assert card.support == "supported" and card.family == "imagebind"
    assert "53680b02" in card.ported_from


# -- the command line ----------------------------------------------------------------------------


def _cli(*args):
    from click.testing import CliRunner

    from vlmzoo.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_embeds_and_classifies_a_sound_as_the_python_api(model, tmp_path):
    wav = DATA / WAVS[1]
    out = tmp_path / "emb.jsonl"
    r = _cli("embed", wav, "--text", "rain", "--model", DATA / "checkpoint", "--dtype", "float32", "--out", out)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["input"], row["modality"]) for row in rows] == [(str(wav), "audio"), ("rain", "text")]
    np.testing.assert_allclose(rows[0]["embedding"], model.embed(Audio(str(wav))).vectors[0], atol=1e-6)
    r = _cli("classify", wav, "--labels", "dog,rain", "--model", DATA / "checkpoint", "--dtype", "float32", "--jsonl")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output.strip().splitlines()[-1])
    want = model.classify(Audio(str(wav)), ["dog", "rain"])
    assert got["label"] == want.label and got["scores"] == pytest.approx(want.as_dict(), abs=1e-6)


def test_cli_takes_depth_when_told_and_refuses_mixed_inputs(model):
    depth = DATA / "depth-room.png"
    r = _cli("match", depth, "--modality", "depth", "--texts", "a kitchen,a bedroom", "--model", DATA / "checkpoint",
             "--dtype", "float32", "--jsonl")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.strip().splitlines()]
    want = model.match(Depth(str(depth)), ["a kitchen", "a bedroom"]).scores[0]
    assert [row["score"] for row in rows] == pytest.approx(list(want), abs=1e-6)
    r = _cli("embed", DATA / WAVS[0], IMAGES / "astronaut.png", "--model", DATA / "checkpoint")
    assert r.exit_code != 0 and "mix audio files and images" in r.output


def test_the_memory_check_counts_the_pickle_before_loading(tmp_path, cache, monkeypatch):
    """The official release is a pickle: its parameters are counted from the memory-mapped
    tensors' shapes, so a machine without room refuses before converting or loading anything."""
    from vlmzoo.engine import memory

    folder = tmp_path / "ckpt"
    shutil.copytree(DATA / "checkpoint", folder)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(memory.InsufficientMemoryError, match=r"needs about .* \(0\.00B parameters x 4 bytes"):
        vlmzoo.load(folder, dtype="float32")
    state = torch.load(DATA / "checkpoint" / "imagebind_huge.pth", weights_only=True)
    assert vlmzoo.families.family_class("imagebind").weight_params(folder) == pytest.approx(
        sum(t.numel() for t in state.values()) / 1e9)
    assert not list((cache / "vlmzoo" / "converted").glob(f"imagebind_huge-*{folder.name}*"))
