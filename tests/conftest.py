"""Shared fixtures: tiny checkpoints built once per session, sample photos, an offline hub."""

from __future__ import annotations

from pathlib import Path

import pytest


def _mirror(tmp_path_factory, name: str, build_all) -> dict[str, Path]:
    """Run a factory's ``build_all`` into a fresh folder laid out like a hub mirror."""
    root = tmp_path_factory.mktemp(name)
    paths = build_all(root)
    paths["root"] = root
    return paths


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny random CLIP, SigLIP and BLIP checkpoints."""
    import factory

    return _mirror(tmp_path_factory, "mirror", factory.build_all)


@pytest.fixture(scope="session")
def tiny_prompted(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints of the prompted generative families (BLIP-2, GIT, PaliGemma, ...)."""
    import factory_prompted

    return _mirror(tmp_path_factory, "mirror-prompted", factory_prompted.build_all_prompted)


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints of the chat-template families (LLaVA, Qwen2-VL, SmolVLM, ...)."""
    import factory_chat

    return _mirror(tmp_path_factory, "mirror-chat", factory_chat.build_all_chat)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never touch the network: the hub is declared offline, and no mirror is set."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VLMZOO_MODELS_DIR", raising=False)


@pytest.fixture
def mirror(tiny, monkeypatch) -> Path:
    """Point $VLMZOO_MODELS_DIR at the tiny checkpoints so catalog ids resolve to them."""
    monkeypatch.setenv("VLMZOO_MODELS_DIR", str(tiny["root"]))
    return tiny["root"]


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """Real photos (scikit-image's), of different sizes."""
    from vlmzoo.samples import sample_photos

    return sample_photos()
