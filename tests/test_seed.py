"""SEED (the SEED-2 image tokenizer) and SEED-LLaMA 8B / 14B, implemented in vlmzoo, held to the
official code.

tests/data/seed/ holds tiny random checkpoints in the official file layout (seed_tokenizer/ with
seed_quantizer.pt and the LLaMA tokenizer files, eva_vit_g.pth, bert-base-uncased/, the two LLM
folders as pickled pytorch_model.bin, a tiny stable-diffusion-2-1-unclip/ diffusers folder) and the
official implementation's outputs on fixed inputs (its README says from where and how). vlmzoo
loads folders of them through ``vlmzoo.load`` (the pickles read with weights_only=True, converted
once to safetensors) and must reproduce them: pixels bit-exact, codes exactly, causal and unCLIP
embeddings within 1e-5, prompt ids exactly, first logits within 1e-4, greedy answers exactly, the
image codes ``imagine`` writes exactly and the decoded pictures within one grey level. The
full-size checks map every tensor of the released files onto vlmzoo's modules built at full size
on the meta device.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pickles import with_payload
from PIL import Image

import vlmzoo
from vlmzoo import catalog
from vlmzoo.engine.generation import GenerationOptions
from vlmzoo.errors import InputError, TaskNotSupportedError, UnknownModelError
from vlmzoo.families.checkpoints import plan, route
from vlmzoo.families.seed import convert, processing
from vlmzoo.tasks import AskRequest, Message, parse_messages

DATA = Path(__file__).parent / "data" / "seed"
IMAGES = Path(__file__).parent / "data" / "moondream2" / "images"
TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 4}  # make_reference.py VIT_TINY (the rest: EVA-g's)
SHARED = ("seed_tokenizer", "eva_vit_g.pth", "bert-base-uncased", "stable-diffusion-2-1-unclip")
LLMS = {"8b": "seed_llama_8b_sft", "14b": "seed_llama_14b_sft"}
UPSTREAM = "93b3cf408196735ec4820ad2eb4d9dc4a670003d"
TOL = 1e-4
QUESTION, CAPTION, FOLLOW_UP = "What is this animal?", "Describe this image in detail.", "What color is it?"
T2I, EDIT = "Can you generate an image of a dog on the green grass?", "Can you make the cat wear sunglasses?"


def _layout(folder: Path, llm: str | None = None, files=SHARED, settings=None) -> Path:
    """A folder as a user lays it out: links to the fixture's files, and seed.json with the tiny
    ViT's sizes (the official code hard-codes EVA-g's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in files + ((LLMS[llm],) if llm else ()):
        (folder / name).symlink_to(DATA / name)
    (folder / convert.SETTINGS).write_text(json.dumps({"vit": TINY_VIT} if settings is None else settings))
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """vlmzoo's cache (where the pickles are converted) in a folder of this module's own."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed")
    return {"tokenizer": _layout(root / "tokenizer"), **{v: _layout(root / v, v) for v in LLMS}}


@pytest.fixture(scope="module")
def models(cache, folders):
    return {name: vlmzoo.load(folder, dtype="float32") for name, folder in folders.items()}


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads((DATA / "reference.json").read_text(encoding="utf-8"))


def _image(name: str) -> Image.Image:
    return Image.open(IMAGES / name).convert("RGB")


def _decoded(png: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / png).convert("RGB"), dtype=np.int16)


def _latents() -> torch.Tensor:
    """The official ImageTokenizer's starting latent: drawn in float16 when it was built."""
    return torch.from_numpy(np.load(DATA / "decode-latents-fp16.npy")).float()


def _close_pictures(picture, png: str) -> None:
    """Equal to the official picture within one grey level, at under 0.1% of the values: diffusers
    0.42's StableUnCLIPImg2ImgPipeline computes what the official copy of 0.20's does, in float32,
    with other attention kernels (differences ~1e-6 in the latents, which the test of the latents
    bounds), and rounding to 8 bits turns a few of them into one level."""
    got = np.asarray(picture.convert("RGB"), dtype=np.int16)
    want = _decoded(png)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (png, int(diff.max()), float((diff > 0).mean()))


