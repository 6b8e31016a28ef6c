"""The metric registry: every metric a benchmark file may name.

A metric turns a run's predictions on a list of samples into per-sample rows (a score, or the
sufficient statistics a corpus-level metric needs, such as BLEU's n-gram counts) and an
aggregate over rows. Intervals and paired tests (``evaluation.stats``) resample those rows, so
they work the same for every metric.

Predictions by task: ask and caption give text; classify gives labels ranked best first;
ground gives the top box (or None); retrieve gives the image's embedding row index (the
retrieval metrics read the embeddings the runner stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vlmzoo.evaluation.metrics.text import anls, choice_accuracy, exact_match
from vlmzoo.evaluation.metrics.vision import grounding_hit, mean_per_class_accuracy, topk_correct
from vlmzoo.evaluation.metrics.vqa import vqa_accuracy
from vlmzoo.evaluation.sample import Sample
from vlmzoo.evaluation.stats import mean_of_first


@dataclass(frozen=True)
class Metric:
    name: str
    tasks: frozenset[str]
    rows: Callable[[list, list[Sample]], np.ndarray]  # (predictions, samples) -> (n, k) rows
    aggregate: Callable[[np.ndarray], float] = mean_of_first
    binary: bool = False  # rows are 0/1 outcomes: McNemar applies to paired comparisons
    description: str = ""


def per_sample(fn: Callable[[object, Sample], float]) -> Callable[[list, list[Sample]], np.ndarray]:
    """Rows for a metric that scores each sample on its own."""

    def rows(predictions: list, samples: list[Sample]) -> np.ndarray:
        return np.array([[fn(p, s)] for p, s in zip(predictions, samples, strict=True)], dtype=float).reshape(-1, 1)

    return rows


def _class_rows(predictions: list, samples: list[Sample]) -> np.ndarray:
    classes = sorted({s.label for s in samples})
    index = {c: i for i, c in enumerate(classes)}
    return np.array([[topk_correct(p, s.label, 1), index[s.label]] for p, s in zip(predictions, samples, strict=True)],
                    dtype=float).reshape(-1, 2)


def _mean_per_class(rows: np.ndarray) -> float:
    return mean_per_class_accuracy(list(rows[:, 0]), [str(int(c)) for c in rows[:, 1]])


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} registered twice")
    METRICS[metric.name] = metric
    return metric


ASK = frozenset({"ask"})
for _metric in (
    Metric("vqa_accuracy", ASK, per_sample(lambda p, s: vqa_accuracy(p, list(s.answers))),
           description="official VQA v2 accuracy (min(#humans/3, 1), leave-one-out over the answers)"),
    Metric("exact_match", frozenset({"ask", "caption"}), per_sample(lambda p, s: exact_match(p, list(s.answers))),
           binary=True, description="answer equals a reference (case and whitespace ignored)"),
    Metric("anls", ASK, per_sample(lambda p, s: anls(p, list(s.answers))),
           description="average normalized Levenshtein similarity, threshold 0.5"),
    Metric("choice_accuracy", ASK, per_sample(lambda p, s: choice_accuracy(p, list(s.options), s.answers[0])),
           binary=True, description="multiple choice: the option letter read from the answer is right"),
    Metric("top1", frozenset({"classify"}), per_sample(lambda p, s: topk_correct(p, s.label, 1)), binary=True,
           description="zero-shot top-1 accuracy"),
    Metric("top5", frozenset({"classify"}), per_sample(lambda p, s: topk_correct(p, s.label, 5)), binary=True,
           description="zero-shot top-5 accuracy"),
    Metric("mean_per_class", frozenset({"classify"}), _class_rows, _mean_per_class,
           description="top-1 accuracy per class, averaged over classes"),
    Metric("iou@0.5", frozenset({"ground"}), per_sample(lambda p, s: grounding_hit(p, s.box)), binary=True,
           description="the top box overlaps the canonical box with IoU >= 0.5"),
):
    register(_metric)


def get_metric(name: str) -> Metric:
    _load_optional_groups()
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def _load_optional_groups() -> None:
    # caption and retrieval metrics register themselves on import (they pull in more machinery)
    import vlmzoo.evaluation.metrics.captions  # noqa: F401
    import vlmzoo.evaluation.metrics.retrieval  # noqa: F401
