"""How each benchmark task runs a model on a batch, what of its results is stored, and how
stored samples and predictions are read back for scoring.

One row per task in ``TASKS``: the call (a batch of samples and their inputs to the model's
task method) and the stored form of each result (the prediction the metrics score, the raw
output, and extra bytes such as retrieval embeddings). Inputs are images, or for classify and
retrieve benchmarks of another modality the typed inputs of ``vlmzoo.modalities`` (``Audio``,
...), which go to the same task methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vlmzoo.evaluation.sample import Sample


@dataclass(frozen=True)
class Batch:
    """What a task call needs: the benchmark, the samples, their taken-in inputs (a list per
    sample: decoded images, or typed inputs such as ``Audio``), the generation budget and, for
    classify, the class names."""

    bench: object  # spec.Benchmark
    samples: list[Sample]
    inputs: list[list]
    max_new_tokens: int | None
    classes: tuple[str, ...] = ()

    @property
    def modality(self) -> str:
        """What the inputs are (one modality per benchmark)."""
        return self.samples[0].modality


@dataclass(frozen=True)
class TaskIO:
    call: Callable[[object, Batch], list]  # (model, batch) -> one result per sample
    stored: Callable[[object, object], tuple]  # (result, bench) -> (prediction, raw output, extra bytes)


def _ask(model, b: Batch) -> list:
    prompts = [b.bench.render_prompt(s) for s in b.samples]
    return model.ask([im if len(im) > 1 else im[0] for im in b.inputs], prompts, max_new_tokens=b.max_new_tokens)


def _caption(model, b: Batch) -> list:
    return model.caption([im[0] for im in b.inputs], b.bench.render_prompt(b.samples[0]),
                         max_new_tokens=b.max_new_tokens)


def _text(result, bench) -> tuple:
    return bench.extract_answer(result.text), result.text, None


def _classify(model, b: Batch) -> list:
    return model.classify([x[0] for x in b.inputs], list(b.classes), templates=list(b.bench.templates) or None)


def _ground(model, b: Batch) -> list:
    return [model.ground(im[0], b.bench.render_prompt(s)) for s, im in zip(b.samples, b.inputs)]


def _top_box(result, bench) -> tuple:
    box = result.boxes[0] if result.boxes else None
    return ([box.x0, box.y0, box.x1, box.y1] if box else None), result.raw, None


def _embed_inputs(model, modality: str, inputs: list) -> np.ndarray:
    """Unit vectors for one batch of inputs: images through ``embed_images`` (every embedding
    model has it), other modalities through ``embed``."""
    embedded = model.embed_images(inputs) if modality == "image" else model.embed(inputs)
    return embedded.vectors.astype(np.float32)


def _retrieve(model, b: Batch) -> list:
    """Per sample: its input's embedding (the image, or the sound, depth map, ...), then its
    captions' (row 0 the input)."""
    input_vecs = _embed_inputs(model, b.modality, [x[0] for x in b.inputs])
    return [np.concatenate([vec[None], model.embed_texts(list(s.answers)).vectors.astype(np.float32)])
            for s, vec in zip(b.samples, input_vecs)]


def _embeddings(result, bench) -> tuple:
    return {"captions": len(result) - 1}, None, result.tobytes()


TASKS: dict[str, TaskIO] = {
    "ask": TaskIO(_ask, _text),
    "caption": TaskIO(_caption, _text),
    "classify": TaskIO(_classify, lambda r, bench: (list(r.labels[:10]), None, None)),
    "ground": TaskIO(_ground, _top_box),
    "retrieve": TaskIO(_retrieve, _embeddings),
}


def sample_record(s: Sample) -> dict:
    """The sample as scored, stored beside its prediction (reports and re-scoring need no data set).
    The modality is recorded only when it is not "image", so an image benchmark's records, and
    with them its data fingerprint and run ids, are what they were before other modalities."""
    record = {"id": s.id, "images": [str(p) for p in s.images], "question": s.question, "answers": list(s.answers),
              "options": list(s.options), "label": s.label, "box": list(s.box) if s.box else None,
              "category": s.category}
    if s.modality != "image":
        record["modality"] = s.modality
    return record


def sample_of(record: dict) -> Sample:
    return Sample(id=record["id"], images=tuple(Path(p) for p in record.get("images", [])),
                  question=record.get("question"), answers=tuple(record.get("answers") or ()),
                  options=tuple(record.get("options") or ()), label=record.get("label"),
                  box=tuple(record["box"]) if record.get("box") else None, category=record.get("category"),
                  modality=record.get("modality", "image"))


def metric_inputs(task: str, stored) -> list:
    """What the metrics read: stored predictions, or for retrieval the embeddings kept as bytes
    (row 0 the image, or the sample's input of another modality, then its captions)."""
    if task != "retrieve":
        return [p.prediction for p in stored]
    out = []
    for p in stored:
        vecs = np.frombuffer(p.extra, dtype=np.float32).reshape(p.prediction["captions"] + 1, -1)
        out.append({"image": vecs[0], "texts": vecs[1:]})
    return out
