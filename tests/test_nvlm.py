"""NVLM-D, implemented in vlmzoo, held to reference outputs of the official code it derives from.

tests/data/nvlm_d/ holds a tiny random checkpoint in the published NVLM-D-72B layout (dummy
attention heads included) and the outputs of InternVL's official InternVLChatModel configured as
NVLM-D with NVLM's tile tags and projector from NVIDIA's Megatron-LM (NVLM-D's own hub code could
not be read; its README says exactly which source gave what). vlmzoo loads the checkpoint through
``vlmzoo.load`` and must reproduce tiling, pixels, prompts and ids exactly, features and logits
within 1e-4 in float32, greedy tokens and answers exactly. The full-size check maps all 1556
tensors of the released configuration onto vlmzoo's modules built at full size on the meta
device; a full-size checkpoint on a small machine is refused before loading, with the estimate.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vlmzoo
from vlmzoo.engine.generation import GenerationOptions
from vlmzoo.engine.memory import InsufficientMemoryError
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.checkpoints import plan
from vlmzoo.families.nvlm import convert, processing
from vlmzoo.families.nvlm.modeling import nvlm_class
from vlmzoo.tasks import AskRequest, ImagePart, Message

DATA = Path(__file__).parent / "data" / "nvlm_d"
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


def _generate(model, prompt: str, images: list, n: int):
    inputs = model.processor([prompt], [images])
    with torch.inference_mode():
        out = model.model.generate(**inputs, max_new_tokens=n, do_sample=False, output_logits=True,
                                   return_dict_in_generate=True)
    return inputs, out.logits[0][0].numpy(), out.sequences[0, inputs["input_ids"].shape[1]:].tolist()


# -- the full-size layout ---------------------------------------------------------------------------


def _full_size():
    listed = json.loads((DATA / "tensors-full-size.json").read_text(encoding="utf-8"))
    text = convert.text_config(listed["config"]["llm_config"])
    with torch.device("meta"):
        ours = nvlm_class()(text)
        ours.attach_vision(convert.VisionConfig.from_dict(listed["config"]["vision_config"]))
    return listed, ours


def test_every_tensor_of_the_released_checkpoint_fills_ours_at_full_size():
    listed, ours = _full_size()
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    steps = plan({k: tuple(v) for k, v in listed["tensors"].items()}, convert.TABLE, expected)
    assert steps.problems == []
    assert sorted(t for s in steps.steps for t in s.targets) == sorted(expected)
    assert listed["total_parameters"] == 79_379_593_344 == sum(p.numel() for p in ours.parameters())


def test_a_full_size_checkpoint_is_refused_before_loading_on_a_small_machine(tmp_path):
    """A sparse file with the released tensor table in its header: nothing is read but the header."""
    listed, _ = _full_size()
    header, offset = {}, 0
    for name, shape in listed["tensors"].items():
        size = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    folder = tmp_path / "nvlm-d-72b"
    folder.mkdir()
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)  # ~159 GB, sparse
    shutil.copy(DATA / "checkpoint" / "config.json", folder / "config.json")
    with pytest.raises(InsufficientMemoryError, match=r"needs about 177\.4 GiB in bfloat16 \(79\.38B parameters x 2 bytes"):
        vlmzoo.load(folder, dtype="bfloat16")


def test_other_configurations_are_refused_by_name(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(DATA / "checkpoint", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, ps_version="v1")))
    with pytest.raises(UnknownModelError, match="NVLM-D with \\{'ps_version': 'v1'\\} is not implemented"):
        vlmzoo.load(folder)
    llm = dict(config["llm_config"], architectures=["LlamaForCausalLM"])
    (folder / "config.json").write_text(json.dumps(dict(config, llm_config=llm)))
    with pytest.raises(UnknownModelError, match="an LLM of \\['LlamaForCausalLM'\\]"):
        vlmzoo.load(folder)


# -- inputs -----------------------------------------------------------------------------------------


def test_tiling_and_pixels_equal_the_official(reference):
    for row in reference["tiling_table"]:
        grid = processing.tile_grid(row["width"], row["height"], processing.TileSettings())
        assert list(grid) == row["grid_cols_rows"], row
    for name, r in reference["images"].items():
        tiles = processing.tiles(_image(name), processing.TileSettings())
        assert [list(t.size) for t in tiles] == r["tile_sizes"] and len(tiles) == r["num_patches"]
        pixels = np.stack([processing.to_pixels(t) for t in tiles])
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == r["pixel_values"]["sha256"], name


def test_prompts_and_ids_equal_the_official(model, reference):
    for name, r in reference["images"].items():
        q = r["question"]
        prompt = model.prompt(AskRequest((Message("user", (ImagePart(None), q["question"])),)))
        ids = model.processor([prompt], [[_image(name)]])["input_ids"][0].tolist()
        assert ids == q["input_ids"], name
        assert model.tokenizer.decode(ids) == q["prompt_text"], name
    text = reference["text_only"]
    assert model.prompt(AskRequest((Message("user", (text["question"],)),))) == text["prompt_text"]


# -- outputs ----------------------------------------------------------------------------------------


def test_features_logits_and_tokens_equal_the_official(model, reference):
    for name, r in reference["images"].items():
        q = r["question"]
        prompt = model.prompt(AskRequest((Message("user", (ImagePart(None), q["question"])),)))
        inputs, logits, tokens = _generate(model, prompt, [_image(name)], len(q["generated_ids"]))
        np.testing.assert_allclose(logits, np.array(q["first_logits"], np.float32), atol=TOL, rtol=0, err_msg=name)
        assert tokens == q["generated_ids"], name
        if "file" in r["features"]:
            with torch.inference_mode():
                features = model.model.encode_images(inputs["pixel_values"], image_masks=inputs["image_masks"])[0]
            np.testing.assert_allclose(features.numpy(), np.load(DATA / r["features"]["file"]), atol=TOL, rtol=0)


def test_chats_two_images_and_text_only_equal_the_official(model, reference):
    turn = reference["two_turn"]
    (question, answer), = turn["history_given"]
    chat = AskRequest((Message("user", (ImagePart(None), question.split("\n", 1)[1])), Message("assistant", (answer,)),
                       Message("user", (turn["turn2_question"],))))
    _, logits, tokens = _generate(model, model.prompt(chat), [_image(turn["image"])], len(turn["generated_ids"]))
    np.testing.assert_allclose(logits, np.array(turn["first_logits"], np.float32), atol=TOL, rtol=0)
    assert tokens == turn["generated_ids"]

    two = reference["two_images"]
    request = AskRequest((Message("user", (ImagePart(None), ImagePart(None), two["question"].rsplit("\n", 1)[1])),))
    inputs, logits, tokens = _generate(model, model.prompt(request), [_image(n) for n in two["images"]],
                                       len(two["generated_ids"]))
    assert inputs["input_ids"][0].tolist() == two["input_ids"]
    np.testing.assert_allclose(logits, np.array(two["first_logits"], np.float32), atol=TOL, rtol=0)
    assert tokens == two["generated_ids"]

    text = reference["text_only"]
    answer = model.ask(messages=[{"role": "user", "content": text["question"]}], max_new_tokens=24)
    assert answer.text == text["response"]


def test_the_public_path_answers_as_the_official(model, reference):
    r = reference["images"]["panorama.png"]["question"]
    answer = model.ask(_image("panorama.png"), r["question"], max_new_tokens=24)
    assert answer.text == r["response"] and answer.num_tokens == 24
    assert model._lean_decoder(GenerationOptions()) is not None


def test_batches_streams_and_refusals(model):
    images, questions = [_image("small.png"), _image("astronaut.png")], ["What is it?", "Describe it."]
    alone = [model.ask(im, q, max_new_tokens=8).text for im, q in zip(images, questions)]
    model.batch_size = 2
    try:
        together = [a.text for a in model.ask(images, questions, max_new_tokens=8)]
    finally:
        model.batch_size = model.default_batch_size
    assert together == alone
    stream = model.ask(images[0], questions[0], max_new_tokens=8, stream=True)
    assert "".join(stream) == alone[0] == stream.result.text
    assert model.caption(images[1], max_new_tokens=4).num_tokens == 4
    with pytest.raises(InputError, match="holds <\\|vision_pad\\|> tokens of its own"):
        model.ask(images[0], "What is <|vision_pad|>?", max_new_tokens=2)
