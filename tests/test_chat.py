"""Chat-template families through vlmzoo.load, held to the processor + model.generate."""

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import vlmzoo
from vlmzoo.errors import InputError
from vlmzoo.families.hf import load_processor
from vlmzoo.images import load_image
from vlmzoo.tasks import AskRequest, Grounding, ImagePart, Message

NEW = 6
FAMILIES = ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "gemma3", "mllama"]
MULTI_IMAGE = ["qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "gemma3"]


def _hf_messages(question: str, n_images: int) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": question}]}]


def _processor(path):
    """AutoProcessor; where transformers insists on torchvision for a video part (Qwen2-VL,
    SmolVLM), the images-only processor vlmzoo builds from the same files."""
    try:
        return AutoProcessor.from_pretrained(path)
    except ImportError:
        return load_processor(path)


def _reference(path, question, images):
    """What a user writes with transformers alone: the processor's chat template, tokenized with
    the images in the messages, then generate."""
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    proc = _processor(path)
    messages = [{"role": "user", "content": [{"type": "image", "image": im} for im in images]
                 + [{"type": "text", "text": question}]}]
    inputs = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                      return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
    return proc.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def models(tiny_chat):
    return {key: vlmzoo.load(tiny_chat[key]) for key in FAMILIES}


@pytest.mark.parametrize("key", FAMILIES)
def test_ask_equals_generate(key, models, tiny_chat, photos):
    q = "what is in the image?"
    for photo in photos[:2]:
        expected = _reference(tiny_chat[key], q, [load_image(photo).image])
        answer = models[key].ask(str(photo), q, max_new_tokens=NEW)
        assert answer.text == expected
        assert 0 < answer.num_tokens <= NEW and answer.prompt_tokens > 0 and answer.seconds > 0


@pytest.mark.parametrize("key", MULTI_IMAGE)
def test_two_images_of_different_sizes_in_one_prompt(key, models, tiny_chat, photos):
    q = "what differs between these?"
    imgs = [load_image(photos[0]).image, load_image(photos[3]).image]  # 512x512 and 427x640
    assert imgs[0].size != imgs[1].size
    expected = _reference(tiny_chat[key], q, imgs)
    answer = models[key].ask([str(photos[0]), str(photos[3])], q, max_new_tokens=NEW)
    assert answer.text == expected and answer.images == (str(photos[0]), str(photos[3]))


@pytest.mark.parametrize("key", FAMILIES)
def test_prompt_matches_the_processors_own_template(key, models, tiny_chat):
    proc = _processor(tiny_chat[key])
    for n in (1, 2) if key in MULTI_IMAGE else (1,):
        ours = models[key].prompt(AskRequest((Message("user", (*[ImagePart(None)] * n, "Describe.")),)))
        theirs = proc.apply_chat_template(_hf_messages("Describe.", n), add_generation_prompt=True, tokenize=False)
        assert ours == theirs


@pytest.mark.parametrize("key", FAMILIES)
def test_batch_of_different_lengths_equals_one_by_one(key, models, photos):
    m = models[key]
    questions = ["what is this?", "how many people are standing on the street in this picture?", "and?"]
    imgs = [str(p) for p in photos[: len(questions)]]
    batch = m.ask(imgs, questions, max_new_tokens=NEW)
    assert [a.text for a in batch] == [m.ask(i, q, max_new_tokens=NEW).text for i, q in zip(imgs, questions)]


@pytest.mark.parametrize("key", FAMILIES)
def test_the_image_matters(key, models, photos):
    answers = {models[key].ask(str(p), "what is this?", max_new_tokens=NEW).text for p in photos}
    assert len(answers) > 1, "every image gave the same answer"


@pytest.mark.parametrize("key", ["llava", "mllama"])
def test_single_image_models_refuse_several(key, models, photos):
    with pytest.raises(InputError, match=r"at most 1 image\(s\) per prompt .*got 2"):
        models[key].ask([str(photos[0]), str(photos[1])], "which is bigger?")


def test_chat_history_goes_through_the_template(models, tiny_chat, photos):
    m = models["qwen2_vl"]
    chat = [
        {"role": "user", "content": [{"type": "image", "image": str(photos[0])}, {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "what now?"},
    ]
    proc = _processor(tiny_chat["qwen2_vl"])
    hf = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]},
          {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
          {"role": "user", "content": [{"type": "text", "text": "what now?"}]}]
    from vlmzoo.families.base import ask_requests

    (request,), _ = ask_requests(None, None, chat)
    assert m.prompt(request) == proc.apply_chat_template(hf, add_generation_prompt=True, tokenize=False)
    answer = m.ask(messages=chat, max_new_tokens=NEW)
    assert answer.question == "what now?" and answer.images == (str(photos[0]),)


def test_qwen_pixel_limits_change_the_image_tokens(models, photos):
    m = models["qwen2_vl"]
    full = m.ask(str(photos[0]), "what?", max_new_tokens=1).prompt_tokens
    m.image_max_pixels = 28 * 28 * 4
    try:
        small = m.ask(str(photos[0]), "what?", max_new_tokens=1).prompt_tokens
    finally:
        m.image_max_pixels = None
    assert small < full


def test_idefics3_image_splitting_can_be_turned_off(models, photos):
    m = models["smolvlm"]
    split = m.ask(str(photos[0]), "what?", max_new_tokens=1).prompt_tokens
    m.image_splitting = False
    try:
        single = m.ask(str(photos[0]), "what?", max_new_tokens=1).prompt_tokens
    finally:
        m.image_splitting = None
    assert single < split


@pytest.mark.parametrize("key", ["qwen2_vl", "qwen2_5_vl"])
def test_ground_runs_end_to_end(key, models, photos):
    g = models[key].ground(str(photos[0]), "the astronaut", max_new_tokens=8)
    assert isinstance(g, Grounding) and g.raw and g.phrase == "the astronaut"
    w, h = load_image(photos[0]).image.size
    for b in g.boxes:
        assert 0 <= b.x0 <= b.x1 <= w and 0 <= b.y0 <= b.y1 <= h


def test_stop_strings_and_generation_options(models, photos):
    m = models["gemma3"]
    long = m.ask(str(photos[0]), "what?", max_new_tokens=12)
    assert long.finish_reason in ("length", "stop")
    # a word of plain text (random byte tokens decode to replacement characters, which no
    # stop-string matcher can see), not the first token
    words = [w for w in long.text.split()[1:] if w.isascii() and w.isalnum()]
    assert words, f"no plain word to stop at in {long.text!r}"
    stop = words[0]
    cut = m.ask(str(photos[0]), "what?", max_new_tokens=12, stop=stop)
    assert stop not in cut.text and long.text.startswith(cut.text) and cut.finish_reason == "stop"
    assert cut.num_tokens < long.num_tokens  # generation ended early, not only the text
    a = m.ask(str(photos[0]), "what?", max_new_tokens=8, temperature=1.0, seed=3).text
    assert a == m.ask(str(photos[0]), "what?", max_new_tokens=8, temperature=1.0, seed=3).text


def test_catalog_ids_load_the_mirror_and_the_cli_grounds_and_draws(tiny_chat, monkeypatch, photos, tmp_path):
    import json

    from click.testing import CliRunner

    from vlmzoo.cli import main

    monkeypatch.setenv("VLMZOO_MODELS_DIR", str(tiny_chat["root"]))
    m = vlmzoo.load("qwen2-vl-2b")
    assert m.card.id == "qwen2-vl-2b" and m.tasks == {"caption", "ask", "ground"} and m.max_images() is None
    assert vlmzoo.load("llava-1.5-7b").max_images() == 1
    out = tmp_path / "boxes.png"
    res = CliRunner().invoke(main, ["ground", str(photos[0]), "the astronaut", "--model", "qwen2-vl-2b",
                                    "--max-new-tokens", "8", "--draw", str(out), "--jsonl"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["phrase"] == "the astronaut" and out.is_file()
    res = CliRunner().invoke(main, ["ask", str(photos[0]), str(photos[1]), "what differs?", "--model",
                                    "qwen2-vl-2b", "--max-new-tokens", "4", "--stream"])
    assert res.exit_code == 0 and res.stdout.strip()
    res = CliRunner().invoke(main, ["ask", str(photos[0]), str(photos[1]), "what differs?", "--model", "llava-1.5-7b"])
    assert res.exit_code == 2 and "at most 1 image(s)" in res.output
