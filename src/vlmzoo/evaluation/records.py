"""How samples and predictions are kept in the store and read back for scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlmzoo.evaluation.sample import Sample


def sample_record(s: Sample) -> dict:
    """The sample as scored, stored beside its prediction (reports and re-scoring need no data set)."""
    return {"id": s.id, "images": [str(p) for p in s.images], "question": s.question, "answers": list(s.answers),
            "options": list(s.options), "label": s.label, "box": list(s.box) if s.box else None,
            "category": s.category}


def sample_of(record: dict) -> Sample:
    return Sample(id=record["id"], images=tuple(Path(p) for p in record.get("images", [])),
                  question=record.get("question"), answers=tuple(record.get("answers") or ()),
                  options=tuple(record.get("options") or ()), label=record.get("label"),
                  box=tuple(record["box"]) if record.get("box") else None, category=record.get("category"))


def metric_inputs(task: str, stored) -> list:
    """What the metrics read: stored predictions, or for retrieval the embeddings kept as bytes
    (row 0 the image, then its captions)."""
    if task != "retrieve":
        return [p.prediction for p in stored]
    out = []
    for p in stored:
        vecs = np.frombuffer(p.extra, dtype=np.float32).reshape(p.prediction["captions"] + 1, -1)
        out.append({"image": vecs[0], "texts": vecs[1:]})
    return out
