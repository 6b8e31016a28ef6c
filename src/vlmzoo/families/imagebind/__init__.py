"""ImageBind (imagebind_huge), implemented in vlmzoo: six modalities in one embedding space.

Images (and video clips), texts, audio (``Audio``), depth (``Depth``), thermal (``Thermal``) and
IMU series (``IMU``) each go through their own encoder into one 1024-d space, so any two can be
compared: ``embed`` any of them, ``match`` / ``retrieve`` across any pair, ``classify`` any of
them zero-shot against text labels. Plain paths and PIL images are images and plain strings are
texts, as everywhere in vlmzoo; the other modalities are typed inputs (vlmzoo.modalities).

Embeddings are returned as unit vectors (cosines compare them). The official model returns them
normalised *and scaled* per modality (text by its learned scale, audio 20, depth 5, thermal 10,
IMU 5; audio averaged over its three clips after scaling); ``classify`` scores with those, as
the official README's softmax(emb_x @ emb_text.T) does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from vlmzoo.engine.batching import chunks
from vlmzoo.errors import InputError
from vlmzoo.families.base import VLModel, as_text_list
from vlmzoo.images import expand
from vlmzoo.modalities import TYPED, modality_of
from vlmzoo.prompts import resolve_templates
from vlmzoo.tasks import ClassScores, Embeddings, MatchScores

if TYPE_CHECKING:
    import torch

# vlmzoo's modality names (results say "image") -> the encoder's
ENCODER = {"image": "vision", "text": "text", "audio": "audio", "depth": "depth", "thermal": "thermal", "imu": "imu"}


class ImageBindModel(VLModel):
    family = "imagebind"
    tasks_served: ClassVar[tuple[str, ...]] = ("classify", "embed", "match", "retrieve")
    default_batch_size: ClassVar[int] = 8
    embed_modalities: ClassVar[tuple[str, ...]] = ("text", "image", "audio", "depth", "thermal", "imu")
    default_template: ClassVar[str] = "{}"  # labels as they are: the same prompt serves every modality

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        from vlmzoo.families.imagebind import convert

        return convert.load(path, device=device, dtype=dtype)

    @classmethod
    def weight_params(cls, path: Path) -> float | None:
        from vlmzoo.families.imagebind.convert import WEIGHTS
        from vlmzoo.families.pickled import parameter_count

        if (Path(path) / WEIGHTS).is_file() and not any(Path(path).glob("*.safetensors")):
            return parameter_count(Path(path) / WEIGHTS) / 1e9
        return super().weight_params(path)

    @classmethod
    def load_processor(cls, path: Path):
        from vlmzoo.families.imagebind.tokenizer import ClipBPE, find_vocab

        return ClipBPE(find_vocab(Path(path)))

    def context_tokens(self) -> int:
        return self.processor.context_length

    # -- encoding ---------------------------------------------------------------------------

    def official_embeddings(self, modality: str, items: Sequence) -> tuple[list[str], torch.Tensor]:
        """Names and the official model's outputs (normalised and scaled, float32, CPU) for
        ``items`` of one modality, a batch at a time."""
        import torch

        encoder = self.model.encoders[ENCODER[modality]]
        names, out = [], []
        with torch.inference_mode():
            for batch in chunks(list(items), self.batch_size):
                batch_names, inputs = self._inputs(modality, batch)
                out.append(encoder(inputs.to(self.device, self._input_dtype(modality))).float().cpu())
                names.extend(batch_names)
        return names, torch.cat(out)

    def _input_dtype(self, modality: str):
        import torch

        return torch.long if modality == "text" else self.dtype

    def _inputs(self, modality: str, batch: list):
        import torch

        from vlmzoo.families.imagebind import processing

        if modality == "image":
            loaded = [self.take_image(s) for s in batch]
            return [im.name for im in loaded], processing.vision_pixels([im.image for im in loaded])
        if modality == "text":
            return list(batch), self.processor(list(batch))
        read = {"audio": self._audio_input,
                "depth": processing.depth_input, "thermal": processing.thermal_input, "imu": processing.imu_input}
        return [x.name for x in batch], torch.stack([read[modality](x) for x in batch])

    @staticmethod
    def _audio_input(item):
        from vlmzoo.families.imagebind import audio

        if item.path is not None:
            return audio.load_audio(item.path)
        if isinstance(item.source, bytes):
            samples, rate = audio.decode_audio(item.source, item.name)
            return audio.melspec_clips(samples, rate)
        audio.check_rate(item.rate, item.name)
        try:
            return audio.melspec_clips(item.source, item.rate)
        except InputError as e:
            raise InputError(f"{item.name}: {e}") from None

    def _one_modality(self, items, what: str) -> tuple[str, list]:
        """``items`` (one input, a list, or a folder of images) as a list of one modality."""
        if isinstance(items, (list, tuple)):
            items = list(items)
        elif isinstance(items, TYPED):
            items = [items]
        else:
            items = expand(items)
        if not items:
            raise InputError(f"{what} is empty")
        kinds = {modality_of(x) or "image" for x in items}
        if len(kinds) > 1:
            raise InputError(f"{what} mixes modalities ({', '.join(sorted(kinds))}); give one modality per call")
        return kinds.pop(), items

    def _side(self, items, what: str) -> tuple[str, list]:
        """One side of a comparison: texts when every item is a string that is not typed as
        something else and ``what`` allows them, else ``_one_modality``."""
        if isinstance(items, str) or (isinstance(items, (list, tuple)) and items
                                      and all(isinstance(x, str) for x in items)):
            return "text", as_text_list(items, what)
        return self._one_modality(items, what)

    def unit_vectors(self, modality: str, items) -> tuple[list[str], torch.Tensor]:
        from torch.nn import functional as F

        names, emb = self.official_embeddings(modality, items)
        return names, F.normalize(emb, dim=-1)

    # -- tasks ------------------------------------------------------------------------------

    def embed(self, inputs) -> Embeddings:
        """Unit vectors for images, or for ``Audio`` / ``Depth`` / ``Thermal`` / ``IMU`` inputs
        (one modality per call; texts: ``embed_texts``)."""
        self.require("embed")
        modality, items = self._one_modality(inputs, "inputs")
        names, vectors = self.unit_vectors(modality, items)
        return Embeddings(vectors.numpy(), tuple(names), modality)

    def embed_images(self, images) -> Embeddings:
        self.require("embed")
        modality, items = self._one_modality(images, "images")
        if modality != "image":
            raise InputError(f"embed_images takes images; for {modality} inputs call embed()")
        return self.embed(items)

    def embed_texts(self, texts) -> Embeddings:
        self.require("embed")
        texts = as_text_list(texts, "texts")
        names, vectors = self.unit_vectors("text", texts)
        # SOT + the text's tokens (cut to fit) + EOT: the padding id is a real token ("!"), so count
        limit = self.processor.context_length - 2
        tokens = sum(min(len(self.processor.encode(t)), limit) + 2 for t in texts)
        return Embeddings(vectors.numpy(), tuple(names), "text", tokens=tokens)

    def match(self, images, texts) -> MatchScores:
        """Cosines between any two sides: images or typed inputs on the left, texts (strings),
        images or typed inputs on the right."""
        self.require("match")
        left, a = self._one_modality(images, "inputs")
        right, b = self._side(texts, "texts")
        names_a, va = self.unit_vectors(left, a)
        names_b, vb = self.unit_vectors(right, b)
        return MatchScores((va @ vb.T).numpy(), tuple(names_a), tuple(names_b), "cosine")

    def classify(self, images, labels, templates=None, top_k: int | None = None):
        """Zero-shot: softmax over text labels of the official scaled embeddings' dot products,
        for images or any typed input."""
        from vlmzoo.families.dual_encoder import rank_labels

        self.require("classify")
        labels = tuple(as_text_list(labels, "labels"))
        if len(set(labels)) != len(labels):
            raise InputError(f"labels must be distinct; got {list(labels)}")
        templates = resolve_templates(templates, self.default_template)
        text = self.label_embeddings(labels, templates)
        modality, items = self._one_modality(images, "inputs")
        names, emb = self.official_embeddings(modality, items)
        logits = emb @ text.T
        k = len(labels) if top_k is None else max(1, min(top_k, len(labels)))
        order, scores = rank_labels(logits.numpy(), logits.softmax(dim=-1).numpy(), k)
        results = [ClassScores(name, tuple(labels[i] for i in row), tuple(float(x) for x in s), "softmax")
                   for name, row, s in zip(names, order, scores)]
        single = not isinstance(images, (list, tuple)) and len(results) == 1 and (
            isinstance(images, TYPED) or not Path(str(images)).is_dir())
        return results[0] if single else results

    def label_embeddings(self, labels: tuple[str, ...], templates: tuple[str, ...]):
        """One official text embedding per label; several templates: their unit vectors'
        mean, renormalised and given the text scale again."""
        from torch.nn import functional as F

        _, emb = self.official_embeddings("text", [t.format(label) for label in labels for t in templates])
        if len(templates) == 1:
            return emb
        emb = emb.reshape(len(labels), len(templates), -1)
        scale = emb[:, 0].norm(dim=-1, keepdim=True)
        return F.normalize(F.normalize(emb, dim=-1).mean(dim=1), dim=-1) * scale

