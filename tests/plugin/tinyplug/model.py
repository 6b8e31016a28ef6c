"""A toy embedder with modeling code of its own, loaded through vlmzoo's hooks.

Images: RGB resized to 8 x 8, flattened to 192 values in [0, 1], times ``image_proj.weight``.
Texts: a 256-bin histogram of their UTF-8 bytes, times ``text_proj.weight``. Both unit length.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.torch import load_file

from vlmzoo.families.base import VLModel, as_text_list
from vlmzoo.tasks import Embeddings

EXPECTED = {"image_proj.weight", "text_proj.weight"}


class TinyPlug(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.image_proj = torch.nn.Linear(192, dim, bias=False)
        self.text_proj = torch.nn.Linear(256, dim, bias=False)


class TinyPlugModel(VLModel):
    family = "tinyplug"
    tasks_served = ("embed",)

    @classmethod
    def build_model(cls, path, device, dtype):
        config = json.loads((path / "config.json").read_text())
        tensors = load_file(str(path / "model.safetensors"))
        if set(tensors) != EXPECTED:
            raise ValueError(f"unexpected tensors {sorted(set(tensors) ^ EXPECTED)}")
        model = TinyPlug(config["dim"])
        model.load_state_dict(tensors, strict=True)
        return model.to(device, dtype).eval()

    @classmethod
    def load_processor(cls, path):
        return None

    def embed_images(self, images):
        self.require("embed")
        loaded = self.take_images(images)
        pixels = np.stack([np.asarray(im.image.resize((8, 8)), dtype=np.float32).reshape(-1) / 255 for im in loaded])
        return Embeddings(self._project(self.model.image_proj, pixels), tuple(im.name for im in loaded), "image")

    def embed_texts(self, texts):
        self.require("embed")
        texts = as_text_list(texts, "texts")
        counts = np.stack([np.bincount(np.frombuffer(t.encode(), dtype=np.uint8), minlength=256) for t in texts])
        return Embeddings(self._project(self.model.text_proj, counts.astype(np.float32)), tuple(texts), "text")

    def _project(self, layer, x):
        with torch.inference_mode():
            y = layer(torch.from_numpy(x).to(self.device, self.dtype)).float()
        return torch.nn.functional.normalize(y, dim=-1).numpy()
