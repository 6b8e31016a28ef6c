"""Molmo (7B-D and 7B-O), implemented in vlmzoo, held to the official code's own outputs.

tests/data/molmo/ holds, per variant, a tiny random checkpoint in the published Hugging Face
layout and the official implementation's outputs on fixed photos (made outside this repository
from github.com/allenai/molmo; its README says how). vlmzoo loads each through ``vlmzoo.load``
and must reproduce them: crops, masks, token layout and patch positions exactly, image features
and logits within 1e-4 in float32, greedy tokens exactly (through generate and through the lean
decode loop). The full-size check maps every tensor of the released configurations (names and
shapes, tensors-full-size-*.json) onto vlmzoo's modules built at full size on the meta device.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vlmzoo
from vlmzoo.engine.generation import GenerationOptions
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.checkpoints import plan
from vlmzoo.families.molmo import convert, processing
from vlmzoo.families.molmo.modeling import VisionConfig, molmo_classes
from vlmzoo.families.molmo.points import parse_points
from vlmzoo.tasks import AskRequest, ImagePart, Message, parse_messages

DATA = Path(__file__).parent / "data" / "molmo"
IMAGES = Path(__file__).parent / "data" / "moondream2" / "images"
VARIANTS = ("D", "O")
TOL = 1e-4
QUESTION = "What is in this picture?"

_models: dict[str, object] = {}


def _model(variant: str):
    if variant not in _models:
        _models[variant] = vlmzoo.load(DATA / variant / "checkpoint", dtype="float32")
    return _models[variant]


def _reference(variant: str) -> dict:
    return json.loads((DATA / variant / "reference.json").read_text(encoding="utf-8"))


def _image(name: str) -> Image.Image:
    return Image.open(IMAGES / name).convert("RGB")


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# -- the full-size layout ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant, params", [("D", 8_021_025_280), ("O", 7_665_032_192)])
def test_every_tensor_of_the_released_model_fills_ours_at_full_size(variant, params):
    listed = json.loads((DATA / f"tensors-full-size-{variant}.json").read_text(encoding="utf-8"))
    raw = dict(listed["config"], model_type="molmo")
    kind = convert.llm_kind(raw)
    assert kind == {"D": "qwen2", "O": "olmo2"}[variant]
    with torch.device("meta"):
        ours = molmo_classes()[kind](convert.text_config(raw, kind))
        ours.attach_vision(VisionConfig(), raw["embedding_size"], raw["intermediate_size"] // 2)
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    steps = plan({k: tuple(v) for k, v in listed["tensors"].items()}, convert.TABLES[kind], expected)
    assert steps.problems == []
    assert sorted(t for s in steps.steps for t in s.targets) == sorted(expected)
    assert sum(int(np.prod(s)) for s in listed["tensors"].values()) == params == sum(p.numel() for p in ours.parameters())


def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(DATA / "D" / "checkpoint", folder)
    tensors = load_file(str(folder / "model.safetensors"))
    broken = {k: v for k, v in tensors.items() if k != "model.transformer.wte.new_embedding"}
    broken["model.transformer.blocks.0.att_proj.weight"] = torch.zeros(5, 64)
    save_file(broken, str(folder / "model.safetensors"))
    with pytest.raises(UnknownModelError) as err:
        vlmzoo.load(folder)
    message = str(err.value)
    assert "model.transformer.blocks.0.att_proj.weight: (5, 64), the model wants" in message
    assert "model.embed_tokens.weight (a part of it)" in message

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, norm_after=True)))
    with pytest.raises(UnknownModelError, match=r"attention_layer_norm=False, norm_after=True, qkv_bias=True"):
        vlmzoo.load(folder)
    (folder / "config.json").write_text(json.dumps(dict(config, vision_backbone=dict(config["vision_backbone"],
                                                                                     image_num_pos=100))))
    with pytest.raises(UnknownModelError, match="resized position embeddings are not implemented"):
        vlmzoo.load(folder)


def test_a_tokenizer_without_the_image_tokens_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(DATA / "D" / "checkpoint", folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["extra_special_tokens"] = [t for t in config["extra_special_tokens"] if t != "<im_col>"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "<im_col>"]
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(UnknownModelError, match="lacks Molmo's image token\\(s\\) <im_col>"):
        vlmzoo.load(folder)


# -- inputs -----------------------------------------------------------------------------------------


def test_tilings_equal_the_official():
    for row in _reference("D")["tiling_table"]:
        assert list(processing.select_tiling(*row["select_tiling_args"])) == row["tiling"], row


@pytest.mark.parametrize("variant", VARIANTS)
def test_crops_masks_tokens_and_positions_equal_the_official(variant):
    model, ref = _model(variant), _reference(variant)
    prompt = model.prompt(AskRequest((Message("user", (ImagePart(None), QUESTION)),)))
    assert model.tokenizer.encode(prompt, add_special_tokens=False) == ref["prompts"]["query"]["ids"]
    for name, r in ref["images"].items():
        part = processing.image_inputs(np.array(_image(name)), model.processor.settings, model.processor.ids)
        assert (_sha(part.crops), _sha(part.masks)) == (r["crops_sha256"], r["image_masks_sha256"]), name
        inputs = model.encode([prompt], [model.take_images(IMAGES / name)])
        assert inputs["input_ids"][0].tolist() == r["input_ids"], name
        assert inputs["image_positions"][0].tolist() == r["image_input_idx"], name
    assert processing.prompt_text([("user", "a"), ("assistant", "b"), ("user", "c")], "<E>") == \
        " User: a Assistant: b<E> User: c Assistant:"


# -- outputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_features_and_first_answer_logits_equal_the_official(variant):
    model, ref = _model(variant), _reference(variant)
    prompt = model.caption_prompt(QUESTION)
    for name, r in ref["images"].items():
        inputs = model.encode([prompt], [model.take_images(IMAGES / name)])
        with torch.inference_mode():
            features = model.model.vision_backbone(inputs["pixel_values"], inputs["image_masks"])[0].numpy()
            logits = model.model(**inputs).logits[0, -1].numpy()
        assert list(features.shape) == r["features_shape"]
        if "features_file" in r:
            np.testing.assert_allclose(features, np.load(DATA / variant / r["features_file"]), atol=TOL, rtol=0)
        np.testing.assert_allclose(logits, np.array(r["query_first_logits"], np.float32), atol=TOL, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_tokens_and_texts_equal_the_official(variant):
    model, ref = _model(variant), _reference(variant)
    prompts = {"query": model.caption_prompt(QUESTION), "caption": model.caption_prompt(None),
               "pointing": model.caption_prompt("Point to the cup.")}
    for name, r in ref["images"].items():
        loaded = model.take_images(IMAGES / name)
        for task in ("query", "caption", "pointing"):
            if task not in r:
                continue
            expected = r[task]["generated"]
            assert model.tokenizer.encode(prompts[task], add_special_tokens=False) == r[task]["prompt_ids"]
            inputs = model.encode([prompts[task]], [loaded])
            with torch.inference_mode():
                out = model.model.generate(**inputs, max_new_tokens=len(expected), do_sample=False)
            assert out[0, inputs["input_ids"].shape[1]:].tolist() == expected, (name, task)
            # vlmzoo's own loop (the lean decoder for 7B-D's Qwen2), special tokens kept
            answer = model._generate([prompts[task]], [loaded], [""], GenerationOptions(max_new_tokens=len(expected)), keep_special=True)[0]
            assert answer.text == model.tokenizer.decode(expected, skip_special_tokens=False).strip(), (name, task)
        answer = model.ask(loaded[0], QUESTION, max_new_tokens=24)
        assert answer.text == model.tokenizer.decode(r["query"]["ids"], skip_special_tokens=True).strip()
        assert answer.num_tokens == len(r["query"]["generated"])


def test_the_lean_decoder_serves_7b_d_and_generate_serves_7b_o():
    assert _model("D")._lean_decoder(GenerationOptions()) is not None
    assert _model("O")._lean_decoder(GenerationOptions()) is None  # OLMo 2's norms are not the lean loop's


def test_points_are_read_as_the_official_parser_reads_molmo_tags():
    cases = _reference("D")["point_parsing"]
    width, height = cases["image_size"]
    tagged = [c for c in cases["cases"] if "<point" in c["text"]]
    assert len(tagged) == 10
    for case in tagged:
        got = [[p.x, p.y] for p in parse_points(case["text"], width, height)]
        np.testing.assert_allclose(np.array(got).reshape(-1, 2), np.array(case["extract_points"]).reshape(-1, 2),
                                   rtol=0, atol=1e-9, err_msg=case["text"])
    labelled = parse_points('<points x1="10" y1="20" x2="30" y2="40" alt="two cups">cups</points> and '
                            '<point x="50" y="50">x</point>', 200, 100, label="cup")
    assert [(p.x, p.y, p.label) for p in labelled] == [(20, 20, "two cups"), (60, 40, "two cups"), (100, 50, "cup")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_point_asks_as_the_official_demo_and_reads_the_answer(variant):
    model, ref = _model(variant), _reference(variant)
    result = model.point(IMAGES / "coffee.png", "the cup", max_new_tokens=24)
    assert result.raw == model.tokenizer.decode(ref["images"]["coffee.png"]["pointing"]["ids"],
                                                skip_special_tokens=True).strip()
    assert result.points == tuple(parse_points(result.raw, 600, 400, "the cup")) and result.boxes == ()


# -- the machinery ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_padded_batch_answers_as_one_by_one(variant):
    """Rows of different lengths and crop counts, and a row without an image, padded together."""
    model = _model(variant)
    images = [IMAGES / "panorama.png", IMAGES / "small.png", None]
    questions = [QUESTION, "Describe it.", "Say something."]
    alone = [model.ask(im, q, max_new_tokens=10) if im is not None else
             model.ask(messages=[{"role": "user", "content": q}], max_new_tokens=10) for im, q in zip(images, questions)]
    model.batch_size = 3
    try:
        together = model.ask([[im] if im is not None else [] for im in images], questions, max_new_tokens=10)
    finally:
        model.batch_size = model.default_batch_size
    assert [a.text for a in together] == [a.text for a in alone]
    assert [a.num_tokens for a in together] == [a.num_tokens for a in alone]


def test_chats_system_messages_streams_and_refusals():
    model = _model("D")
    image = _image("chelsea.png")
    chat = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What is it?"}]},
            {"role": "assistant", "content": "A cat."}, {"role": "user", "content": "And its colour?"}]
    request = AskRequest(tuple(parse_messages(chat)))
    eos = model.tokenizer.eos_token
    assert model.prompt(request) == f" User: Be brief. What is it? Assistant: A cat.{eos} User: And its colour? Assistant:"
    whole = model.ask(image, QUESTION, max_new_tokens=8)
    stream = model.ask(image, QUESTION, max_new_tokens=8, stream=True)
    assert "".join(stream) == whole.text == stream.result.text
    with pytest.raises(InputError, match="at most 1 image"):
        model.ask([image, image], QUESTION)
    with pytest.raises(InputError, match="phrase must be a non-empty string"):
        model.point(image, " ")


def test_bfloat16_keeps_the_rotary_table_in_float32_and_answers():
    model = vlmzoo.load(DATA / "D" / "checkpoint", dtype="bfloat16")
    assert model.model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert model.model.lm_head.weight.dtype == torch.bfloat16
    assert model.ask(_image("rocket.png"), QUESTION, max_new_tokens=4).num_tokens == 4


def test_served_over_the_openai_api_and_evaluated(tmp_path):
    """The port goes through vlmzoo's machinery unchanged: a served chat equals ``ask``, and the
    eval runner scores its captions."""
    import requests
    from serving import data_uri, running

    from vlmzoo.evaluation.runner import EvalOptions, evaluate
    from vlmzoo.evaluation.spec import load_benchmark
    from vlmzoo.evaluation.store import Store
    from vlmzoo.serve import Limits, build_app

    model = _model("O")
    image = _image("chelsea.png")
    expected = model.ask(image, QUESTION, max_new_tokens=6)
    with running(build_app({"molmo": model}, limits=Limits(max_tokens=16))) as url:
        body = {"model": "molmo", "max_tokens": 6, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri(image)}}, {"type": "text", "text": QUESTION}]}]}
        r = requests.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == expected.text
    with Store(tmp_path / "r.db") as store:
        result = evaluate(str(DATA / "O" / "checkpoint"), load_benchmark("sample-caption"), store,
                          EvalOptions(limit=2, dtype="float32"), progress=False)
    assert result.predicted == 2 and {s.metric for s in result.scores} >= {"bleu4", "cider"}
