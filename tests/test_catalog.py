import tomllib
from importlib import resources

import pytest
from pydantic import ValidationError

from vlmzoo import catalog
from vlmzoo.catalog.schema import FACT_FIELDS, Card
from vlmzoo.errors import UnknownModelError
from vlmzoo.families import loadable

CARD_DIR = resources.files("vlmzoo.catalog").joinpath("cards")
CARD_FILES = sorted(p for p in CARD_DIR.iterdir() if p.name.endswith(".toml"))

# Every model the two seed tables name must have a card (by id).
SEED_MODELS = [
    "minicpm-v-2.6", "qwen2-vl-2b", "qwen2-vl-7b", "molmo-7b-o", "molmo-7b-d", "moondream1",
    "moondream2", "llava-1.5-7b", "llava-1.5-13b", "paligemma-3b", "llama-3.2-11b-vision",
    "nvlm-d-72b", "blip", "blip2", "clip-vit-b-32", "siglip", "git", "kosmos-2", "minigpt-4",
    "imagebind", "seed", "gpt-4o", "gpt-4o-mini", "gemini",
]


def _raw(name: str) -> dict:
    return tomllib.loads(CARD_DIR.joinpath(name).read_text())


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.name)
def test_every_card_validates_and_is_named_after_its_id(path):
    card = Card.model_validate(tomllib.loads(path.read_text()))
    assert path.name == f"{card.id}.toml"
    assert set(FACT_FIELDS) <= set(card.sources)


def test_catalog_covers_the_seed_models():
    ids = {c.id for c in catalog.cards()}
    missing = [m for m in SEED_MODELS if m not in ids]
    assert not missing, f"no card for {missing}"


def test_schema_rejects_a_missing_field():
    raw = _raw("clip-vit-b-32.toml")
    del raw["license"]
    with pytest.raises(ValidationError, match="license"):
        Card.model_validate(raw)


def test_schema_rejects_an_unknown_family():
    raw = _raw("clip-vit-b-32.toml")
    raw["family"] = "no-such-family"
    with pytest.raises(ValidationError, match="unknown family"):
        Card.model_validate(raw)


def test_schema_rejects_a_fact_without_source():
    raw = _raw("clip-vit-b-32.toml")
    del raw["sources"]["params_b"]
    with pytest.raises(ValidationError, match="no source for: params_b"):
        Card.model_validate(raw)


def test_schema_rejects_supported_card_of_a_family_without_code(monkeypatch):
    import vlmzoo.families
    from vlmzoo.families import Family

    table = {**vlmzoo.families.families(), "nocode": Family("nocode", None)}  # every built-in family has code
    monkeypatch.setattr(vlmzoo.families, "families", lambda: table)
    raw = _raw("clip-vit-b-32.toml")
    raw["family"] = "nocode"
    assert not loadable("nocode")
    with pytest.raises(ValidationError, match="has no code yet"):
        Card.model_validate(raw)


def test_supported_cards_are_exactly_the_loadable_families():
    for card in catalog.cards():
        assert (card.support == "supported") == loadable(card.family), card.id


def test_seed_corrections_are_recorded():
    clip = catalog.get("clip-vit-b-32").card
    assert clip.params_b == pytest.approx(0.151, abs=0.001)
    assert any(c.field == "params_b" and "125M" in c.seed for c in clip.corrections)
    gemini = catalog.get("gemini").card
    assert gemini.access == "api"
    assert any("describeai/gemini" in (c.seed + c.why) for c in gemini.corrections)


def test_lookup_by_id_alias_checkpoint_and_hub_id():
    assert catalog.get("clip-vit-b-32").checkpoint.hub_id == "openai/clip-vit-base-patch32"
    assert catalog.get("CLIP").card.id == "clip-vit-b-32"
    assert catalog.get("openai/clip-vit-base-patch32").card.id == "clip-vit-b-32"
    vqa = catalog.get("blip-vqa-base")
    assert vqa.card.id == "blip" and vqa.checkpoint.tasks == ("ask",)
    assert catalog.get("siglip-so400m").checkpoint.hub_id == "google/siglip-so400m-patch14-384"


def test_unknown_id_suggests_the_nearest():
    with pytest.raises(UnknownModelError, match="clip-vit-b-32"):
        catalog.get("clip-vit-b-23")


@pytest.mark.parametrize("text,value", [("3B", 3.0), ("500M", 0.5), ("0.2", 0.2), ("1.5b", 1.5)])
def test_parse_params(text, value):
    assert catalog.parse_params(text) == pytest.approx(value)


def test_parse_params_rejects_garbage():
    with pytest.raises(ValueError, match="3 billion"):
        catalog.parse_params("3 billion")


def test_filters():
    small_multi = catalog.list_models(task="ask", max_params_b=3.0, multi_image=True)
    assert small_multi, "expected at least Qwen2-VL-2B"
    for c in small_multi:
        assert "ask" in c.tasks and c.params_b <= 3.0 and c.multi_image
    assert "qwen2-vl-2b" in {c.id for c in small_multi}
    duals = catalog.list_models(architecture="dual encoder")
    assert {"clip-vit-b-32", "siglip"} <= {c.id for c in duals}
    assert all(c.architecture == "dual encoder" for c in duals)
    supported = {c.id for c in catalog.list_models(support="supported")}
    assert {"clip-vit-b-32", "siglip", "blip"} <= supported
    assert all(catalog.get(i).card.support == "supported" for i in supported)
    zh = catalog.list_models(language="zh")
    assert zh and all("zh" in c.languages for c in zh)



def test_list_models_is_the_public_filter_and_reads_sizes():
    import vlmzoo

    assert [c.id for c in vlmzoo.list_models(max_params_b="500M")] == \
        [c.id for c in catalog.list_models(max_params_b=0.5)]
    assert all(c.params_b <= 0.5 for c in vlmzoo.list_models(max_params_b="500M"))
    non_commercial = {c.id for c in catalog.list_models(license="non-commercial")}
    assert {"moondream1", "qwen2.5-vl"} <= non_commercial and "qwen2-vl-2b" not in non_commercial


def test_every_card_has_a_short_license_name():
    allowed_words = {"proprietary", "non-commercial", "unknown"}
    for card in catalog.cards():
        assert len(card.license_short) <= 24, card.id
        assert card.license_short in allowed_words or card.license_short[0].isupper(), card.id
    assert catalog.get("gpt-4o").card.license_short == "proprietary"
    assert catalog.get("qwen2-vl-2b").card.license_short == "Apache-2.0"
