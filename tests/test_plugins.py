"""Out-of-tree families: a package installed beside vlmzoo adds a family and its cards through the
``vlmzoo.families`` entry-point group, and its models load through ``vlmzoo.load`` like any other.

The plugin (tests/plugin/) is installed with pip into a folder of its own, and used from a fresh
Python process with that folder on its path, so this process's caches and metadata stay as
they were. Its model owns its modeling code: it comes in through the ``build_model`` hook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PLUGIN = Path(__file__).parent / "plugin"

USE = """
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from vlmzoo import catalog, families
    import vlmzoo
    cards = [c.id for c in catalog.cards()]
    by_card = vlmzoo.load("tinyplug-embed")
    by_folder = vlmzoo.load(sys.argv[1])
    out = {
        "cards": cards,
        "families": sorted(families.families()),
        "class": type(by_card).__name__,
        "tasks": sorted(by_card.tasks),
        "name": by_card.name,
        "image": by_card.embed_images(sys.argv[2]).vectors.tolist(),
        "text": by_card.embed_texts(["a red square"]).vectors.tolist(),
        "folder_image": by_folder.embed_images(sys.argv[2]).vectors.tolist(),
        "builtin_still_loads": type(vlmzoo.load(sys.argv[3])).__name__,
        "warnings": [str(w.message) for w in caught if "plugin" in str(w.message)],
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The plugin, installed by pip (offline, no build isolation) into a folder of its own."""
    site = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("plugin-src") / "tinyplug"
    shutil.copytree(PLUGIN, source)  # setuptools builds in the source folder: not in the repository's
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(source)],
                   check=True, capture_output=True, text=True)
    assert (site / "tinyplug" / "cards" / "tinyplug-embed.toml").is_file()
    assert list(site.glob("vlmzoo_tinyplug-*.dist-info/entry_points.txt"))
    return site


def _checkpoint(folder: Path, dim: int = 16) -> dict[str, np.ndarray]:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    weights = {"image_proj.weight": rng.normal(size=(dim, 192)).astype(np.float32),
               "text_proj.weight": rng.normal(size=(dim, 256)).astype(np.float32)}
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "tinyplug", "dim": dim}))
    save_file(weights, str(folder / "model.safetensors"))
    return weights


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_a_plugin_adds_a_family_and_cards_and_loads_through_vlmzoo_load(installed, tmp_path, photos, tiny):
    models = tmp_path / "models"
    weights = _checkpoint(models / "example" / "tinyplug-embed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")]),
           "VLMZOO_MODELS_DIR": str(models)}
    done = subprocess.run([sys.executable, "-c", USE, str(models / "example" / "tinyplug-embed"), str(photos[0]),
                           str(tiny["clip"])], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)

    assert "tinyplug-embed" in out["cards"] and "clip-vit-b-32" in out["cards"]
    assert "tinyplug" in out["families"] and "broken" not in out["families"]
    assert out["class"] == "TinyPlugModel" and out["tasks"] == ["embed"] and out["name"] == "tinyplug-embed"
    # the plugin's own modules carry the checkpoint's weights: its embeddings are these
    from PIL import Image

    pixels = np.asarray(Image.open(photos[0]).convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1) / 255
    np.testing.assert_allclose(out["image"][0], _unit(weights["image_proj.weight"] @ pixels), atol=1e-5)
    counts = np.bincount(np.frombuffer(b"a red square", dtype=np.uint8), minlength=256).astype(np.float32)
    np.testing.assert_allclose(out["text"][0], _unit(weights["text_proj.weight"] @ counts), atol=1e-5)
    assert out["folder_image"] == out["image"]  # a folder with the plugin's model_type loads the same
    assert out["builtin_still_loads"] == "ClipModel"
    # the faulty entry point is named in one warning, and left out
    assert any("broken" in w and "must name a vlmzoo.families.Family" in w for w in out["warnings"]), out["warnings"]


def test_without_the_plugin_its_card_and_model_type_are_unknown(tmp_path):
    from vlmzoo import catalog
    from vlmzoo.errors import UnknownModelError
    from vlmzoo.loading import resolve

    _checkpoint(tmp_path / "ckpt")
    assert catalog.find("tinyplug-embed") is None
    with pytest.raises(UnknownModelError, match="model_type 'tinyplug' is not one vlmzoo can load"):
        resolve(tmp_path / "ckpt")