# -- the image tokenizer -------------------------------------------------------------------------


def test_pixels_are_bit_exact(ref):
    """The scripts' transform (bilinear Resize((224, 224)), ToTensor, CLIP Normalize) and
    ImageTokenizer.processor's (bicubic), byte for byte."""
    for name, r in ref["images"].items():
        pixels = processing.pixels(_image(name))
        assert list(pixels.shape) == r["pixels"]["shape"]
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == r["pixels"]["sha256_f32"], name
        bicubic = processing.pixels(_image(name), "bicubic")
        assert hashlib.sha256(bicubic.tobytes()).hexdigest() == r["processor_path"]["pixels_sha256_f32"], name


def test_codes_and_every_stage_equal_the_official(models, ref):
    """Through vlmzoo.load: EVA ViT-g and ln_vision (stage sums), the causal Q-Former's embeddings
    elementwise within 1e-5, the pre-quantisation vectors, the codes exactly (bilinear and bicubic
    pixels), and the codebook bit for bit."""
    model = models["tokenizer"]
    tokenizer = model.image_tokenizer
    assert model.tasks == {"embed"}
    codebook = tokenizer.codebook.weight.detach().numpy().astype(np.float32)
    assert list(codebook.shape) == ref["codebook"]["shape"]
    assert hashlib.sha256(codebook.tobytes()).hexdigest() == ref["codebook"]["sha256_f32"]
    names = list(ref["images"])
    codes = model.tokenize([IMAGES / n for n in names])
    assert codes.shape == (len(names), 32) and codes.dtype == np.int64
    assert codes.tolist() == [ref["images"][n]["codes"] for n in names]
    worst = 0.0
    for name, r in ref["images"].items():
        pixels = torch.from_numpy(processing.pixels(_image(name)))[None]
        with torch.inference_mode():
            stages = tokenizer.causal_embeddings(pixels)
            _, prequant = tokenizer.quantize(stages["causal_embeddings"])
        for ours, theirs in (("vit", "vit_output"), ("ln_vision", "ln_vision")):
            got = stages[ours].double()
            assert list(got.shape) == r[theirs]["shape"]
            assert abs(float(got.sum()) - r[theirs]["sum"]) < 1e-5 * got.numel(), (name, ours)
            assert abs(float(got.abs().sum()) - r[theirs]["abs_sum"]) < 1e-5 * got.numel(), (name, ours)
        causal = stages["causal_embeddings"][0].numpy()
        want = np.load(DATA / r["causal_embeddings"]["file"])
        np.testing.assert_allclose(causal, want, atol=1e-5, rtol=0, err_msg=name)
        worst = max(worst, float(np.abs(causal - want).max()))
        np.testing.assert_allclose(model.causal_embeddings(IMAGES / name)[0], want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(prequant[0, 0].numpy(), r["prequant"]["first_row"], atol=1e-5, rtol=0)
        with torch.inference_mode():
            bicubic = tokenizer.encode(torch.from_numpy(processing.pixels(_image(name), "bicubic"))[None])
        assert bicubic[0].tolist() == r["processor_path"]["codes"], name
    assert worst < 1e-5


def test_the_qformer_is_causal_among_its_32_queries(models, ref):
    """Perturbing query 20 changes rows 20..31 and leaves rows 0..19 bit for bit, as the
    official check found."""
    tokenizer = models["tokenizer"].image_tokenizer
    check = ref["qformer_causality_check"]
    pixels = torch.from_numpy(processing.pixels(_image("astronaut.png")))[None]
    with torch.inference_mode():
        before = tokenizer.causal_embeddings(pixels)["causal_embeddings"]
        saved = tokenizer.query_tokens.data.clone()
        try:
            tokenizer.query_tokens.data[0, check["perturbed_query"]] += 1.0
            after = tokenizer.causal_embeddings(pixels)["causal_embeddings"]
        finally:
            tokenizer.query_tokens.data.copy_(saved)
    changed = torch.nonzero((before - after).abs().amax(-1)[0] > 0).flatten().tolist()
    assert changed == check["rows_changed"] and check["max_change_rows_before"] == 0.0


def test_embed_is_the_unclip_embedding_of_the_codes(models, ref):
    """embed: each image's codes through the de-tokenizer (get_codebook_entry), as unit vectors;
    the unnormalised embeddings elementwise within 1e-5, for images and for fixed codes."""
    model = models["tokenizer"]
    names = list(ref["images"])
    emb = model.embed([IMAGES / n for n in names])
    assert emb.vectors.shape == (len(names), len(ref["images"]["small.png"]["generation_embedding"]))
    for row, name in zip(emb.vectors, names):
        want = np.array(ref["images"][name]["generation_embedding"], np.float32)
        np.testing.assert_allclose(row, want / np.linalg.norm(want), atol=1e-5, rtol=0, err_msg=name)
    raw = model.code_embeddings([ref["images"][n]["codes"] for n in names])
    np.testing.assert_allclose(raw, [ref["images"][n]["generation_embedding"] for n in names], atol=1e-5, rtol=0)
    fixed = ref["fixed_codes_generation_embedding"]
    np.testing.assert_allclose(model.code_embeddings(fixed["codes"])[0], fixed["embedding"], atol=1e-5, rtol=0)
    # two images embed to the same vector exactly when their codes agree (the embedding is the codes')
    for i, a in enumerate(names):
        for j, b in enumerate(names[:i]):
            same = ref["images"][a]["codes"] == ref["images"][b]["codes"]
            assert (float(emb.vectors[i] @ emb.vectors[j]) > 1 - 1e-6) == same, (a, b)
    with pytest.raises(InputError, match="embeds images only: the released SEED tokenizer has no text side"):
        model.embed_texts(["a cat"])
    with pytest.raises(TaskNotSupportedError, match="cannot 'match'"):
        model.match(IMAGES / "small.png", ["a cat"])
    with pytest.raises(InputError, match=r"codes must be integers of shape \(N, 32\)"):
        model.code_embeddings([[1, 2, 3]])
    with pytest.raises(InputError, match=r"codes must lie in \[0, 8192\)"):
        model.code_embeddings([[8192] * 32])


# -- the LLaMA tokenizer and the prompts -------------------------------------------------------------


def test_the_tokenizer_equals_the_official(ref):
    """transformers 4.30's slow tokenizer with SEED's added tokens: ids (the whitespace stripped
    around added tokens, not around <s>), decoded text with and without special tokens."""
    text = processing.LegacyLlamaTokenizer(DATA / "seed_tokenizer")
    tok = ref["tokenizer"]
    assert len(text) == tok["len"]
    assert [text.token_id(t) for t in ("<img>", "</img>", "<img_00000>", "<img_08191>")] == [
        tok["boi_id"], tok["eoi_id"], tok["img_00000_id"], tok["img_08191_id"]]
    for sample, want in tok["samples"].items():
        assert text.encode(sample) == want["ids"], sample
        assert text.decode(want["ids"]) == want["decode"], sample
        assert text.decode(want["ids"], skip_special_tokens=True) == want["decode_skip_special"], sample


def _request(*parts) -> AskRequest:
    return AskRequest((Message("user", parts),))


def _cases(ref, v):
    """(case, messages, images) for every reference prompt of the LLM ``v``."""
    cases = ref["llm"][v]["cases"]
    for key, case in cases.items():
        kind, _, name = key.partition("/")
        if kind in ("question", "caption", "edit"):
            text = {"question": QUESTION, "caption": CAPTION, "edit": EDIT}[kind]
            yield key, case, [{"role": "user", "content": [{"type": "image", "image": _image(name)},
                                                          {"type": "text", "text": text}]}], [name]
        elif kind == "multi_turn":
            yield key, case, [{"role": "user", "content": [{"type": "image", "image": _image(name)},
                                                          {"type": "text", "text": QUESTION}]},
                              {"role": "assistant", "content": case["first_answer"]},
                              {"role": "user", "content": FOLLOW_UP}], [name]
        elif kind == "text_to_image":
            yield key, case, [{"role": "user", "content": T2I}], []


@pytest.mark.parametrize("v", list(LLMS))
def test_prompts_ids_logits_and_greedy_answers_equal_the_official(models, ref, v):
    """Every reference prompt (a question per image, captions, a second round, text-to-image and
    edit requests): the official prompt text, its ids exactly, the first logits within 1e-4, the
    24 greedy tokens exactly and the scripts' decode of them; through ``ask`` for the chats."""
    model = models[v]
    rows = np.load(DATA / ref["llm"][v]["first_logits_file"])
    worst = 0.0
    for key, case, messages, names in _cases(ref, v):
        if key == "text_to_image_force_boi":
            continue
        prompt = model.prompt(AskRequest(tuple(parse_messages(messages))))
        images = [[model.take_image(_image(n)) for n in names]]
        inputs = model.encode([prompt], images)
        codes = model.tokenize([_image(n) for n in names]).tolist() if names else []
        assert model.prompt_text(prompt, codes) == case["text"], key
        assert inputs["input_ids"][0].tolist() == case["ids"], key
        with torch.inference_mode():
            out = model.model.generate(**inputs, max_new_tokens=len(case["generated"]), do_sample=False,
                                       output_logits=True, return_dict_in_generate=True)
        first = out.logits[0][0].numpy()
        if "first_logits_row" in case:
            np.testing.assert_allclose(first, rows[case["first_logits_row"]], atol=TOL, rtol=0, err_msg=key)
            worst = max(worst, float(np.abs(first - rows[case["first_logits_row"]]).max()))
        np.testing.assert_allclose(first[::64], case["first_logits_every_64th"], atol=TOL, rtol=0, err_msg=key)
        new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
        assert new == case["generated"], key
        assert model.decode(new) == case["decode_skip_special"], key
        if key.startswith(("multi_turn", "question/coffee")):
            answer = model.ask(messages=messages, max_new_tokens=24)
            assert answer.text == case["decode_skip_special"].strip() and answer.num_tokens == 24, key
    assert worst < TOL
    # the demo's force_boi: <img> written after the prompt; greedy from there, exactly
    case = ref["llm"][v]["cases"]["text_to_image_force_boi"]
    ids = model.processor.text.encode(model.prompt(_request(T2I)) + processing.BOI)
    assert ids == case["ids"]
    with torch.inference_mode():
        out = model.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=34, do_sample=False)
    assert out[0, len(ids) - 1:].tolist() == case["generated"]


