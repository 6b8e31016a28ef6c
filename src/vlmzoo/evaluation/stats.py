"""Confidence intervals and paired tests for benchmark scores.

Every metric is computed from per-sample rows (a score, or sufficient statistics such as BLEU's
n-gram counts) and an aggregate over rows, so one bootstrap serves all of them: resample the
rows with replacement, aggregate, and read the 2.5th and 97.5th percentiles (percentile
bootstrap). Comparing two models resamples the same rows for both (a paired bootstrap), which
is what makes a small gap on the same questions detectable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEFAULT_RESAMPLES = 1000
NUMERICAL_NOISE = 1e-9


def mean_of_first(rows: np.ndarray) -> float:
    return float(rows[:, 0].mean()) if rows.ndim == 2 else float(rows.mean())


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    if n == 0:
        raise ValueError("no samples to resample")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _aggregate_all(rows: np.ndarray, idx: np.ndarray, aggregate) -> np.ndarray:
    if aggregate is mean_of_first:  # vectorised: one gather and one mean for all resamples
        values = rows[:, 0] if rows.ndim == 2 else rows
        return values[idx].mean(axis=1)
    return np.array([aggregate(rows[i]) for i in idx])


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def bootstrap_ci(rows, aggregate: Callable[[np.ndarray], float] = mean_of_first, *, resamples: int = DEFAULT_RESAMPLES,
                 level: float = 0.95, seed: int = 0) -> Interval:
    """The aggregate of all rows, with a percentile-bootstrap interval at ``level``."""
    rows = np.asarray(rows, dtype=float)
    values = _aggregate_all(rows, _indices(len(rows), resamples, seed), aggregate)
    tail = (1 - level) / 2 * 100
    return Interval(aggregate(rows), float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))


@dataclass(frozen=True)
class PairedDifference:
    difference: float  # b - a
    low: float
    high: float
    p_value: float  # two-sided: how often the resampled difference falls on the other side of zero

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def paired_bootstrap(rows_a, rows_b, aggregate: Callable[[np.ndarray], float] = mean_of_first, *,
                     resamples: int = DEFAULT_RESAMPLES, level: float = 0.95, seed: int = 0) -> PairedDifference:
    """Model b minus model a on the same samples (rows aligned by sample), paired bootstrap."""
    rows_a, rows_b = np.asarray(rows_a, dtype=float), np.asarray(rows_b, dtype=float)
    if len(rows_a) != len(rows_b):
        raise ValueError(f"paired comparison needs the same samples: {len(rows_a)} vs {len(rows_b)} rows")
    idx = _indices(len(rows_a), resamples, seed)
    diffs = _aggregate_all(rows_b, idx, aggregate) - _aggregate_all(rows_a, idx, aggregate)
    observed = aggregate(rows_b) - aggregate(rows_a)
    tail = (1 - level) / 2 * 100
    # two-sided p: twice the smaller share of resamples at or beyond zero, at least 1/resamples;
    # differences within float noise (BLEU's 1e-9 smoothing leaves ~1e-15 scores) count as zero
    noise = NUMERICAL_NOISE * max(1.0, float(np.max(np.abs(diffs))))
    p = 2 * min(np.mean(diffs <= noise), np.mean(diffs >= -noise)) if np.max(np.abs(diffs)) > NUMERICAL_NOISE else 1.0
    return PairedDifference(float(observed), float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail)),
                            float(min(1.0, max(p, 1 / resamples))))


def mcnemar(correct_a, correct_b) -> float:
    """Exact two-sided McNemar p-value for two models' right/wrong outcomes on the same samples."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs the same samples: {a.shape} vs {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))
