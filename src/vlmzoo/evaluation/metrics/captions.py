"""COCO caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE, equal to pycocoevalcap.

Captions and references are PTB-tokenised once per set of texts (the tokenizer jar runs once,
however many caption metrics a run asks for), then scored: BLEU, ROUGE-L and CIDEr-D in Python
(``captions_ngram``), METEOR and SPICE by their official jars (``captions_jars``).

Rows, by metric:

- bleu1..bleu4: per-sample sufficient statistics (``BLEU_COLUMNS``); the aggregate sums them and
  computes corpus BLEU as coco does, so a bootstrap resample gives the corpus BLEU of the resample.
- rouge_l: per-sample ROUGE-L; the mean is coco's score.
- cider: per-sample CIDEr-D with document frequencies over the references of the whole evaluated
  set (as coco computes them); the mean is coco's score. Resamples keep the full set's idf.
- meteor: see ``meteor_aggregate``.
- spice: raises ``MetricUnavailable`` unless its jar and CoreNLP models are already installed.
"""

from __future__ import annotations

from functools import lru_cache, partial

import numpy as np

from vlmzoo.errors import InputError, VlmzooError
from vlmzoo.evaluation.metrics import TABLE, get_metric
from vlmzoo.evaluation.metrics import captions_jars as jars
from vlmzoo.evaluation.metrics.rows import Corpus
from vlmzoo.evaluation.metrics.captions_ngram import BLEU_COLUMNS, bleu_statistics, cider_d, corpus_bleu, rouge_l
from vlmzoo.evaluation.sample import Sample

__all__ = ["BLEU_COLUMNS", "CAPTION_METRICS", "MetricUnavailable", "coco_caption_scores", "meteor_aggregate",
           "tokenized"]

# the COCO caption metrics: those the registry implements in this module
CAPTION_METRICS = tuple(name for name, row in TABLE.items() if row.impl.startswith("captions:"))


class MetricUnavailable(VlmzooError):
    """The metric cannot be computed on this machine; ``reason`` says why (the runner records
    "unavailable" instead of a number)."""

    def __init__(self, metric: str, reason: str):
        self.metric = metric
        self.reason = reason
        super().__init__(f"{metric} unavailable: {reason}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument constructor
        return type(self), (self.metric, self.reason)


Texts = tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]


@lru_cache(maxsize=4)
def tokenized(predictions: tuple[str, ...], references: tuple[tuple[str, ...], ...]) -> Texts:
    """PTB-tokenised predictions and references, one tokenizer process for both, cached on the texts."""
    flat = jars.ptb_tokenize([*predictions, *(r for refs in references for r in refs)])
    candidates, rest = tuple(flat[:len(predictions)]), flat[len(predictions):]
    grouped, start = [], 0
    for refs in references:
        grouped.append(tuple(rest[start:start + len(refs)]))
        start += len(refs)
    return candidates, tuple(grouped)


def _tokens(predictions: list, samples: list[Sample]) -> Texts:
    if len(predictions) != len(samples):
        raise InputError(f"{len(predictions)} predictions for {len(samples)} samples")
    for p, s in zip(predictions, samples, strict=True):
        if not isinstance(p, str):
            raise InputError(f"sample {s.id}: a caption prediction must be text, got {type(p).__name__}")
        if not s.answers:
            raise InputError(f"sample {s.id}: caption metrics need at least one reference caption")
    return tokenized(tuple(predictions), tuple(tuple(s.answers) for s in samples))


def _bleu_rows(predictions: list, samples: list[Sample]) -> np.ndarray:
    candidates, references = _tokens(predictions, samples)
    rows = [bleu_statistics(c, list(refs)) for c, refs in zip(candidates, references, strict=True)]
    return np.array(rows, dtype=float).reshape(-1, len(BLEU_COLUMNS))


def rouge_l_rows(predictions: list, samples: list[Sample]) -> np.ndarray:
    candidates, references = _tokens(predictions, samples)
    return np.array([rouge_l(c, list(refs)) for c, refs in zip(candidates, references, strict=True)], dtype=float).reshape(-1, 1)


def cider_rows(predictions: list, samples: list[Sample]) -> np.ndarray:
    candidates, references = _tokens(predictions, samples)
    if not candidates:
        return np.zeros((0, 1))
    return np.array(cider_d(list(candidates), [list(r) for r in references]), dtype=float).reshape(-1, 1)


def _meteor_rows(predictions: list, samples: list[Sample]) -> np.ndarray:
    """Columns: segment score, sample index, number of samples, the jar's corpus score."""
    candidates, references = _tokens(predictions, samples)
    if not candidates:
        return np.zeros((0, 4))
    segments, corpus = jars.meteor(list(candidates), [list(r) for r in references])
    n = len(segments)
    return np.column_stack([segments, np.arange(n), np.full(n, n), np.full(n, corpus)]).astype(float)


def meteor_aggregate(rows: np.ndarray) -> float:
    """METEOR over rows. On the full evaluated set (every sample exactly once, in any order) it is
    the jar's corpus score, which is pycocoevalcap's: METEOR sums matching statistics over segments
    before scoring, so it is not the mean of segment scores. On anything else (a bootstrap
    resample, a subset) it falls back to the mean of the segment scores: an approximation, close
    to the corpus score but not equal, so intervals are centred on a slightly different quantity."""
    rows = np.asarray(rows, dtype=float)
    n = len(rows)
    if n and rows[0, 2] == n and np.array_equal(np.sort(rows[:, 1]), np.arange(n)):
        return float(rows[0, 3])
    return float(rows[:, 0].mean())


def spice_rows(predictions: list, samples: list[Sample]) -> np.ndarray:
    reason = jars.spice_unavailable_reason()
    if reason is not None:
        raise MetricUnavailable("spice", reason)
    candidates, references = _tokens(predictions, samples)
    return np.array(jars.spice(list(candidates), [list(r) for r in references]), dtype=float).reshape(-1, 1)


bleu1, bleu2, bleu3, bleu4 = (Corpus(_bleu_rows, partial(corpus_bleu, order=n)) for n in range(1, 5))
meteor = Corpus(_meteor_rows, meteor_aggregate)


DEFAULT_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")


def coco_caption_scores(predictions: list[str], references: list[list[str]],
                        metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, float]:
    """Corpus scores of captions against their references, as pycocoevalcap computes them
    (on [0, 1] scales, except CIDEr-D, which is x10). Asking for "spice" raises ``MetricUnavailable``
    unless SPICE's CoreNLP models are installed."""
    unknown = [m for m in metrics if m not in CAPTION_METRICS]
    if unknown:
        raise InputError(f"not caption metrics: {', '.join(unknown)}; known: {', '.join(CAPTION_METRICS)}")
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions for {len(references)} reference lists")
    if not predictions:
        raise InputError("no captions to score")
    samples = [Sample(id=str(i), images=(), answers=tuple(refs)) for i, refs in enumerate(references)]
    return {name: get_metric(name).aggregate(get_metric(name).rows(predictions, samples)) for name in metrics}