def test_a_system_text_and_a_written_image_flag_are_refused(models):
    model = models["8b"]
    with pytest.raises(InputError, match="no system text"):
        model.ask(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    with pytest.raises(InputError, match="may not write the image flag <image>"):
        model.ask(IMAGES / "small.png", "What is <image>?", max_new_tokens=2)


def _in_one_batch(model, images, questions, **gen):
    model.batch_size = len(questions)
    try:
        return model.ask(images, questions, **gen)
    finally:
        model.batch_size = model.default_batch_size


def test_batches_streams_and_captions(models, ref):
    """Left-padded batches answer as each prompt alone (and as the official greedy run), the
    stream yields the answer, caption is the caption instruction's answer, the lean loop serves
    both LLMs (the 14B's pretraining_tp is no slicing here, nor in the official model)."""
    for v in LLMS:
        model = models[v]
        cases = ref["llm"][v]["cases"]
        names = ["small.png", "astronaut.png"]
        together = _in_one_batch(model, [IMAGES / n for n in names], [QUESTION] * 2, max_new_tokens=24)
        assert [a.text for a in together] == [cases[f"question/{n}"]["decode_skip_special"].strip() for n in names]
        stream = model.ask(IMAGES / "coffee.png", QUESTION, max_new_tokens=24, stream=True)
        assert "".join(stream) == stream.result.text == cases["question/coffee.png"]["decode_skip_special"].strip()
        caption = model.caption(IMAGES / "astronaut.png", max_new_tokens=24)
        assert caption.text == cases["caption/astronaut.png"]["decode_skip_special"].strip()
        assert model._lean_decoder(GenerationOptions()) is not None
    with pytest.raises(InputError, match="2 image flag"):
        models["8b"].prompt_text("<s>USER: <image><image>", [[1] * 32])


# -- imagine -------------------------------------------------------------------------------------


def test_imagine_writes_the_official_codes_and_picture(models, ref, tmp_path):
    """<img> forced after the prompt, 32 codes kept to the image tokens (greedy): the official
    model's codes under the same rule exactly, for text-to-image and an edit, both LLMs; then the
    8B's picture end to end (seed 1234 for the embedding's noise, the official starting latent):
    the unCLIP embedding within 1e-5, the final latents' sums and the picture as the official
    decode's, and the file saved atomically."""
    for v in LLMS:
        want = ref["imagine"][v]
        assert models[v].image_codes(T2I) == want["text_to_image"]["codes"], v
        assert models[v].image_codes(EDIT, IMAGES / "chelsea.png") == want["edit/chelsea.png"]["codes"], v
    model, official = models["8b"], ref["decode"]["imagine-8b"]
    assert official["codes"] == ref["imagine"]["8b"]["text_to_image"]["codes"]
    np.testing.assert_allclose(model.code_embeddings([official["codes"]])[0], official["image_embeds"], atol=1e-5, rtol=0)
    from vlmzoo.families.seed import unclip

    pipe = unclip.pipeline(model)
    seen, decode = [], pipe.vae.decode
    pipe.vae.decode = lambda z, *a, **k: (seen.append(z.clone()), decode(z, *a, **k))[1]
    try:
        made = model.imagine(T2I, seed=1234, latents=_latents())
    finally:
        pipe.vae.decode = decode
    assert list(made.codes) == official["codes"]
    assert made.prompt == T2I and made.seconds > 0 and list(made.image.size) == official["image_size"]
    final = seen[0].double()
    assert list(final.shape) == official["vae_input"]["shape"]
    for stat, value in (("sum", final.sum()), ("abs_sum", final.abs().sum())):  # 1e-5 per value
        assert abs(float(value) - official["vae_input"][stat]) < 1e-5 * final.numel(), stat
    _close_pictures(made.image, official["png"])
    out = made.save(tmp_path / "dog.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dog.png"]  # no temporary file left beside it
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(made.image.convert("RGB")))


