"""MiniCPM-V-2.6, implemented in vlmzoo, held to the official code's own outputs.

tests/data/minicpm_v26/ holds a tiny random checkpoint in the published Hugging Face layout and
the official implementation's outputs (the HF repo's remote code, run outside this repository;
its README says from where and how): slicing, pixels, prompts, ids, vision features, first
logits and greedy tokens for single images, two images in a turn, a multi-turn chat, seven
images, slicing options, text only, a prompt holding id 0, and a padded batch. vlmzoo loads the
checkpoint through ``vlmzoo.load`` and must reproduce them: grids, sizes, pixels, prompts and
ids exactly, features and logits within 1e-4 in float32, tokens and answers exactly. The
full-size check maps every tensor of the released checkpoint onto vlmzoo's modules built at
full size on the meta device.
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
from vlmzoo.families.minicpm_v import convert, processing
from vlmzoo.families.minicpm_v.modeling import minicpmv_class
from vlmzoo.tasks import AskRequest, ImagePart, parse_messages

DATA = Path(__file__).parent / "data" / "minicpm_v26"
IMAGES = Path(__file__).parent / "data" / "moondream2" / "images"
TOL = 1e-4


@pytest.fixture(scope="module")
def model():
    return vlmzoo.load(DATA / "checkpoint", dtype="float32")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((DATA / "reference.json").read_text(encoding="utf-8"))


def _image(name: str) -> Image.Image:
    return Image.open(IMAGES / name).convert("RGB")


def _request(call: dict) -> AskRequest:
    """The official chat() call as a vlmzoo request (images as parts, in their places)."""
    def content(c):
        if isinstance(c, str):
            return c
        return [{"type": "image", "image": _image(x[1:-1])} if x.startswith("<") and x.endswith(".png>")
                else {"type": "text", "text": x} for x in c]

    chat = [{"role": m["role"], "content": content(m["content"])} for m in call["msgs"]]
    if call.get("image"):  # chat(image=...) puts it before the first message's text
        chat[0]["content"] = [{"type": "image", "image": _image(call["image"])}, {"type": "text", "text": chat[0]["content"]}]
    if call.get("system_prompt"):
        chat = [{"role": "system", "content": call["system_prompt"]}] + chat
    return AskRequest(tuple(parse_messages(chat)))


def _images(request: AskRequest) -> list[Image.Image]:
    return [p.source for m in request.messages for p in m.parts if isinstance(p, ImagePart)]


def _inputs(model, case: dict):
    request = _request(case["call"])
    options = {"max_slices": case["call"].get("max_slice_nums"), "use_image_id": case["call"].get("use_image_id")}
    return model.prompt(request), model.processor([model.prompt(request)], [_images(request)], **options)


def _first_logits_and_tokens(model, inputs, n: int):
    """Through generate, as the official code runs it (positions from the attention mask)."""
    with torch.inference_mode():
        out = model.model.generate(**inputs, max_new_tokens=n, do_sample=False, output_logits=True,
                                   return_dict_in_generate=True)
    return out.logits[0].numpy(), out.sequences[:, inputs["input_ids"].shape[1]:]


# -- the full-size layout ---------------------------------------------------------------------------


def test_every_tensor_of_the_released_checkpoint_fills_ours_at_full_size():
    listed = json.loads((DATA / "tensors-full-size.json").read_text(encoding="utf-8"))
    released = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "max_position_embeddings": 32768,
                "vocab_size": 151666, "drop_vision_last_layer": False,
                "vision_config": {"hidden_size": 1152, "image_size": 980, "intermediate_size": 4304,
                                  "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14}}
    text, vision = convert.configs(released)
    with torch.device("meta"):
        ours = minicpmv_class()(text)
        ours.attach_vision(vision, 64)
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    steps = plan({k: tuple(v) for k, v in listed["tensors"].items()}, convert.TABLE, expected)
    assert steps.problems == []
    assert sorted(t for s in steps.steps for t in s.targets) == sorted(expected)
    assert listed["total_parameters"] == 8_099_175_152 == sum(p.numel() for p in ours.parameters())


def test_other_versions_and_misfits_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(DATA / "checkpoint", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, version=2.5)))
    with pytest.raises(UnknownModelError, match="not a MiniCPM-V-2.6 checkpoint .*version 2.5"):
        vlmzoo.load(folder)
    (folder / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["resampler.proj"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(UnknownModelError, match="model tensor\\(s\\) the checkpoint does not hold: resampler.proj"):
        vlmzoo.load(folder)


# -- inputs -----------------------------------------------------------------------------------------


def test_slicing_equals_the_official(model, reference):
    for row in reference["slicing_table"]:
        parts, grid = processing.slices(Image.new("RGB", tuple(row["size_wh"])), model.processor.settings, 9)
        assert (list(grid) if grid else None) == row["grid_cols_rows"], row
        assert [list(p.size) for p in parts] == row["slice_sizes_wh"], row


def test_prompts_ids_and_pixels_equal_the_official(model, reference):
    for name, case in reference["cases"].items():
        if name == "batch":
            continue
        prompt, inputs = _inputs(model, case)
        assert prompt == case["prompt_text"], name
        assert inputs["input_ids"][0].tolist() == case["input_ids"], name
        images = case.get("images", [])
        hashes = [pv["sha256"] if isinstance(pv, dict) else pv
                  for im in images for pv in im.get("pixel_values", im.get("pixel_values_sha256"))]
        sizes = [hw for im in images for hw in im["tgt_sizes_hw"]]
        assert len(hashes) == len(sizes) == (inputs["image_sizes"].shape[1] if images else 0), name
        for j, (sha, hw) in enumerate(zip(hashes, sizes)):
            h, w = inputs["image_sizes"][0, j].tolist()
            assert [h, w] == hw, name
            array = inputs["pixel_values"][0, j, ..., : h * w * 14].numpy()
            assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == sha, (name, j)


# -- outputs ----------------------------------------------------------------------------------------


def test_features_equal_the_official(model, reference):
    for case in reference["cases"].values():
        if "features_file" not in case:
            continue
        _, inputs = _inputs(model, case)
        with torch.inference_mode():
            features = model.model.encode_images(inputs["pixel_values"], image_sizes=inputs["image_sizes"])[0]
        np.testing.assert_allclose(features.numpy(), np.load(DATA / case["features_file"]), atol=TOL, rtol=0)


def test_first_logits_tokens_and_answers_equal_the_official(model, reference):
    for name, case in reference["cases"].items():
        if name == "batch":
            continue
        _, inputs = _inputs(model, case)
        logits, tokens = _first_logits_and_tokens(model, inputs, len(case["generated"]))
        np.testing.assert_allclose(logits[0], np.array(case["first_logits"], np.float32), atol=TOL, rtol=0,
                                   err_msg=name)
        assert tokens[0].tolist() == case["generated"], name
        assert model.decode(tokens[0]).strip() == case["answer"], name


def test_the_public_path_and_the_lean_loop_answer_as_the_official(model, reference):
    for name in ("single/panorama", "two_images", "multi_turn", "text_only_system", "id0_in_prompt"):
        case = reference["cases"][name]
        answer = model.ask(messages=list(_request(case["call"]).messages), max_new_tokens=24)
        assert answer.text == case["answer"], name
        assert answer.num_tokens == len(case["generated"]), name
    assert model._lean_decoder(GenerationOptions()) is not None  # Qwen2: the lean loop served these


def test_a_padded_batch_equals_the_official_batch(model, reference):
    case = reference["cases"]["batch"]
    requests = [_request({"msgs": msgs, "image": None}) for msgs in case["call"]["msgs"]]
    prompts = [model.prompt(r) for r in requests]
    inputs = model.processor(prompts, [_images(r) for r in requests])
    assert inputs["input_ids"].tolist() == case["input_ids"]
    with torch.inference_mode():
        out = model.model.generate(**inputs, max_new_tokens=24, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1]:]
    assert [model.decode(row).strip() for row in new] == case["answers"]
    model.batch_size = 2
    try:
        answers = model.ask(messages=[list(r.messages) for r in requests], max_new_tokens=24)
    finally:
        model.batch_size = model.default_batch_size
    assert [a.text for a in answers] == case["answers"]


def test_beam_search_as_the_official_default(model, reference):
    case = reference["cases"]["single/astronaut"]
    beam = case["chat_default_beam"]
    answer = model.ask(messages=list(_request(case["call"]).messages), max_new_tokens=24,
                       num_beams=beam["settings"]["num_beams"], repetition_penalty=beam["settings"]["repetition_penalty"])
    assert answer.text == beam["answer"]


def test_caption_stream_options_and_refusals(model):
    image = _image("chelsea.png")
    caption = model.caption(image, max_new_tokens=6)
    assert caption.num_tokens == 6
    whole = model.ask(image, "What is in this picture?", max_new_tokens=8)
    stream = model.ask(image, "What is in this picture?", max_new_tokens=8, stream=True)
    assert "".join(stream) == whole.text == stream.result.text
    model.max_slice_nums = 1  # the whole image only
    try:
        fewer = model.processor([model.caption_prompt(None)], [[_image("panorama.png")]], max_slices=1)
    finally:
        model.max_slice_nums = None
    assert fewer["pixel_values"].shape[1] == 1
    with pytest.raises(InputError, match="marks 1 image\\(s\\) but 2 were given"):
        model.encode([model.caption_prompt(None)], [[model.take_image(image), model.take_image(image)]])


def test_served_over_the_openai_api(model):
    import requests
    from serving import data_uri, running

    from vlmzoo.serve import Limits, build_app

    image = _image("coffee.png")
    expected = model.ask([image, image], "Compare them.", max_new_tokens=6)
    with running(build_app({"minicpm": model}, limits=Limits(max_tokens=16))) as url:
        body = {"model": "minicpm", "max_tokens": 6, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri(image)}},
            {"type": "image_url", "image_url": {"url": data_uri(image)}}, {"type": "text", "text": "Compare them."}]}]}
        r = requests.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == expected.text
