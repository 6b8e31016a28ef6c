"""Metrics over labels, rankings and boxes: zero-shot classification, retrieval, grounding."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


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


def recall_at_k(similarity: np.ndarray, relevant: list[set[int]], k: int) -> list[float]:
    """Per query: 1.0 if any relevant item is among the ``k`` most similar.

    ``similarity``: (queries, items). ``relevant[q]``: item indices that count as hits for query q
    (for image -> text with five captions per image, the five caption indices).
    """
    if similarity.shape[0] != len(relevant):
        raise ValueError(f"{similarity.shape[0]} queries but {len(relevant)} relevance sets")
    # a stable sort: ties keep item order, so results never depend on the platform's sort
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return [float(any(int(i) in rel for i in row)) for row, rel in zip(order, relevant)]


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
