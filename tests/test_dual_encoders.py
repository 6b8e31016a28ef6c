"""CLIP and SigLIP through vlmzoo.load, held to plain transformers on the same checkpoint."""

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoProcessor

import vlmzoo
from vlmzoo.errors import InputError, TaskNotSupportedError
from vlmzoo.images import load_image

LABELS = ["a cat", "a rocket", "a cup of coffee", "an astronaut"]


@pytest.fixture(scope="module")
def clip(tiny):
    return vlmzoo.load(tiny["clip"], dtype="float32")  # exact mode: parity with transformers


@pytest.fixture(scope="module")
def siglip(tiny):
    return vlmzoo.load(tiny["siglip"], dtype="float32")


def _reference(path, photos, texts, **tok_kwargs):
    """What a user writes with transformers alone."""
    model = AutoModel.from_pretrained(path).eval()
    proc = AutoProcessor.from_pretrained(path)
    images = [load_image(p).image for p in photos]
    inputs = proc(text=texts, images=images, return_tensors="pt", **tok_kwargs)
    with torch.no_grad():
        return model(**inputs)


def test_clip_classify_equals_transformers(clip, tiny, photos):
    ref = _reference(tiny["clip"], photos, [f"a photo of a {x}." for x in LABELS], padding=True)
    expected = ref.logits_per_image.softmax(dim=-1).numpy()
    results = clip.classify([str(p) for p in photos], LABELS)
    for row, res in zip(expected, results):
        got = np.array([res.as_dict()[label] for label in LABELS])
        np.testing.assert_allclose(got, row, atol=1e-5)
        assert res.kind == "softmax" and res.label == LABELS[int(row.argmax())]
        assert sum(res.scores) == pytest.approx(1.0, abs=1e-5)


def test_siglip_classify_equals_transformers_with_max_length_padding(siglip, tiny, photos):
    texts = [f"This is a photo of {x}." for x in LABELS]
    ref = _reference(tiny["siglip"], photos, texts, padding="max_length")
    expected = torch.sigmoid(ref.logits_per_image).numpy()
    results = siglip.classify([str(p) for p in photos], LABELS)
    for row, res in zip(expected, results):
        np.testing.assert_allclose([res.as_dict()[label] for label in LABELS], row, atol=1e-5)
        assert res.kind == "sigmoid"
    # padding to the longest text instead gives different (wrong) scores: the quirk is real
    wrong = torch.sigmoid(_reference(tiny["siglip"], photos, texts, padding=True).logits_per_image).numpy()
    assert not np.allclose(wrong, expected, atol=1e-4)


