"""The two shapes a metric's implementation takes, shared by every metric module.

Rows are per-sample: a score, or the sufficient statistics a corpus-level metric needs (such as
BLEU's n-gram counts). Intervals and paired tests (``evaluation.stats``) resample rows, so they
work the same for every metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vlmzoo.evaluation.sample import Sample

RowsFn = Callable[[list, list[Sample]], np.ndarray]


def per_sample(fn: Callable[[object, Sample], float]) -> RowsFn:
    """Rows of a metric that scores each sample on its own: one column, the sample's score."""

    def rows(predictions: list, samples: list[Sample]) -> np.ndarray:
        return np.array([[fn(p, s)] for p, s in zip(predictions, samples, strict=True)], dtype=float).reshape(-1, 1)

    rows.__doc__ = fn.__doc__
    return rows


@dataclass(frozen=True)
class Corpus:
    """A metric that is not the mean of per-sample scores (corpus BLEU, METEOR, recall weighted
    per caption): its rows, and how a set of rows becomes the score."""

    rows: RowsFn
    aggregate: Callable[[np.ndarray], float]