def test_decoding_codes_equals_the_official_decoder(models, ref):
    """ImageTokenizer.decode through the SEED tokenizer alone: get_codebook_entry's unCLIP
    embeddings within 1e-5 for every decoded reference, the embedding's noise a seeded
    generator's first draw, and for the astronaut's codes and the fixed ones the final latents
    elementwise within 1e-4 and the pictures within one grey level."""
    model = models["tokenizer"]
    for key in ("astronaut", "fixed", "generated-8b", "imagine-8b"):
        d = ref["decode"][key]
        np.testing.assert_allclose(model.code_embeddings([d["codes"]])[0], d["image_embeds"], atol=1e-5, rtol=0)
        assert d["noise_image_embeddings_noise"] == ref["decode"]["astronaut"]["noise_image_embeddings_noise"]
    # the noise the official pipeline drew after torch.manual_seed(1234): a seeded generator's first draw
    first = torch.randn((1, len(ref["decode"]["astronaut"]["image_embeds"])), generator=torch.Generator().manual_seed(1234))
    np.testing.assert_allclose(first[0].numpy(), ref["decode"]["astronaut"]["noise_image_embeddings_noise"], atol=0, rtol=0)
    from vlmzoo.families.seed import unclip

    pipe = unclip.pipeline(model)
    seen, decode = [], pipe.vae.decode
    pipe.vae.decode = lambda z, *a, **k: (seen.append(z.clone()), decode(z, *a, **k))[1]
    try:  # one call each: the official run seeded the global generator (1234) before each decode
        pictures = [model.decode_codes([ref["decode"][k]["codes"]], seed=1234, latents=_latents())[0]
                    for k in ("astronaut", "fixed")]
    finally:
        pipe.vae.decode = decode
    np.testing.assert_allclose(seen[0].numpy(), np.load(DATA / ref["decode"]["astronaut"]["final_latents_file"]),
                               atol=1e-4, rtol=0)
    for picture, key in zip(pictures, ("astronaut", "fixed")):
        _close_pictures(picture, ref["decode"][key]["png"])