def test_siglip_text_is_canonicalised(siglip):
    emb = siglip.embed_texts(["A Cat!", "a cat"]).vectors
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_embeddings_equal_transformers(family, tiny, photos, request):
    model = request.getfixturevalue(family)
    pad = "max_length" if family == "siglip" else True
    ref = _reference(tiny[family], photos, ["a cat", "two dogs on the street"], padding=pad)
    img = model.embed_images([str(p) for p in photos])
    txt = model.embed_texts(["a cat", "two dogs on the street"])
    np.testing.assert_allclose(img.vectors, ref.image_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(txt.vectors, ref.text_embeds.numpy(), atol=1e-5)
    assert img.inputs == tuple(str(p) for p in photos) and txt.modality == "text"
    np.testing.assert_allclose(np.linalg.norm(img.vectors, axis=1), 1.0, atol=1e-5)


def test_batch_size_does_not_change_results(tiny, photos):
    m = vlmzoo.load(tiny["clip"], dtype="float32")
    m.batch_size = 1
    one = m.embed_images([str(p) for p in photos]).vectors
    m.batch_size = 3
    np.testing.assert_allclose(m.embed_images([str(p) for p in photos]).vectors, one, atol=1e-5)


def test_label_embeddings_are_computed_once_not_per_image(tiny, photos, monkeypatch):
    m = vlmzoo.load(tiny["clip"])
    m.batch_size = 1  # one image per forward pass: a per-image text pass would show
    seen = []
    original = m.text_features
    monkeypatch.setattr(m, "text_features", lambda texts: seen.extend(texts) or original(texts))
    m.classify([str(p) for p in photos] * 2, ["cat", "dog"])
    assert seen == ["a photo of a cat.", "a photo of a dog."]
    m.classify([str(p) for p in photos], ["cat", "dog"])  # same labels again: cached
    assert len(seen) == 2


def test_template_ensemble_is_the_normalised_mean(clip, photos):
    templates = ["a photo of a {}.", "art of the {}."]
    res = clip.classify(str(photos[0]), ["cat", "rocket"], templates=templates)
    t = clip.embed_texts([tpl.format(lbl) for lbl in ["cat", "rocket"] for tpl in templates]).vectors
    t = t.reshape(2, 2, -1).mean(axis=1)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    i = clip.embed_images(str(photos[0])).vectors
    logits = (i @ t.T)[0] * clip.model.logit_scale.exp().item()
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([res.as_dict()["cat"], res.as_dict()["rocket"]], probs, atol=1e-5)
    named = clip.classify(str(photos[0]), ["cat", "rocket"], templates="clip-imagenet-7")
    assert named.as_dict() != res.as_dict()


def test_match_and_retrieve(clip, siglip, photos):
    imgs = [str(p) for p in photos]
    scores = clip.match(imgs, ["a cat", "a rocket"])
    emb_i, emb_t = clip.embed_images(imgs).vectors, clip.embed_texts(["a cat", "a rocket"]).vectors
    np.testing.assert_allclose(scores.scores, emb_i @ emb_t.T, atol=1e-5)
    assert scores.kind == "cosine"
    hits = clip.retrieve(images=imgs, texts=["a cat", "a rocket"], k=2)
    for j, r in enumerate(hits):
        best = np.argsort(-scores.scores[:, j], kind="stable")[:2]
        assert [h.index for h in r.hits] == list(best)
    by_image = clip.retrieve(images=imgs, texts=["a cat", "a rocket"], k=5, query="image")
    assert len(by_image) == len(imgs) and all(len(r.hits) == 2 for r in by_image)
    sig = siglip.match(imgs, ["a cat"])
    assert sig.kind == "sigmoid" and ((sig.scores > 0) & (sig.scores < 1)).all()


def test_labels_rank_by_logit_where_probabilities_round_to_a_tie():
    from vlmzoo.families.dual_encoder import rank_labels

    # sigmoid(17) and sigmoid(20) are both exactly 1.0 in float32: the logits still order them
    logits = torch.tensor([[17.0, 20.0, 0.0, -1.0], [-1.0, 0.0, 20.0, 17.0]])
    probs = logits.sigmoid()
    assert probs[0, 0] == probs[0, 1] == 1.0
    order, scores = rank_labels(logits.numpy(), probs.numpy(), 4)
    assert order.tolist() == [[1, 0, 2, 3], [2, 3, 1, 0]]
    np.testing.assert_allclose(scores, [[1.0, 1.0, 0.5, 1 / (1 + np.e)], [1.0, 1.0, 0.5, 1 / (1 + np.e)]], rtol=1e-6)
    # softmax tails underflow to 0 in float32: e^-150 and e^-200 are both 0.0, -150 ranks first
    logits = torch.tensor([[0.0, -200.0, -150.0]])
    probs = logits.softmax(dim=-1)
    order, scores = rank_labels(logits.numpy(), probs.numpy(), 2)
    assert probs[0, 1] == probs[0, 2] == 0.0 and order.tolist() == [[0, 2]] and scores.tolist() == [[1.0, 0.0]]
    # equal logits keep the labels' order
    assert rank_labels(np.zeros((1, 3), np.float32), np.full((1, 3), 0.5, np.float32), 3)[0].tolist() == [[0, 1, 2]]


def test_siglip_classify_ranks_saturated_labels_by_logit(siglip, photos, monkeypatch):
    fixed = torch.tensor([17.0, 20.0, 0.0, -1.0])  # sigmoid: 1.0, 1.0, 0.5, 0.2689 in float32
    monkeypatch.setattr(siglip, "logits", lambda image_feats, text_feats: fixed.expand(len(image_feats), -1))
    for res in siglip.classify([str(p) for p in photos], LABELS):
        assert res.labels == ("a rocket", "a cat", "a cup of coffee", "an astronaut")
        assert res.scores == pytest.approx((1.0, 1.0, 0.5, 1 / (1 + np.e)), rel=1e-6)
    top = siglip.classify(str(photos[0]), LABELS, top_k=1)
    assert top.labels == ("a rocket",) and top.scores == (1.0,)


def test_siglip_retrieve_ranks_saturated_matches_by_logit(siglip, photos, monkeypatch):
    fixed = torch.tensor([17.0, 20.0, 0.0])  # sigmoid: 1.0, 1.0, 0.5 in float32
    monkeypatch.setattr(siglip, "logits", lambda image_feats, text_feats: fixed.expand(len(image_feats), -1))
    texts = ["first", "second", "third"]
    hits = siglip.retrieve(images=[str(photos[0])], texts=texts, k=3, query="image")[0].hits
    assert [h.item for h in hits] == ["second", "first", "third"]
    assert [h.score for h in hits] == pytest.approx([1.0, 1.0, 0.5])


def test_single_input_gives_single_result(clip, photos):
    one = clip.classify(str(photos[0]), ["cat", "dog"])
    many = clip.classify([str(photos[0])], ["cat", "dog"])
    assert one.image == many[0].image and one.scores == many[0].scores


def test_different_images_give_different_scores(clip, photos):
    a, b = clip.classify([str(photos[0]), str(photos[1])], LABELS)
    assert a.as_dict() != b.as_dict()


def test_bad_requests_are_named(clip, photos):
    with pytest.raises(InputError, match="labels is empty"):
        clip.classify(str(photos[0]), [])
    with pytest.raises(InputError, match="distinct"):
        clip.classify(str(photos[0]), ["cat", "cat"])
    with pytest.raises(InputError, match="exactly one"):
        clip.classify(str(photos[0]), ["cat"], templates="no placeholder")
    with pytest.raises(InputError, match="must be strings"):
        clip.embed_texts(["ok", 3])
    with pytest.raises(TaskNotSupportedError, match="classify, embed, match, retrieve"):
        clip.caption(str(photos[0]))
    with pytest.raises(TaskNotSupportedError, match="cannot 'ask'"):
        clip.ask(str(photos[0]), "what?")


def test_catalog_id_loads_through_mirror(mirror, photos):
    m = vlmzoo.load("clip-vit-b-32")
    assert m.name == "clip-vit-b-32" and m.card.id == "clip-vit-b-32"
    assert m.classify(str(photos[0]), ["cat", "dog"]).kind == "softmax"
    s = vlmzoo.load("siglip")  # the card's first checkpoint
    assert s.checkpoint.hub_id == "google/siglip-base-patch16-224"
    assert vlmzoo.load("openai/clip-vit-base-patch32").card.id == "clip-vit-b-32"
