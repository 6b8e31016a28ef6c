"""moondream1, implemented in vlmzoo on its moondream2 modules, held to the official code's outputs.

tests/data/moondream1/ holds a tiny random checkpoint in the layout of the hub revision
f6e9da68 and the official implementation's outputs (github.com/vikhyat/moondream 7901a2a, run
outside this repository; its README says how): pixels, image features, prompt ids, first logits
and 256-token answers for six photos, a chat round, a forced stop, and the answer clean-up.
vlmzoo loads the checkpoint through ``vlmzoo.load`` and must reproduce them: pixels exactly,
features and logits within 1e-4 in float32, tokens and texts exactly. The full-size check maps
every tensor of the released model onto vlmzoo's modules built at full size on the meta device.
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
from vlmzoo.families.moondream import decoding, moondream1, processing
from vlmzoo.families.moondream.modeling import Moondream

DATA = Path(__file__).parent / "data" / "moondream1"
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


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_every_tensor_of_the_released_model_fills_ours_at_full_size(tmp_path):
    listed = json.loads((DATA / "tensors-full-size.json").read_text(encoding="utf-8"))
    (tmp_path / "config.json").write_text(json.dumps(listed["config_json_as_written"]))
    with torch.device("meta"):
        ours = Moondream(moondream1.read_config(tmp_path))
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    steps = plan({k: tuple(v) for k, v in listed["tensors"].items()}, moondream1.TABLE, expected)
    assert steps.problems == []
    assert sorted(t for s in steps.steps for t in s.targets) == sorted(expected)
    assert listed["total_parameters"] == 1_857_482_608 == sum(p.numel() for p in ours.parameters())


def test_a_folder_loads_as_moondream1_by_its_architecture_and_older_layouts_are_refused(model, tmp_path):
    from safetensors.torch import load_file, save_file

    assert type(model) is moondream1.Moondream1Model and model.tasks == {"caption", "ask"}
    folder = tmp_path / "ckpt"
    shutil.copytree(DATA / "checkpoint", folder)
    tensors = load_file(str(folder / "model.safetensors"))  # the 2024-01-30 layout's names
    older = {k.replace("vision_encoder.encoder.", "vision_encoder.model.encoder.")
              .replace("text_model.", "text_model.model."): v for k, v in tensors.items()}
    save_file(older, str(folder / "model.safetensors"))
    with pytest.raises(UnknownModelError, match=r"54 tensor\(s\) no rule maps to the model: text_model\.model\..*"
                                                r"54 model tensor\(s\) the checkpoint does not hold"):
        vlmzoo.load(folder)


def test_pixels_and_features_equal_the_official(model, reference):
    vision = model.model.config.vision
    for name, r in reference["images"].items():
        crop = processing.single_crop(_image(name), vision)
        assert _sha(crop[0]) == r["resized_uint8_sha256"], name
        assert _sha(processing.normalise(crop, by_reciprocal=True)[0].numpy()) == r["pixels_sha256"], name
        with torch.inference_mode():
            features = decoding.image_tokens(model.model, _image(name)).numpy()
        assert abs(float(features.astype(np.float64).sum()) - r["features_sum"]) < 1e-2, name
        if "features_file" in r:
            np.testing.assert_allclose(features, np.load(DATA / r["features_file"]), atol=TOL, rtol=0)


def test_prompts_and_first_logits_equal_the_official(model, reference):
    t = model.tokenizer
    for name, r in reference["images"].items():
        for run, question in (("answer", reference["question"]), ("caption", reference["caption_question"])):
            prompt = r[run]["prompt"]
            before = t("<image>", add_special_tokens=False).input_ids
            after = t(f"</image>\n\nQuestion: {question}\n\nAnswer: ", add_special_tokens=False).input_ids
            assert (before, after) == (prompt["before_image"], prompt["after_image"]), (name, run)
            with torch.inference_mode():
                encoded = decoding.encode_image(model.model, _image(name), 8 + len(after), before)
                assert encoded.pos + len(after) == prompt["length"]
                logits = model.model.text.logits(decoding._prefill(model.model, encoded, after))[0, -1]
            np.testing.assert_allclose(logits.numpy(), np.array(r[f"{run}_first_logits"], np.float32), atol=TOL,
                                       rtol=0, err_msg=f"{name} {run}")


def test_answers_and_captions_equal_the_official(model, reference):
    for name, r in reference["images"].items():
        answer = model.ask(_image(name), reference["question"])
        assert answer.text == r["answer"]["text"] and answer.num_tokens == len(r["answer"]["ids"]) == 256, name
        assert model.caption(_image(name)).text == r["caption"]["text"], name


def test_greedy_runs_stops_and_chat_rounds_equal_the_official(model, reference):
    r = reference["images"]["astronaut.png"]
    after = r["greedy24"]["prompt"]["after_image"]
    for run in ("greedy24", "stop"):
        expected = r[run]
        with torch.inference_mode():
            encoded = decoding.encode_image(model.model, _image("astronaut.png"), len(after) + 32,
                                            expected["prompt"]["before_image"])
            ids, reason, _ = decoding.generate_text(
                model.model, encoded, after, GenerationOptions(max_new_tokens=expected["max_new_tokens"]), None,
                stop_ids=set(expected["eos_token_id"]), keep_stop=True, masked_after_first=None)
        assert ids == expected["ids"], run
        assert reason == {"eos": "stop", "max_new_tokens": "length"}[expected["stopped_by"]]
    chat = r["chat"]
    answer = model.ask(messages=[{"role": "user", "content": [{"type": "image", "image": _image("astronaut.png")},
                                                              {"type": "text", "text": reference["question"]}]},
                                 {"role": "assistant", "content": r["answer"]["text"]},
                                 {"role": "user", "content": reference["follow_up_question"]}])
    assert answer.prompt_tokens == chat["prompt"]["length"]
    assert answer.text == chat["text"]


def test_the_answer_clean_up_and_decoding_equal_the_official(model, reference):
    for case in reference["answer_cleanup"]:
        assert moondream1.clean(case["generated_text"]) == case["answer"], case
    for case in reference["tokenization"]:
        assert model.tokenizer(case["text"], add_special_tokens=False).input_ids == case["ids"]
        assert model.decode(case["ids"]) == case["decode_skip_special"], case["text"]


def test_streams_budgets_and_refusals(model):
    image = _image("chelsea.png")
    whole = model.ask(image, "What is it?", max_new_tokens=8)
    stream = model.ask(image, "What is it?", max_new_tokens=8, stream=True)
    assert "".join(stream) == whole.text == stream.result.text and whole.num_tokens == 8
    with pytest.raises(InputError, match="exactly one image"):
        model.ask([image, image], "Which?")
    with pytest.raises(InputError, match="user and assistant turns in turn"):
        model.ask(messages=[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "a"}]},
                            {"role": "user", "content": "b"}])
    with pytest.raises(InputError, match="takes 2048"):
        model.ask(image, "What?", max_new_tokens=1500)
