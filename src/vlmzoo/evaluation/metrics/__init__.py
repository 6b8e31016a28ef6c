"""The metric registry: one table of every metric a benchmark file may name.

A row says which tasks the metric scores, where its implementation lives (``module:name`` in
this package, imported only when the metric is used), its kind, and what it measures:

- ``mean``: the implementation gives one row per sample (``rows.per_sample`` makes that from a
  per-sample function); the score is their mean.
- ``binary``: the same, each row a 0/1 outcome, so paired comparisons also run McNemar's test.
- ``corpus``: the implementation is a ``rows.Corpus``, its rows and its own aggregate.

Adding a metric is one function in a metric module and one row here (CONTRIBUTING.md).
Importing this module imports no implementation, so benchmark files validate cheaply.

Predictions by task: ask and caption give text; classify gives labels ranked best first;
ground gives the top box (or None); retrieve gives the image's embedding row index (the
retrieval metrics read the embeddings the runner stored). Classify and retrieve score inputs
of any modality the same way: a sound's labels, a sound's embedding and its captions'.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal

Kind = Literal["mean", "binary", "corpus"]


@dataclass(frozen=True)
class MetricRow:
    tasks: frozenset[str]
    impl: str  # "module:name" within vlmzoo.evaluation.metrics
    kind: Kind
    description: str


ASK, CAPTION, CLASSIFY, GROUND, RETRIEVE = (frozenset({t}) for t in ("ask", "caption", "classify", "ground",
                                                                       "retrieve"))

TABLE: dict[str, MetricRow] = {
    "vqa_accuracy": MetricRow(ASK, "vqa:vqa_accuracy_rows", "mean",
                              "official VQA v2 accuracy (min(#humans/3, 1), leave-one-out over the answers)"),
    "exact_match": MetricRow(ASK | CAPTION, "text:exact_match_rows", "binary",
                             "answer equals a reference (case and whitespace ignored)"),
    "anls": MetricRow(ASK, "text:anls_rows", "mean", "average normalized Levenshtein similarity, threshold 0.5"),
    "choice_accuracy": MetricRow(ASK, "text:choice_accuracy_rows", "binary",
                                 "multiple choice: the option letter read from the answer is right"),
    "top1": MetricRow(CLASSIFY, "vision:top1_rows", "binary", "zero-shot top-1 accuracy"),
    "top5": MetricRow(CLASSIFY, "vision:top5_rows", "binary", "zero-shot top-5 accuracy"),
    "mean_per_class": MetricRow(CLASSIFY, "vision:mean_per_class", "corpus",
                                "top-1 accuracy per class, averaged over classes"),
    "iou@0.5": MetricRow(GROUND, "vision:grounding_rows", "binary",
                         "the top box overlaps the canonical box with IoU >= 0.5"),
    **{f"bleu{n}": MetricRow(CAPTION, f"captions:bleu{n}", "corpus",
                             f"corpus BLEU-{n} (coco-caption: closest reference length, PTB tokens)")
       for n in range(1, 5)},
    "meteor": MetricRow(CAPTION, "captions:meteor", "corpus",
                        "METEOR 1.5 (official jar, -l en -norm), coco-caption's corpus score"),
    "rouge_l": MetricRow(CAPTION, "captions:rouge_l_rows", "mean",
                         "ROUGE-L F-measure, beta 1.2, mean over samples (coco-caption)"),
    "cider": MetricRow(CAPTION, "captions:cider_rows", "mean",
                       "CIDEr-D (sigma 6, clipped, x10), idf over the evaluated set's references"),
    "spice": MetricRow(CAPTION, "captions:spice_rows", "mean",
                       "SPICE 1.0 (official jar); unavailable without Stanford CoreNLP 3.6.0 models"),
    # "i" is the benchmark's input: an image, or a sound, depth map, ... (data.modality)
    **{f"recall@{k}_i2t": MetricRow(RETRIEVE, f"retrieval:i2t_at_{k}", "binary",
                                    f"image (or other input) -> text: one of its captions in the top {k}")
       for k in (1, 5, 10)},
    **{f"recall@{k}_t2i": MetricRow(RETRIEVE, f"retrieval:t2i_at_{k}", "corpus",
                                    f"text -> image (or other input): the caption's own in the top {k}")
       for k in (1, 5, 10)},
}


@dataclass(frozen=True)
class Metric:
    """A metric ready to score: rows from (predictions, samples), and the score from rows."""

    name: str
    tasks: frozenset[str]
    rows: Callable
    aggregate: Callable
    binary: bool
    description: str


@lru_cache(maxsize=None)
def get_metric(name: str) -> Metric:
    """The metric ``name``, its implementation imported now."""
    row = TABLE.get(name)
    if row is None:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(TABLE))}")
    module, attr = row.impl.split(":")
    impl = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    if row.kind == "corpus":
        return Metric(name, row.tasks, impl.rows, impl.aggregate, False, row.description)
    from vlmzoo.evaluation.stats import mean_of_first

    return Metric(name, row.tasks, impl, mean_of_first, row.kind == "binary", row.description)


class _Metrics(Mapping):
    """Every metric by name, each imported when first looked up."""

    def __getitem__(self, name: str) -> Metric:
        try:
            return get_metric(name)
        except KeyError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(TABLE)

    def __len__(self) -> int:
        return len(TABLE)


METRICS: Mapping[str, Metric] = _Metrics()