def test_imagine_is_repeatable_with_a_seed(models):
    """Without given latents: the same seed, the same codes and picture; another seed, another
    picture (1 diffusion step: the seed's use is what is tested, each step takes seconds)."""
    model = models["14b"]
    a = model.imagine(T2I, seed=7, num_inference_steps=1)
    b = model.imagine(T2I, seed=7, num_inference_steps=1)
    c = model.imagine(T2I, seed=8, num_inference_steps=1)
    assert a.codes == b.codes == c.codes  # greedy codes: the seed only seeds sampling
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    sampled = [model.image_codes(T2I, seed=3, do_sample=True, top_p=0.5) for _ in range(2)]
    assert sampled[0] == sampled[1] and all(0 <= c < 8192 for c in sampled[0])
    with pytest.raises(InputError, match="exactly 32 image codes: max_new_tokens does not apply"):
        model.imagine(T2I, max_new_tokens=5)
    with pytest.raises(InputError, match="the prompt is empty"):
        model.imagine("  ")
    with pytest.raises(TaskNotSupportedError, match="cannot 'imagine'"):
        models["tokenizer"].imagine(T2I)


# -- the files -----------------------------------------------------------------------------------


def _full(name: str) -> dict:
    return json.loads((DATA / f"tensors-full-size-{name}.json").read_text(encoding="utf-8"))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("v", [None, "8b", "14b"])
