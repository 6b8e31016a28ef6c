"""Prompted families through vlmzoo.load, held to model.generate on the same checkpoints."""

import inspect

import pytest
import torch
import transformers
from transformers import AutoProcessor

import vlmzoo
from vlmzoo.errors import InputError, TaskNotSupportedError
from vlmzoo.images import load_image
from vlmzoo.tasks import Grounding

NEW = 6

# family key -> (transformers class, output echoes the prompt, caption prompt, question format)
FAMILIES = {
    "blip2_opt": ("Blip2ForConditionalGeneration", True, "", "Question: {} Answer:"),
    "blip2_t5": ("Blip2ForConditionalGeneration", False, "", "Question: {} Short answer:"),
    "instructblip": ("InstructBlipForConditionalGeneration", True, "A short image caption:", "{}"),
    "kosmos2": ("Kosmos2ForConditionalGeneration", True, "<grounding>An image of", "<grounding> Question: {} Answer:"),
    "paligemma": ("PaliGemmaForConditionalGeneration", True, "<image>caption en", "<image>answer en {}"),
    "florence2": ("Florence2ForConditionalGeneration", False, "<CAPTION>", None),
}


def _reference(path, cls_name, prompt, image, echoes):
    """What a user writes with transformers alone: processor, generate, decode the new tokens."""
    model = getattr(transformers, cls_name).from_pretrained(path).eval()
    proc = AutoProcessor.from_pretrained(path)
    inputs = proc(images=image, text=prompt, return_tensors="pt")
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        inputs.pop("token_type_ids", None)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:] if echoes else out[0]
    return proc.tokenizer.decode(new, skip_special_tokens=True)


@pytest.fixture(scope="module")
def models(tiny_prompted):
    return {key: vlmzoo.load(tiny_prompted[key]) for key in [*FAMILIES, "git"]}


@pytest.mark.parametrize("key", FAMILIES)
def test_caption_equals_generate(key, models, tiny_prompted, photos):
    cls_name, echoes, caption_prompt, _ = FAMILIES[key]
    m = models[key]
    for photo in photos[:2]:
        expected = _reference(tiny_prompted[key], cls_name, caption_prompt, load_image(photo).image, echoes)
        assert m.caption(str(photo), max_new_tokens=NEW).text == m.clean(expected)


@pytest.mark.parametrize("key", [k for k, v in FAMILIES.items() if v[3]])
def test_ask_equals_generate(key, models, tiny_prompted, photos):
    cls_name, echoes, _, fmt = FAMILIES[key]
    m = models[key]
    q = "what is in the image?"
    expected = _reference(tiny_prompted[key], cls_name, fmt.format(q), load_image(photos[0]).image, echoes)
    answer = m.ask(str(photos[0]), q, max_new_tokens=NEW)
    assert answer.text == m.clean(expected)
    assert answer.question == q and answer.images == (str(photos[0]),)
    assert 0 < answer.num_tokens <= NEW and answer.prompt_tokens > 0 and answer.finish_reason in ("stop", "length")


