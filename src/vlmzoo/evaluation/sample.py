"""One benchmark item, whatever the task: the loaders produce these, the runner consumes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """A benchmark item. Which fields are set depends on the task:

    - ask: ``question``, ``answers`` (one or more references; VQA v2 has ten), optional ``options``
      for multiple choice (then ``answers[0]`` is the correct letter or option text);
    - caption: ``answers`` are the reference captions;
    - classify: ``label`` (a class name from the benchmark's class list);
    - retrieve: ``answers`` are the captions that belong to the image;
    - ground: ``question`` is the referring expression, ``box`` the canonical (x0, y0, x1, y1)
      box in pixels of the image as stored on disk.
    ``images`` are the sample's input files. ``modality`` says what they hold: "image", or for
    models that embed more (ImageBind) "audio", "depth", "thermal" or "imu" (``data.modality``);
    classify and retrieve benchmarks take any of them.
    ``id`` is unique within the benchmark and stable across runs (the store keys on it).
    ``category`` feeds the per-category breakdown (VQA answer type, question type, ...).
    """

    id: str
    images: tuple[Path, ...]
    question: str | None = None
    answers: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    label: str | None = None
    box: tuple[float, float, float, float] | None = None
    category: str | None = None
    modality: str = "image"
    meta: dict = field(default_factory=dict, compare=False, hash=False)