def test_the_released_layouts_map_at_full_size(v):
    """Every tensor of the released files (the official classes at their published sizes: the
    quantizer with EVA-g, the 8B's and 14B's LLMs) onto vlmzoo's modules built at full size on the
    meta device: each model tensor filled once, the rest dropped by their Ignore rows; the counts
    of parameters equal the official ones."""
    from transformers import LlamaConfig

    quantizer = _full("seed_quantizer")
    tensors = {t["name"]: tuple(t["shape"]) for t in quantizer["tensors"]}
    found = {k: s for k, s in tensors.items() if not k.startswith("visual_encoder.")}
    tokenizer, biases = convert.tokenizer_modules(found)
    llm = _full(f"seed_llama_{v}_sft") if v else None
    model, holders, _ = convert.assemble(tokenizer, biases, convert.adapted(LlamaConfig(**llm["config"])) if v else None)
    prefix = f"{convert.T}." if v else ""
    table = convert.table(39, prefix)
    sources = [({k: s for k, s in tensors.items() if k.startswith("visual_encoder.")},
                (f"{prefix}visual_encoder.embeddings", f"{prefix}visual_encoder.encoder"), ("qkv_biases",)),
               (found, tuple(f"{prefix}{n}" for n in ("visual_encoder.post_layernorm", "query_tokens", "qformer",
                                                      "encode_task_layer", "codebook", "decode_task_layer",
                                                      "pos_embed_image", "blocks_image", "image_down",
                                                      "distill_image_proj")), ())]
    if v:
        sources.append(({t["name"]: tuple(t["shape"]) for t in llm["tensors"]}, ("model", "lm_head"), ()))
    filled, ignored = [], []
    for official, paths, names in sources:
        part, _ = convert.view(model, paths, holders, names)
        expected = {k: tuple(p.shape) for k, p in part.state_dict().items()}
        steps = plan(official, table, expected)
        assert steps.problems == [], paths
        assert sorted(t for s in steps.steps for t in s.targets) == sorted(expected)
        filled += [k for k in expected if k.split(".")[0] not in names]
        ignored += steps.ignored
        assert all(route(k, table) == ([], None) for k in steps.ignored)
    assert sorted(filled) == sorted(model.state_dict())
    assert set(ignored) == {k for k in list(tensors) + [t["name"] for t in (llm or {}).get("tensors", [])]
                            if k == "pos_embed" or k.startswith("blocks.") or "position_ids" in k or "inv_freq" in k}
    image = model.image_tokenizer if v else model
    # the official counts: ours fold eva's q / v biases (counted in the holders) into one qkv bias
    official_vit = quantizer["visual_encoder"]["numel"]
    ours_vit = (_count(image.visual_encoder) - _count(image.visual_encoder.post_layernorm) + _count(holders)
                - sum(layer.self_attn.qkv.bias.numel() for layer in image.visual_encoder.encoder.layers
                      if layer.self_attn.qkv.bias is not None))
    assert ours_vit == official_vit
    unused = sum(np.prod(s) for k, s in found.items() if k == "pos_embed" or k.startswith("blocks.") or "position_ids" in k)
    assert _count(image) - _count(image.visual_encoder) + _count(image.visual_encoder.post_layernorm) == \
        quantizer["non_vit"]["numel"] - unused
    if v:
        inv_freq = sum(np.prod(t["shape"]) for t in llm["tensors"] if "inv_freq" in t["name"])
        assert _count(model.model) + _count(model.lm_head) == llm["total_parameters"] - inv_freq \
            or _count(model.model) + _count(model.lm_head) == llm["total_parameters"]
        assert model.config.vocab_size == llm["added_vocab"]["vocab_size"] == 32000 + 8192 + 2


