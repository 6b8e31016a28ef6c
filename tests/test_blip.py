"""BLIP's three heads through vlmzoo.load, held to plain transformers on the same checkpoints."""

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoProcessor

import vlmzoo
from vlmzoo.errors import InputError, TaskNotSupportedError
from vlmzoo.images import load_image

NEW = 6  # new tokens per generation: enough to compare, cheap on CPU


def _plain(path, head):
    return getattr(transformers, head).from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


@pytest.fixture(scope="module")
def captioner(tiny):
    return vlmzoo.load(tiny["blip-caption"])


@pytest.fixture(scope="module")
def vqa(tiny):
    return vlmzoo.load(tiny["blip-vqa"])


@pytest.fixture(scope="module")
def itm(tiny):
    return vlmzoo.load(tiny["blip-itm"])


@pytest.mark.parametrize("prompt", [None, "a picture of"])
def test_caption_equals_generate(captioner, tiny, photos, prompt):
    model, proc = _plain(tiny["blip-caption"], "BlipForConditionalGeneration")
    for photo in photos:
        inputs = proc(images=load_image(photo).image, text=prompt, return_tensors="pt")
        inputs.pop("token_type_ids", None)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
        expected = proc.decode(out[0], skip_special_tokens=True).strip()
        got = captioner.caption(str(photo), prompt=prompt, max_new_tokens=NEW)
        assert got.text == expected
        assert got.prompt == prompt and 0 < got.num_tokens <= NEW
        if prompt:
            assert got.text.startswith(prompt)


def test_caption_batch_equals_one_by_one(captioner, photos):
    batch = captioner.caption([str(p) for p in photos], max_new_tokens=NEW)
    singles = [captioner.caption(str(p), max_new_tokens=NEW) for p in photos]
    assert [c.text for c in batch] == [c.text for c in singles]
    assert [c.image for c in batch] == [str(p) for p in photos]


def test_the_image_matters(captioner, photos):
    texts = {c.text for c in captioner.caption([str(p) for p in photos], max_new_tokens=NEW)}
    assert len(texts) > 1


def test_vqa_equals_generate(vqa, tiny, photos):
    model, proc = _plain(tiny["blip-vqa"], "BlipForQuestionAnswering")
    question = "how many cats are there?"
    for photo in photos:
        inputs = proc(images=load_image(photo).image, text=question, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                                 attention_mask=inputs["attention_mask"], max_new_tokens=NEW)
        expected = proc.decode(out[0], skip_special_tokens=True).strip()
        got = vqa.ask(str(photo), question, max_new_tokens=NEW)
        assert got.text == expected and got.question == question and got.images == (str(photo),)


def test_vqa_batch_of_mixed_lengths_equals_one_by_one(vqa, photos):
    questions = ["is there a cat?", "what color is the cup on the table?", "how many?", "is there a dog?"]
    imgs = [str(p) for p in photos][: len(questions)]
    batch = vqa.ask(imgs, questions[: len(imgs)], max_new_tokens=NEW)
    singles = [vqa.ask(i, q, max_new_tokens=NEW) for i, q in zip(imgs, questions)]
    assert [a.text for a in batch] == [a.text for a in singles]
    assert [a.question for a in batch] == questions[: len(imgs)]


def test_itm_equals_transformers(itm, tiny, photos):
    model, proc = _plain(tiny["blip-itm"], "BlipForImageTextRetrieval")
    texts = ["a cat", "an astronaut in a white suit"]
    scores = itm.match([str(p) for p in photos], texts)
    assert scores.kind == "itm" and scores.scores.shape == (len(photos), 2)
    for i, photo in enumerate(photos):
        for j, text in enumerate(texts):
            inputs = proc(images=load_image(photo).image, text=text, return_tensors="pt")
            with torch.no_grad():
                logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                               pixel_values=inputs["pixel_values"], use_itm_head=True).itm_score
            assert scores.scores[i, j] == pytest.approx(logits.softmax(-1)[0, 1].item(), abs=1e-5)
    ranked = itm.retrieve(images=[str(p) for p in photos], texts=texts, k=1)
    for j, r in enumerate(ranked):
        assert r.hits[0].index == int(np.argmax(scores.scores[:, j]))


def test_each_checkpoint_has_only_its_head(captioner, vqa, itm, photos):
    assert captioner.tasks == {"caption"} and vqa.tasks == {"ask"} and itm.tasks == {"match", "retrieve"}
    with pytest.raises(TaskNotSupportedError, match="its tasks are: caption"):
        captioner.ask(str(photos[0]), "what?")
    with pytest.raises(TaskNotSupportedError, match="its tasks are: match, retrieve"):
        itm.caption(str(photos[0]))


def test_bad_generation_requests(captioner, vqa, photos):
    with pytest.raises(InputError, match="max_new_tokens must be an integer from 1 to 8192, got 0"):
        captioner.caption(str(photos[0]), max_new_tokens=0)
    with pytest.raises(InputError, match=r"unknown generation option\(s\) \['beam_width'\]"):
        captioner.caption(str(photos[0]), beam_width=3)
    with pytest.raises(InputError, match="top_p must be in"):
        captioner.caption(str(photos[0]), temperature=0.7, top_p=1.5)
    with pytest.raises(InputError, match="3 questions but 2 image entries"):
        vqa.ask([str(photos[0]), str(photos[1])], ["a?", "b?", "c?"])
    with pytest.raises(InputError, match="exactly one image per question, got 2"):
        vqa.ask([str(photos[0]), str(photos[1])], "which one is bigger?")
    with pytest.raises(InputError, match="question is empty"):
        vqa.ask(str(photos[0]), [])


def test_catalog_checkpoint_names_load_the_right_head(mirror):
    assert vlmzoo.load("blip-base").tasks == {"caption"}
    assert vlmzoo.load("blip-vqa-base").tasks == {"ask"}
    assert vlmzoo.load("blip-itm-base-coco").tasks == {"match", "retrieve"}


def test_vqa_takes_a_single_turn_chat(vqa, photos):
    direct = vqa.ask(str(photos[0]), "how many cats?", max_new_tokens=NEW)
    chat = [{"role": "user", "content": [{"type": "image", "image": str(photos[0])},
                                          {"type": "text", "text": "how many cats?"}]}]
    assert vqa.ask(messages=chat, max_new_tokens=NEW).text == direct.text
    from vlmzoo.tasks import ImagePart, Message

    msg = Message.user(ImagePart(str(photos[0])), "how many cats?")
    assert vqa.ask(messages=[msg], max_new_tokens=NEW).text == direct.text
    assert vqa.ask(messages=[Message.user(photos[0], "how many cats?")], max_new_tokens=NEW).text == direct.text


def test_vqa_refuses_several_images_and_chats_clearly(vqa, photos):
    from vlmzoo.tasks import Message

    with pytest.raises(InputError, match="exactly one image per question, got 2"):
        vqa.ask(messages=[Message.user(photos[0], photos[1], "which is bigger?")])
    with pytest.raises(InputError, match="not a chat: got 2 messages"):
        vqa.ask(messages=[Message.user(photos[0], "hi"), Message("assistant", ("hello",))])
    with pytest.raises(InputError, match="role 'robot'"):
        vqa.ask(messages=[{"role": "robot", "content": "hi"}])
    with pytest.raises(InputError, match="non-empty list"):
        vqa.ask(messages=[])
