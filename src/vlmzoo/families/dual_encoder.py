"""Shared logic of dual encoders (CLIP, SigLIP): one image tower, one text tower, one space.

Subclasses say only what differs: how texts are tokenised, how a cosine becomes a score
(softmax over labels for CLIP, an independent sigmoid per label for SigLIP), and the default
prompt template. Labels are ranked by their logits, the scores reported beside them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from vlmzoo.engine.batching import chunks
from vlmzoo.engine.prefetch import prefetched
from vlmzoo.engine.cpu.fast_prep import FastPrep
from vlmzoo.errors import InputError
from vlmzoo.families.base import VLModel, as_text_list, is_single
from vlmzoo.images import expand
from vlmzoo.prompts import resolve_templates
from vlmzoo.tasks import ClassScores, Embeddings, MatchScores

if TYPE_CHECKING:
    import torch

LABEL_CACHE_SIZE = 32


class DualEncoderModel(VLModel):
    tasks_served: ClassVar[tuple[str, ...]] = ("classify", "embed", "match", "retrieve")
    default_batch_size: ClassVar[int] = 32
    # embeddings keep cosine >= 0.999 with float32 in bf16 (tests/test_preprocess.py)
    cpu_dtype: ClassVar[str] = "bfloat16"
    score_kind: ClassVar[str] = "softmax"
    default_template: ClassVar[str] = "a photo of a {}."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._label_cache: OrderedDict[tuple, object] = OrderedDict()
        self._fast_prep = FastPrep.for_processor(self.processor.image_processor)
        if self.model is not None:
            from vlmzoo.engine.cpu.fused_mlp import fuse_mlp_activations
            from vlmzoo.engine.cpu.fused_qkv import fuse_qkv_projections

            self.fused_mlps = fuse_mlp_activations(self.model)  # bf16 on CPU only
            self.fused_qkv = fuse_qkv_projections(self.model)  # the image tower's, bf16 on CPU only

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

    def encode_images(self, images) -> tuple[list[str], "torch.Tensor"]:
        """Names and unit-normalised embeddings (float32, CPU) of the images.

        Decoding and preprocessing of the next batches run in threads while the model computes
        the current one; images are never all held in memory at full resolution.
        """
        import torch

        fast = self._fast_prep
        # exact mode (float32) decodes in full and resizes with PIL, as the reference pipeline does
        draft = fast.draft_request() if fast is not None and self.dtype != torch.float32 else None

        def prepare(sources):
            loaded = [self.take_image(s, draft=draft) for s in sources]
            names = [im.name for im in loaded]
            arrays = [fast.pixels(im.image, approximate=draft is not None) for im in loaded] \
                if fast is not None else [None]
            if all(a is not None for a in arrays):
                return names, fast.finish(np.stack(arrays))
            pixels = self.processor.image_processor([im.image for im in loaded], return_tensors="pt")
            return names, pixels["pixel_values"]

        names, out = [], []
        with torch.inference_mode():
            for batch_names, pixels in prefetched(expand(images), self.batch_size, prepare):
                feats = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)).pooler_output
                out.append(_normalise(feats.float()).cpu())
                names.extend(batch_names)
        return names, torch.cat(out)

    def text_features(self, texts: Sequence[str]):
        """Unit-normalised text embeddings (float32, CPU)."""
        return self._encode_texts(texts)[0]

    def _encode_texts(self, texts: Sequence[str]):
        """Embeddings, and how many tokens the text tower read (after truncation): each text is
        tokenized once, for both."""
        import torch

        out, tokens = [], 0
        with torch.inference_mode():
            for batch in chunks(list(texts), self.batch_size):
                encoded = self.tokenize(batch)
                mask = encoded.get("attention_mask")
                tokens += int(mask.sum()) if mask is not None else encoded["input_ids"].numel()
                encoded = {k: v.to(self.device) for k, v in encoded.items()}
                feats = self.model.get_text_features(**encoded).pooler_output
                out.append(_normalise(feats.float()).cpu())
        return torch.cat(out), tokens

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
        text = self.label_features(labels, templates)  # before the images: bad labels fail fast
        names, feats = self.encode_images(images)
        logits = self.logits(feats, text)
        k = len(labels) if top_k is None else max(1, min(top_k, len(labels)))
        order, scores = rank_labels(logits.numpy(), self.scores_from_logits(logits).numpy(), k)
        results = [ClassScores(name, tuple(labels[i] for i in row), tuple(float(x) for x in row_scores),
                               self.score_kind) for name, row, row_scores in zip(names, order, scores)]
        return results[0] if is_single(images) else results

    def embed_images(self, images) -> Embeddings:
        self.require("embed")
        names, feats = self.encode_images(images)
        return Embeddings(feats.numpy(), tuple(names), "image")

    def embed_texts(self, texts) -> Embeddings:
        self.require("embed")
        texts = as_text_list(texts, "texts")
        feats, tokens = self._encode_texts(texts)
        return Embeddings(feats.numpy(), tuple(texts), "text", tokens=tokens)

    def match(self, images, texts) -> MatchScores:
        """Cosine similarity for CLIP; SigLIP overrides the kind with its pairwise sigmoid."""
        self.require("match")
        texts = as_text_list(texts, "texts")
        txt = self.text_features(texts)
        names, img = self.encode_images(images)
        scores, kind, logits = self.pair_scores(img, txt)
        return MatchScores(scores.numpy(), tuple(names), tuple(texts), kind,
                           logits.numpy() if logits is not None else None)

    def pair_scores(self, image_feats, text_feats):
        """(scores, kind, the logits behind them or None): cosines for CLIP."""
        return image_feats @ text_feats.T, "cosine", None


def rank_labels(logits: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` labels of each row, best first: their indices and their ``scores``, both
    (rows, k). Ranked by the logits, not the scores: in float32 a sigmoid is exactly 1.0 above a
    logit of about 16.6 and a softmax tail underflows to 0, ties the logits do not have. Equal
    logits keep the labels' order."""
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=-1)


def _normalise(x):
    return x / x.norm(p=2, dim=-1, keepdim=True)