def test_pickles_are_converted_once_and_a_code_payload_is_refused(models, cache, folders, tmp_path, monkeypatch):
    for file in (DATA / "eva_vit_g.pth", DATA / "seed_tokenizer" / convert.QUANTIZER):
        from vlmzoo.families.pickled import converted

        folder = converted(file)
        assert folder.parent == cache / "vlmzoo" / "converted" and (folder / "model.safetensors").is_file()
    llm = next((cache / "vlmzoo" / "converted").glob("pytorch_model-*"))
    stamp = (llm / "model.safetensors").stat().st_mtime_ns
    vlmzoo.load(folders["8b"], dtype="float32")
    assert (llm / "model.safetensors").stat().st_mtime_ns == stamp  # read again, not written again

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    marker = tmp_path / "ran"
    folder = _layout(tmp_path / "seed", files=("eva_vit_g.pth", "bert-base-uncased"))
    shutil.copytree(DATA / "seed_tokenizer", folder / "seed_tokenizer")
    with_payload(folder / "seed_tokenizer" / convert.QUANTIZER, marker)
    with pytest.raises(UnknownModelError, match=r"seed_quantizer\.pt: refused: the pickle holds more"):
        vlmzoo.load(folder)
    assert not marker.exists() and not list((tmp_path / "cache").rglob("*.safetensors"))


