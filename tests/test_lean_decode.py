"""The lean decode loop (engine/cpu/lean_decode.py) against model.generate on the same checkpoints."""

import pytest
import torch

import vlmzoo
from vlmzoo.engine.cpu.lean_decode import LeanDecoder
from vlmzoo.images import load_image

LEAN = ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm"]
NOT_LEAN = ["gemma3", "mllama"]  # sliding-window / cross-attention decoders: generate serves them
NEW = 20


def _batch(m, photos, questions):
    from vlmzoo.families.base import ask_requests

    requests, _ = ask_requests([str(p) for p in photos[: len(questions)]], questions, None)
    return [m.prompt(r) for r in requests], [[load_image(p)] for p in photos[: len(questions)]]


@pytest.fixture(scope="module")
def models(tiny_chat):
    return {key: vlmzoo.load(tiny_chat[key]) for key in LEAN + NOT_LEAN}


@pytest.mark.parametrize("key", LEAN)
def test_greedy_tokens_equal_generate_single_and_left_padded(key, models, photos):
    m = models[key]
    assert LeanDecoder.supports(m.model)
    questions = ["what is this?", "how many people are standing on the street in this picture?"]
    prompts, images = _batch(m, photos, questions)
    for rows in ([0], [0, 1]):  # batch 1, then a left-padded batch of different lengths
        inputs = m.encode([prompts[i] for i in rows], [images[i] for i in rows])
        with torch.inference_mode():
            ref = m.model.generate(**inputs, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
        ref = ref[:, inputs["input_ids"].shape[1]:]
        answers = m._generate([prompts[i] for i in rows], [images[i] for i in rows], [""] * len(rows),
                              vlmzoo.engine.generation.GenerationOptions(max_new_tokens=NEW, min_new_tokens=NEW),
                              inputs=inputs)
        texts = m.tokenizer.batch_decode(ref, skip_special_tokens=True)
        assert m._lean not in (None, False)  # the lean loop served it
        assert [a.text for a in answers] == [m.clean(t) for t in texts]
        assert all(a.num_tokens == NEW for a in answers)


@pytest.mark.parametrize("key", ["qwen2_vl", "smolvlm"])
def test_bf16_greedy_tokens_equal_generate(key, tiny_chat, photos):
    """In bf16 the decode steps run on the AVX512-BF16 kernels where they can be built."""
    from vlmzoo.engine.cpu.decode_kernels import kernels

    m = vlmzoo.load(tiny_chat[key], dtype="bfloat16")
    prompts, images = _batch(m, photos, ["what is this?"])
    inputs = m.encode(prompts, images)
    with torch.inference_mode():
        ref = m.model.generate(**inputs, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
    ours = m.ask(str(photos[0]), "what is this?", max_new_tokens=NEW, min_new_tokens=NEW)
    expected = m.tokenizer.decode(ref[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours.text == m.clean(expected)
    assert m._lean not in (None, False)
    assert (m._lean.kernels is not None) == (kernels() is not None)


@pytest.mark.parametrize("native", [True, False], ids=["kernels", "torch-ops"])
@pytest.mark.parametrize("key", ["qwen2_vl", "smolvlm"])
def test_bf16_steps_pick_generates_tokens_up_to_rounding(key, native, tiny_chat, photos):
    """Teacher-forced on generate's tokens for a left-padded batch: at every step generate's
    token is a greedy choice of ours up to bf16 rounding. (Exact token equality is not the test
    here: tiny random models in bf16 tie logits, and any other summation order breaks ties
    differently.)"""
    from vlmzoo.engine.cpu.decode_kernels import kernels

    m = vlmzoo.load(tiny_chat[key], dtype="bfloat16")
    questions = ["what is this?", "how many people are standing on the street in this picture?"]
    prompts, images = _batch(m, photos, questions)
    inputs = m.encode(prompts, images)
    with torch.inference_mode():
        ref = m.model.generate(**inputs, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
        ref = ref[:, inputs["input_ids"].shape[1]:]
        first = m.model.generate(**inputs, max_new_tokens=1, do_sample=False, return_dict_in_generate=True)
        lean = LeanDecoder(m.model)
        if not native:  # the path taken where the kernels cannot be built
            lean.kernels = None
        lean.start(first.past_key_values, NEW)
        n = inputs["input_ids"].shape[1]
        mask = torch.cat([inputs["attention_mask"].bool(), torch.ones(2, NEW, dtype=torch.bool)], dim=1)
        delta = m.position_delta(m.model, inputs).reshape(-1).long()
        for step in range(1, NEW):
            index = n + step - 1
            logits = lean.step(ref[:, step - 1], index + delta, index, mask[:, : index + 1]).float()
            chosen = logits.gather(1, ref[:, step : step + 1])[:, 0]
            top = logits.max(-1).values
            tolerance = 4 * 2**-8 * logits.abs().max(-1).values  # a few bf16 steps of the logit scale
            assert (top - chosen <= tolerance).all(), (step, top - chosen, tolerance)
    if native and kernels() is not None:
        assert lean.kernels is not None  # the steps above ran on the kernels


@pytest.mark.parametrize("key", NOT_LEAN)
def test_other_decoders_go_through_generate(key, models, photos):
    m = models[key]
    assert not LeanDecoder.supports(m.model)
    m.ask(str(photos[0]), "what?", max_new_tokens=3)
    assert m._lean is False


def test_fused_weights_are_views_not_copies(models):
    m = models["qwen2_vl"]
    lean = m._lean or LeanDecoder(m.model)
    layer = m.model.get_decoder().layers[0]
    for lin in (layer.self_attn.q_proj, layer.self_attn.v_proj):
        assert lin.weight.untyped_storage().data_ptr() == lean.layers[0].qkv.untyped_storage().data_ptr()
    assert layer.mlp.up_proj.weight.untyped_storage().data_ptr() == lean.layers[0].gate_up.untyped_storage().data_ptr()


def test_rows_stop_on_their_own_and_match_one_by_one(models, photos):
    """A stop string ends one row of a batch early; the others go on to their budget."""
    m = models["qwen2_vl"]
    questions = ["what is this?", "how many people are standing on the street in this picture?", "and?"]
    imgs = [str(p) for p in photos[:3]]
    full = [m.ask(i, q, max_new_tokens=12, min_new_tokens=12) for i, q in zip(imgs, questions)]
    words = [w for w in full[0].text.split()[1:] if w.isascii() and w.isalnum() and w not in full[1].text]
    assert words, f"no plain word to stop at in {full[0].text!r}"
    batch = m.ask(imgs, questions, max_new_tokens=12, stop=words[0])
    one_by_one = [m.ask(i, q, max_new_tokens=12, stop=words[0]) for i, q in zip(imgs, questions)]
    assert [a.text for a in batch] == [a.text for a in one_by_one]
    assert batch[0].finish_reason == "stop" and batch[0].num_tokens < 12 and words[0] not in batch[0].text
    assert [a.num_tokens for a in batch] == [a.num_tokens for a in one_by_one]


def test_sampling_is_seeded_and_streaming_adds_up(models, photos):
    m = models["smolvlm"]
    a = m.ask(str(photos[0]), "what?", max_new_tokens=10, temperature=1.0, top_k=50, top_p=0.9, seed=3)
    b = m.ask(str(photos[0]), "what?", max_new_tokens=10, temperature=1.0, top_k=50, top_p=0.9, seed=3)
    assert a.text == b.text and a.num_tokens == b.num_tokens
    stream = m.ask(str(photos[0]), "what?", max_new_tokens=10, stream=True)
    pieces = list(stream)
    assert "".join(pieces).strip() == stream.result.text == m.ask(str(photos[0]), "what?", max_new_tokens=10).text


def test_lean_decode_can_be_turned_off(tiny_chat, photos):
    m = vlmzoo.load(tiny_chat["llava"])
    m.lean_decode = False
    m.ask(str(photos[0]), "what?", max_new_tokens=3)
    assert m._lean is None  # never built: generate served it
