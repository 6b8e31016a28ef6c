"""Metrics over labels and boxes: zero-shot classification and grounding."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from vlmzoo.evaluation.metrics.rows import Corpus, per_sample


def topk_correct(ranked_labels: list[str], label: str, k: int) -> float:
    """1.0 if ``label`` is among the first ``k`` of a prediction's ranked labels."""
    return float(label in ranked_labels[:k])


def mean_per_class_accuracy(correct: list[float], labels: list[str]) -> float:
    """Accuracy per class, then the unweighted mean over classes (for imbalanced test sets)."""
    if len(correct) != len(labels) or not labels:
        raise ValueError("mean per-class accuracy needs one label per prediction, and at least one")
    per_class: dict[str, list[float]] = defaultdict(list)
    for c, label in zip(correct, labels):
        per_class[label].append(c)
    return float(np.mean([np.mean(v) for v in per_class.values()]))


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes in the same pixel frame."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def grounding_hit(predicted: tuple | None, target: tuple, threshold: float = 0.5) -> float:
    """RefCOCO-style accuracy for one expression: the top box's IoU with the canonical box >= 0.5."""
    return float(predicted is not None and iou(predicted, target) >= threshold)


@per_sample
def top1_rows(prediction, sample) -> float:
    return topk_correct(prediction, sample.label, 1)


@per_sample
def top5_rows(prediction, sample) -> float:
    return topk_correct(prediction, sample.label, 5)


@per_sample
def grounding_rows(prediction, sample) -> float:
    return grounding_hit(prediction, sample.box)


def _class_rows(predictions: list, samples: list) -> np.ndarray:
    """Columns: top-1 correct, the sample's class as an index (classes sorted by name)."""
    classes = sorted({s.label for s in samples})
    index = {c: i for i, c in enumerate(classes)}
    return np.array([[topk_correct(p, s.label, 1), index[s.label]] for p, s in zip(predictions, samples, strict=True)],
                    dtype=float).reshape(-1, 2)


def _mean_per_class(rows: np.ndarray) -> float:
    return mean_per_class_accuracy(list(rows[:, 0]), [str(int(c)) for c in rows[:, 1]])


mean_per_class = Corpus(_class_rows, _mean_per_class)
