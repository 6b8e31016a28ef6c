"""Shared logic of dual encoders (CLIP, SigLIP): one image tower, one text tower, one space.

Subclasses say only what differs: how texts are tokenised, how a cosine becomes a score
(softmax over labels for CLIP, an independent sigmoid per label for SigLIP), and the default
prompt template.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar, Sequence

import numpy as np

from vlmzoo.engine.batching import chunks
from vlmzoo.errors import InputError
from vlmzoo.families.base import VLModel, as_text_list, is_single
from vlmzoo.images import LoadedImage
from vlmzoo.prompts import resolve_templates
from vlmzoo.tasks import ClassScores, Embeddings, MatchScores

LABEL_CACHE_SIZE = 32


class DualEncoderModel(VLModel):
    tasks_served: ClassVar[tuple[str, ...]] = ("classify", "embed", "match", "retrieve")
    default_batch_size: ClassVar[int] = 32
    score_kind: ClassVar[str] = "softmax"
    default_template: ClassVar[str] = "a photo of a {}."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._label_cache: OrderedDict[tuple, object] = OrderedDict()

    # -- what subclasses may change --------------------------------------------------------

    def tokenize(self, texts: Sequence[str]):
        """Tokeniser call for the text tower; CLIP pads to the longest text in the batch."""
        return self.processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")

    def scores_from_logits(self, logits):
        """(n_images, n_labels) logits -> probabilities."""
        return logits.softmax(dim=-1)

    def logit_bias(self):
        return 0.0

    # -- towers -------------------------------------------------------------------------------

    def image_features(self, images: list[LoadedImage]):
        """Unit-normalised image embeddings, batched, as a torch tensor on CPU in float32."""
        import torch

        out = []
        with torch.inference_mode():
            for batch in chunks(images, self.batch_size):
                pixels = self.processor.image_processor([im.image for im in batch], return_tensors="pt")
                pixels = pixels["pixel_values"].to(self.device, self.dtype)
                feats = self.model.get_image_features(pixel_values=pixels).pooler_output
                out.append(_normalise(feats.float()).cpu())
        return torch.cat(out)

    def text_features(self, texts: Sequence[str]):
        import torch

        out = []
        with torch.inference_mode():
            for batch in chunks(list(texts), self.batch_size):
                tokens = {k: v.to(self.device) for k, v in self.tokenize(batch).items()}
                feats = self.model.get_text_features(**tokens).pooler_output
                out.append(_normalise(feats.float()).cpu())
        return torch.cat(out)

    def label_features(self, labels: tuple[str, ...], templates: tuple[str, ...]):
        """One vector per label: the normalised mean of its templates' embeddings (CLIP's
        prompt ensembling). Computed once per (labels, templates) and cached, never per image."""
        key = (labels, templates)
        if key in self._label_cache:
            self._label_cache.move_to_end(key)
            return self._label_cache[key]
        texts = [t.format(label) for label in labels for t in templates]
        feats = self.text_features(texts).reshape(len(labels), len(templates), -1)
        feats = _normalise(feats.mean(dim=1)) if len(templates) > 1 else feats[:, 0]
        self._label_cache[key] = feats
        if len(self._label_cache) > LABEL_CACHE_SIZE:
            self._label_cache.popitem(last=False)
        return feats

    def logits(self, image_feats, text_feats):
        scale = self.model.logit_scale.detach().float().exp().cpu()
        return image_feats @ text_feats.T * scale + self.logit_bias()

    # -- tasks --------------------------------------------------------------------------------

    def classify(self, images, labels, templates=None, top_k: int | None = None):
        self.require("classify")
        labels = tuple(as_text_list(labels, "labels"))
        if len(set(labels)) != len(labels):
            raise InputError(f"labels must be distinct; got {list(labels)}")
        templates = resolve_templates(templates, self.default_template)
        loaded = self.take_images(images)
        probs = self.scores_from_logits(self.logits(self.image_features(loaded), self.label_features(labels, templates)))
        probs = probs.numpy()
        k = len(labels) if top_k is None else max(1, min(top_k, len(labels)))
        results = []
        for im, row in zip(loaded, probs):
            order = np.argsort(-row, kind="stable")[:k]
            results.append(ClassScores(im.name, tuple(labels[i] for i in order),
                                       tuple(float(row[i]) for i in order), self.score_kind))
        return results[0] if is_single(images) else results

    def embed_images(self, images) -> Embeddings:
        self.require("embed")
        loaded = self.take_images(images)
        return Embeddings(self.image_features(loaded).numpy(), tuple(im.name for im in loaded), "image")

    def embed_texts(self, texts) -> Embeddings:
        self.require("embed")
        texts = as_text_list(texts, "texts")
        return Embeddings(self.text_features(texts).numpy(), tuple(texts), "text")

    def match(self, images, texts) -> MatchScores:
        """Cosine similarity for CLIP; SigLIP overrides the kind with its pairwise sigmoid."""
        self.require("match")
        texts = as_text_list(texts, "texts")
        loaded = self.take_images(images)
        img, txt = self.image_features(loaded), self.text_features(texts)
        scores, kind = self.pair_scores(img, txt)
        return MatchScores(scores.numpy(), tuple(im.name for im in loaded), tuple(texts), kind)

    def pair_scores(self, image_feats, text_feats):
        return image_feats @ text_feats.T, "cosine"


def _normalise(x):
    return x / x.norm(p=2, dim=-1, keepdim=True)
