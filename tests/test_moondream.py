"""moondream2, implemented in vlmzoo, held to the official code's own outputs.

tests/data/moondream2/ holds a tiny random checkpoint in the official Hugging Face layout and the
official implementation's outputs on fixed photos (made outside this repository; its README says
how). vlmzoo loads the checkpoint through ``vlmzoo.load`` and must reproduce them: crops and
tilings exactly, image features and logits within 1e-4 in float32, tokens and regions exactly.
The full-size check builds vlmzoo's model at the real configuration on the meta device and
compares every tensor name and shape with the official model's (tensors-full-size.json).
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
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.checkpoints import rename
from vlmzoo.families.moondream import convert, decoding, processing
from vlmzoo.families.moondream.modeling import Moondream, MoondreamConfig

DATA = Path(__file__).parent / "data" / "moondream2"
CHECKPOINT = DATA / "checkpoint"
TOL = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((DATA / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model():
    return vlmzoo.load(CHECKPOINT, dtype="float32")


def _image(name: str) -> Image.Image:
    return Image.open(DATA / "images" / name).convert("RGB")


# -- the full-size layout ---------------------------------------------------------------------------


def test_the_full_size_model_has_every_official_tensor_with_its_shape():
    official = json.loads((DATA / "tensors-full-size.json").read_text(encoding="utf-8"))["tensors"]
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in Moondream(MoondreamConfig()).state_dict().items()}
    mapped = {}
    for name, shape in official.items():
        target = rename(name, convert.TABLE)
        assert target is not None, f"no rule maps {name}"
        mapped[target] = shape
    assert mapped == ours
    assert sum(int(np.prod(s)) for s in official.values()) == 1_927_237_104


def test_an_unmapped_or_missing_tensor_is_an_error(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    extra = dict(tensors, **{"model.text.blocks.0.attn.extra": torch.zeros(2)})
    save_file(extra, str(folder / "model.safetensors"))
    with pytest.raises(UnknownModelError, match=r"1 tensor\(s\) no rule maps to the model: model.text.blocks.0.attn.extra"):
        vlmzoo.load(folder)
    missing = {k: v for k, v in tensors.items() if k != "model.region.size_features"}
    save_file(missing, str(folder / "model.safetensors"))
    with pytest.raises(UnknownModelError, match="model tensor\\(s\\) the checkpoint does not hold: region.size_features"):
        vlmzoo.load(folder)


def test_other_layouts_are_refused_by_name(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["MoondreamForSomethingElse"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnknownModelError, match="not a moondream2 checkpoint of the layout vlmzoo reads"):
        vlmzoo.load(folder)
    config["architectures"] = ["Moondream"]  # moondream1's: its loader takes it, and finds other tensors
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnknownModelError, match="372 tensor\\(s\\) no rule maps to the model: model.region"):
        vlmzoo.load(folder)


# -- held to the official outputs -------------------------------------------------------------------


def test_crops_and_tilings_equal_the_official(reference):
    c = MoondreamConfig.from_dict(json.loads((CHECKPOINT / "config.json").read_text())["config"]).vision
    for case in reference["tiling_table"]:  # every branch of the tiling choice
        margin = c.enc_patch_size * c.overlap_margin
        window = (c.grid - 2 * c.overlap_margin) * c.enc_patch_size
        got = processing.select_tiling(case["height"] - 2 * margin, case["width"] - 2 * margin, window, c.max_crops)
        assert list(got) == case["tiling"], case
    for name, ref in reference["images"].items():
        crops, tiling = processing.overlap_crops(_image(name), c)
        assert list(tiling) == ref["tiling"], name
        assert list(crops.shape) == ref["crops_shape"], name
        assert hashlib.sha256(crops.tobytes()).hexdigest() == ref["crops_sha256"], name


def test_image_features_equal_the_official(model, reference):
    for name, ref in reference["images"].items():
        with torch.inference_mode():
            features = decoding.image_tokens(model.model, _image(name)).numpy()
        assert features.sum() == pytest.approx(ref["features_sum"], rel=TOL, abs=TOL), name
        assert np.abs(features).sum() == pytest.approx(ref["features_abs_sum"], rel=TOL), name
        saved = DATA / f"features-{Path(name).stem}.npy"
        if saved.exists():
            np.testing.assert_allclose(features, np.load(saved), atol=TOL, rtol=TOL)


def test_prompt_ids_and_first_answer_logits_equal_the_official(model, reference):
    question = reference["question"]
    assert model._prompt("query", question) == reference["prompt_ids"]["query"]
    assert model._prompt("detect", reference["object"]) == reference["prompt_ids"]["detect"]
    assert model._prompt("point", reference["object"]) == reference["prompt_ids"]["point"]
    for name, ref in reference["images"].items():
        with torch.inference_mode():
            encoded = decoding.encode_image(model.model, _image(name), room=64)
            hidden = decoding._prefill(model.model, encoded, reference["prompt_ids"]["query"])
            logits = model.model.text.logits(hidden[:, -1])[0].numpy()
        np.testing.assert_allclose(logits, np.array(ref["query_first_logits"], dtype=np.float32), atol=TOL, rtol=TOL)


def test_greedy_tokens_and_texts_equal_the_official(model, reference):
    from vlmzoo.engine.generation import GenerationOptions

    budget = reference["max_tokens"]
    opts = GenerationOptions.from_kwargs({"max_new_tokens": budget})
    for name, ref in reference["images"].items():
        image = _image(name)
        for kind in ("query", "caption_short", "caption_normal"):
            with torch.inference_mode():
                encoded = decoding.encode_image(model.model, image, room=64)
                ids, reason, _ = decoding.generate_text(model.model, encoded, ref[kind]["prompt_ids"], opts, None)
            assert ids == ref[kind]["ids"], (name, kind)
            assert reason == ("length" if ref[kind]["stopped_by"] == "max_tokens" else "stop"), (name, kind)
        # and through the task methods, prompts built by vlmzoo
        assert model.ask(image, reference["question"], max_new_tokens=budget).text == ref["query"]["text"].strip()
        for length in ("short", "normal"):
            caption = model.caption(image, length, max_new_tokens=budget)
            assert caption.text == ref[f"caption_{length}"]["text"].strip(), (name, length)
            assert caption.num_tokens == len(ref[f"caption_{length}"]["ids"]), (name, length)


def test_boxes_and_points_equal_the_official(model, reference):
    for name, ref in reference["regions"].items():
        image = _image(name)
        width, height = image.size
        got = model.ground(image, reference["object"], max_objects=reference["max_objects"])
        assert len(got.boxes) == len(ref["boxes"]), name
        for box, want in zip(got.boxes, ref["boxes"]):
            expected = [min(max(v, 0.0), 1.0) for v in (want["x_min"], want["y_min"], want["x_max"], want["y_max"])]
            assert [box.x0 / width, box.y0 / height, box.x1 / width, box.y1 / height] == \
                pytest.approx(expected, abs=1e-6), name
        got = model.point(image, reference["object"], max_objects=reference["max_objects"])
        assert [v for p in got.points for v in (p.x / width, p.y / height)] == \
            pytest.approx([v for p in ref["points"] for v in (p["x"], p["y"])], abs=1e-6), name


# -- through vlmzoo's machinery ---------------------------------------------------------------------


def test_stream_batch_and_options(model):
    image = _image("astronaut.png")
    whole = model.ask(image, "What is in this picture?", max_new_tokens=12)
    stream = model.ask(image, "What is in this picture?", max_new_tokens=12, stream=True)
    assert "".join(stream) == whole.text == stream.result.text
    batch = model.ask([image, _image("coffee.png")], ["What is in this picture?", "What is in this picture?"],
                      max_new_tokens=12)
    assert batch[0].text == whole.text
    sampled = [model.ask(image, "What?", max_new_tokens=8, temperature=0.9, seed=3).text for _ in range(2)]
    assert sampled[0] == sampled[1]  # seeded sampling repeats
    with pytest.raises(InputError, match="caption length must be one of short, normal, long"):
        model.caption(image, "medium")
    with pytest.raises(InputError, match="one question, not a chat"):
        model.ask(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                            {"role": "user", "content": "c"}])
    with pytest.raises(InputError, match="phrase must be a non-empty string"):
        model.point(image, " ")


def test_the_catalog_card_loads_with_its_tokenizer_from_another_repo(tmp_path, monkeypatch):
    """The card pins the hub revision and takes tokenizer.json from moondream/starmie-v1, as the
    official code does: a mirror holding both repos loads by catalog id."""
    mirror = tmp_path / "models"
    shutil.copytree(CHECKPOINT, mirror / "vikhyatk" / "moondream2", ignore=shutil.ignore_patterns("tokenizer.json"))
    (mirror / "moondream" / "starmie-v1").mkdir(parents=True)
    shutil.copy(CHECKPOINT / "tokenizer.json", mirror / "moondream" / "starmie-v1" / "tokenizer.json")
    monkeypatch.setenv("VLMZOO_MODELS_DIR", str(mirror))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loaded = vlmzoo.load("moondream2", dtype="float32")
    assert loaded.name == "moondream2" and loaded.tasks == {"caption", "ask", "ground", "point"}
    assert (loaded.path / "tokenizer.json").resolve() == (mirror / "moondream" / "starmie-v1" / "tokenizer.json")
    assert loaded.ask(_image("chelsea.png"), "What is in this picture?", max_new_tokens=4).num_tokens >= 1


def test_served_over_the_openai_api_and_evaluated(model, tmp_path):
    """The port goes through vlmzoo's machinery unchanged: a served chat equals ``ask``, and the
    eval runner scores its captions."""
    import requests
    from serving import data_uri, running

    from vlmzoo.evaluation.runner import EvalOptions, evaluate
    from vlmzoo.evaluation.spec import load_benchmark
    from vlmzoo.evaluation.store import Store
    from vlmzoo.serve import Limits, build_app

    image = _image("chelsea.png")
    expected = model.ask(image, "What is in this picture?", max_new_tokens=6)
    served = vlmzoo.load(CHECKPOINT, dtype="float32")
    with running(build_app({"md": served}, limits=Limits(max_tokens=16))) as url:
        body = {"model": "md", "max_tokens": 6, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri(image)}}, {"type": "text", "text": "What is in this picture?"}]}]}
        r = requests.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == expected.text
    with Store(tmp_path / "r.db") as store:
        result = evaluate(str(CHECKPOINT), load_benchmark("sample-caption"), store, EvalOptions(limit=2, dtype="float32"),
                          progress=False)
    assert result.predicted == 2 and {s.metric for s in result.scores} >= {"bleu4", "cider"}