def test_git_caption_and_vqa_equal_generate(models, tiny_prompted, photos):
    model = transformers.GitForCausalLM.from_pretrained(tiny_prompted["git"]).eval()
    proc = AutoProcessor.from_pretrained(tiny_prompted["git"])
    pixels = proc(images=load_image(photos[0]).image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cap = model.generate(pixel_values=pixels, max_new_tokens=NEW)
    assert models["git"].caption(str(photos[0]), max_new_tokens=NEW).text == \
        proc.tokenizer.decode(cap[0, 1:], skip_special_tokens=True).strip()
    q = "what is in the image?"
    ids = torch.tensor([[proc.tokenizer.cls_token_id] + proc.tokenizer(q, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.generate(pixel_values=pixels, input_ids=ids, max_new_tokens=NEW)
    assert models["git"].ask(str(photos[0]), q, max_new_tokens=NEW).text == \
        proc.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


@pytest.mark.parametrize("key", [*FAMILIES, "git"])
def test_batch_equals_one_by_one_and_the_image_matters(key, models, photos):
    m = models[key]  # at its default batch size (Kosmos-2's is 1: padded batches drift there)
    batch = m.caption([str(p) for p in photos], max_new_tokens=NEW)
    singles = [m.caption(str(p), max_new_tokens=NEW) for p in photos]
    assert [c.text for c in batch] == [c.text for c in singles]
    assert len({c.text for c in batch}) > 1, "every image gave the same caption"


@pytest.mark.parametrize("key", [k for k, v in FAMILIES.items() if v[3]] + ["git"])
def test_questions_of_different_lengths_batch_like_singles(key, models, photos):
    m = models[key]
    questions = ["what is this?", "how many people are standing on the street in the picture?"]
    imgs = [str(photos[0]), str(photos[1])]
    batch = m.ask(imgs, questions, max_new_tokens=NEW)
    assert [a.text for a in batch] == [m.ask(i, q, max_new_tokens=NEW).text for i, q in zip(imgs, questions)]


@pytest.mark.parametrize("key", ["kosmos2", "paligemma", "florence2"])
def test_ground_runs_end_to_end(key, models, photos):
    g = models[key].ground(str(photos[0]), "a cat", max_new_tokens=8)
    assert isinstance(g, Grounding) and g.phrase == "a cat" and g.raw
    w, h = load_image(photos[0]).image.size
    for b in g.boxes:  # a random model may find none; any it finds must lie in the image
        assert 0 <= b.x0 <= b.x1 <= w and 0 <= b.y0 <= b.y1 <= h


def test_single_image_models_refuse_two(models, photos):
    with pytest.raises(InputError, match=r"takes at most 1 image\(s\) per prompt \(per its card\); got 2"):
        models["blip2_opt"].ask([str(photos[0]), str(photos[1])], "which is bigger?")
    with pytest.raises(InputError, match="not a chat"):
        models["paligemma"].ask(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])


def test_tasks_follow_the_family(models, photos):
    with pytest.raises(TaskNotSupportedError, match="caption, detect, ground"):
        models["florence2"].ask(str(photos[0]), "what?")
    with pytest.raises(TaskNotSupportedError):
        models["blip2_opt"].ground(str(photos[0]), "a cat")
    with pytest.raises(InputError, match="task tokens"):
        models["florence2"].caption(str(photos[0]), prompt="describe it")


def test_streaming_pieces_add_up_to_the_answer(models, photos):
    # GIT's WordPiece vocabulary has no byte tokens: a random model's output is still valid text.
    # (With byte-fallback vocabularies, random bytes can form invalid UTF-8 that the final decode
    # turns into replacement characters after earlier bytes were already streamed.)
    m = models["git"]
    stream = m.ask(str(photos[0]), "what is this?", stream=True, max_new_tokens=NEW)
    pieces = list(stream)
    assert "".join(pieces).strip() == stream.result.text == m.ask(str(photos[0]), "what is this?", max_new_tokens=NEW).text
    assert stream.result.ttft > 0


def test_sampling_is_seeded(models, photos):
    m = models["git"]
    a = m.caption(str(photos[0]), max_new_tokens=NEW, temperature=1.5, seed=7).text
    b = m.caption(str(photos[0]), max_new_tokens=NEW, temperature=1.5, seed=7).text
    assert a == b
    others = {m.caption(str(photos[0]), max_new_tokens=NEW, temperature=1.5, seed=s).text for s in range(8)}
    assert len(others) > 1, "sampling gave one caption for every seed"


def test_catalog_names_load_through_the_mirror_with_checkpoint_tasks(tiny_prompted, monkeypatch):
    monkeypatch.setenv("VLMZOO_MODELS_DIR", str(tiny_prompted["root"]))
    m = vlmzoo.load("blip2-opt-2.7b")
    assert m.card.id == "blip2" and m.tasks == {"caption", "ask"}
    assert vlmzoo.load("paligemma-3b-mix-224").tasks == {"caption", "ask", "ground"}
    # git-base-coco is the captioning fine-tune: its card narrows GIT's tasks to caption
    git = vlmzoo.load("git-base-coco")
    assert git.tasks == {"caption"}
    with pytest.raises(TaskNotSupportedError, match="its tasks are: caption"):
        git.ask("x.jpg", "what?")


def test_blip2_itm_equals_transformers_and_retrieves(tiny_prompted, photos):
    m = vlmzoo.load(tiny_prompted["blip2_itm"])
    assert m.tasks == {"match", "retrieve"}
    texts = ["a cat", "an astronaut in a white suit on a sunny day"]
    scores = m.match([str(p) for p in photos[:2]], texts)
    model = transformers.Blip2ForImageTextRetrieval.from_pretrained(tiny_prompted["blip2_itm"]).eval()
    proc = AutoProcessor.from_pretrained(tiny_prompted["blip2_itm"])
    for i, photo in enumerate(photos[:2]):
        for j, text in enumerate(texts):
            inputs = proc(images=load_image(photo).image, text=text, return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs, use_image_text_matching_head=True).logits_per_image
            assert scores.scores[i, j] == pytest.approx(logits.softmax(-1)[0, 1].item(), abs=1e-5)
    assert len({round(float(x), 6) for x in scores.scores.ravel()}) > 1  # images and texts matter
    hits = m.retrieve(images=[str(p) for p in photos[:2]], texts=texts, k=1)
    assert [h.hits[0].index for h in hits] == [int(scores.scores[:, j].argmax()) for j in range(2)]


def test_florence2_detects_everything_with_od(models, photos, tiny_prompted):
    from click.testing import CliRunner

    from vlmzoo.cli import main

    g = models["florence2"].detect(str(photos[0]), max_new_tokens=12)
    assert isinstance(g, Grounding) and g.phrase == "" and g.raw
    w, h = load_image(photos[0]).image.size
    assert all(0 <= b.x0 <= b.x1 <= w and 0 <= b.y0 <= b.y1 <= h for b in g.boxes)
    with pytest.raises(TaskNotSupportedError, match="cannot 'detect'"):
        models["paligemma"].detect(str(photos[0]))
    res = CliRunner().invoke(main, ["detect", str(photos[0]), "--model", str(tiny_prompted["florence2"]),
                                    "--max-new-tokens", "8", "--jsonl"])
    assert res.exit_code == 0 and "boxes" in res.stdout