def test_a_bad_folder_is_named(tmp_path, cache):
    both = _layout(tmp_path / "both", files=SHARED + tuple(LLMS.values()))
    with pytest.raises(UnknownModelError, match=r"2 language model folders \(seed_llama_14b_sft, seed_llama_8b_sft\)"):
        vlmzoo.load(both)
    (both / convert.SETTINGS).write_text(json.dumps({"vit": TINY_VIT, "llm": "seed_llama_14b_sft"}))
    assert vlmzoo.load(both, dtype="float32").format is processing.LLAMA2
    no_vit = _layout(tmp_path / "no-vit", files=("seed_tokenizer",))
    with pytest.raises(UnknownModelError, match=r"the vision tower is missing: .* holds no eva_vit_g\.pth \(https://storage"):
        vlmzoo.load(no_vit)
    no_tokenizer = _layout(tmp_path / "no-tokenizer", files=("eva_vit_g.pth",))
    with pytest.raises(UnknownModelError, match=r"the SEED tokenizer is missing: .*AILab-CVC/seed-tokenizer-2"):
        vlmzoo.load(no_tokenizer)
    bad = _layout(tmp_path / "bad", settings={"vit": TINY_VIT, "llama": "x"})
    with pytest.raises(UnknownModelError, match=r"seed\.json: expected an object with keys among .*unknown: llama"):
        vlmzoo.load(bad)
    wrong = _layout(tmp_path / "wrong-sizes", settings={"vit": {"embed_dim": 32, "depth": 3, "num_heads": 4}})
    with pytest.raises(UnknownModelError, match=r"eva_vit_g-.*: 13 model tensor\(s\) the checkpoint does not hold: qkv_biases\.2"):
        vlmzoo.load(wrong)
    no_decoder = _layout(tmp_path / "no-decoder", "8b", files=SHARED[:3])
    with pytest.raises(UnknownModelError, match="imagine needs the unCLIP decoder: put stabilityai/stable-diffusion-2-1-unclip"):
        vlmzoo.load(no_decoder, dtype="float32").imagine(T2I)


def test_the_memory_check_counts_the_assembled_model_before_loading(folders, cache, monkeypatch):
    """The files are pickles in several places: the model they make is counted on the meta
    device, and a machine without room refuses before loading a weight."""
    from vlmzoo.engine import memory
    from vlmzoo.families.seed import SeedTokenizerModel

    counted = SeedTokenizerModel.weight_params(folders["8b"])
    model = vlmzoo.load(folders["8b"], dtype="float32")
    tower = model.image_tokenizer.visual_encoder  # eva's q / v biases, folded into one qkv bias per block
    folded = sum(layer.self_attn.qkv.bias.numel() // 3 for layer in tower.encoder.layers)
    assert counted * 1e9 == pytest.approx(sum(p.numel() for p in model.model.parameters()) - folded, rel=1e-9)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(memory.InsufficientMemoryError, match=rf"needs about .* \({counted:.2f}B parameters"):
        vlmzoo.load(folders["8b"], dtype="float32")


def test_the_cards_are_supported_and_name_the_upstream_commit():
    for name in ("seed", "seed-tokenizer"):
        card = catalog.get(name).card
        assert card.support == "supported" and card.family == "seed", name
        assert UPSTREAM in card.ported_from
    assert catalog.get("seed").card.tasks == ("caption", "ask", "imagine")
    assert catalog.get("seed-tokenizer").card.tasks == ("embed",)
    assert {c.name for c in catalog.get("seed").card.checkpoints} >= {"seed-llama-8b", "seed-llama-14b"}
    fields = {c.field for c in catalog.get("seed").card.corrections}
    assert {"params_b", "kind"} <= fields
    with pytest.raises(UnknownModelError, match=r"seed-llama-8b cannot be fetched by name: .*eva_vit_g\.pth"):
        vlmzoo.load("seed-llama-8b")
