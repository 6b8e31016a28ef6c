"""The task vocabulary: names of tasks and the typed results every family returns.

No model code here and no torch import: the CLI, the catalog and the server all use these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TASKS: tuple[str, ...] = ("caption", "ask", "classify", "embed", "match", "retrieve", "ground", "detect", "point",
                          "imagine")

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, eq=False)
class ImagePart:
    """Marks a chat part as an image: a plain string in a message is always text."""

    source: object  # anything vlmzoo.images takes in


@dataclass(frozen=True, eq=False)
class Message:
    """One chat turn: a role and its parts in order, each a text (str) or an image.

    ``Message.user(ImagePart("a.jpg"), "What is this?")``; a PIL image, array, bytes or
    pathlib.Path part counts as an image too. ``parse_messages`` also takes OpenAI- and
    transformers-style dicts.
    """

    role: str
    parts: tuple

    def __post_init__(self):
        wrapped = tuple(p if isinstance(p, (str, ImagePart)) else ImagePart(p) for p in self.parts)
        object.__setattr__(self, "parts", wrapped)

    @classmethod
    def user(cls, *parts) -> "Message":
        return cls("user", tuple(parts))

    @property
    def text(self) -> str:
        return " ".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> tuple:
        return tuple(p.source for p in self.parts if isinstance(p, ImagePart))


def parse_messages(messages) -> list[Message]:
    """Messages as Message objects, or dicts ``{"role", "content"}`` where content is a string
    or a list of parts ``{"type": "text", "text"}`` / ``{"type": "image", "image"}`` /
    ``{"type": "image_url", "image_url": {"url"}}``."""
    from vlmzoo.errors import InputError

    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError("messages must be a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            msg = m
        elif isinstance(m, dict) and "role" in m and "content" in m:
            msg = Message(m["role"], _parts(m["content"], i))
        else:
            raise InputError(f"messages[{i}] must be a Message or a dict with 'role' and 'content'")
        if msg.role not in ROLES:
            raise InputError(f"messages[{i}] has role {msg.role!r}; roles are {', '.join(ROLES)}")
        if not msg.parts:
            raise InputError(f"messages[{i}] is empty")
        out.append(msg)
    return out


def _parts(content, i: int) -> tuple:
    from vlmzoo.errors import InputError

    if isinstance(content, str):
        return (content,)
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(part["text"])
        elif kind == "image" and ("image" in part or "url" in part or "path" in part):
            # the first key present (not ``or``: a numpy array has no truth value)
            parts.append(ImagePart(next(part[k] for k in ("image", "url", "path") if k in part)))
        elif kind == "image_url":
            url = part["image_url"]
            parts.append(ImagePart(url["url"] if isinstance(url, dict) else url))
        else:
            raise InputError(f"messages[{i}] has a part vlmzoo cannot read: {str(part)[:80]}")
    return tuple(parts)


@dataclass(frozen=True)
class Caption:
    text: str
    image: str  # name of the input image
    prompt: str | None = None
    num_tokens: int = 0  # new tokens generated
    prompt_tokens: int = 0
    seconds: float = 0.0  # wall time of the generate call this caption was part of
    ttft: float = 0.0  # time to first token, seconds
    tokens_per_s: float = 0.0  # decode speed after the first token
    finish_reason: str = ""  # "stop" (end of sequence or a stop string) or "length"
    cost_usd: float | None = None  # API models with a known price; None when unknown or local

    @classmethod
    def from_answer(cls, answer: "Answer", prompt: str | None = None) -> "Caption":
        """The caption a generated answer about one image is: its text, image and statistics."""
        return cls(answer.text, answer.images[0] if answer.images else "", prompt, answer.num_tokens,
                   answer.prompt_tokens, answer.seconds, answer.ttft, answer.tokens_per_s, answer.finish_reason,
                   answer.cost_usd)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    text: str
    question: str
    images: tuple[str, ...]
    num_tokens: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    ttft: float = 0.0
    tokens_per_s: float = 0.0
    finish_reason: str = ""
    cost_usd: float | None = None  # API models with a known price; None when unknown or local

    def to_dict(self) -> dict:
        d = asdict(self)
        d["images"] = list(self.images)
        return d


@dataclass(frozen=True, eq=False)
class AskRequest:
    """One ask: a chat (usually a single user turn) whose parts hold text and images."""

    messages: tuple  # of Message

    @property
    def images(self) -> tuple:
        return tuple(img for m in self.messages for img in m.images)

    @property
    def question(self) -> str:
        users = [m for m in self.messages if m.role == "user"]
        return users[-1].text if users else ""


@dataclass(frozen=True)
class ClassScores:
    """Scores for each label, best first.

    ``kind`` says how to read them: ``softmax`` scores sum to 1 over the labels (CLIP);
    ``sigmoid`` scores are independent per label (SigLIP) and need not sum to 1.
    """

    image: str
    labels: tuple[str, ...]
    scores: tuple[float, ...]
    kind: str

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def score(self) -> float:
        return self.scores[0]

    def top(self, k: int) -> list[tuple[str, float]]:
        return list(zip(self.labels[:k], self.scores[:k]))

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.labels, self.scores))

    def to_dict(self) -> dict:
        return {"image": self.image, "kind": self.kind, "scores": self.as_dict()}


@dataclass(frozen=True, eq=False)
class Embeddings:
    """Unit-normalised vectors, one row per input, in the model's shared image-text space."""

    vectors: np.ndarray  # (n, dim) float32
    inputs: tuple[str, ...]  # image names or the texts
    modality: str  # "image" or "text"
    tokens: int | None = None  # texts: the tokens the text tower read (after truncation)

    def __len__(self) -> int:
        return len(self.inputs)

    def to_dicts(self) -> list[dict]:
        return [
            {"input": name, "modality": self.modality, "embedding": vec.tolist()}
            for name, vec in zip(self.inputs, self.vectors)
        ]


@dataclass(frozen=True, eq=False)
class MatchScores:
    """Image-text scores, ``scores[i, j]`` for image i and text j.

    ``kind``: ``cosine`` (dual encoders; in [-1, 1]), ``sigmoid`` (SigLIP's pairwise
    probability), ``itm`` (BLIP's image-text-matching head probability).
    """

    scores: np.ndarray
    images: tuple[str, ...]
    texts: tuple[str, ...]
    kind: str
    # the logits behind probability scores: they order pairs as the scores do, without the ties
    # float32 makes where a sigmoid or softmax saturates (None: the scores order themselves)
    logits: np.ndarray | None = None

    def ranking(self) -> np.ndarray:
        """What retrieval ranks by: the logits where there are any, else the scores."""
        return self.scores if self.logits is None else self.logits

    def to_dicts(self) -> list[dict]:
        return [
            {"image": img, "text": txt, "kind": self.kind, "score": float(self.scores[i, j])}
            for i, img in enumerate(self.images)
            for j, txt in enumerate(self.texts)
        ]


@dataclass(frozen=True)
class Hit:
    index: int
    item: str
    score: float


@dataclass(frozen=True)
class Retrieval:
    query: str
    hits: tuple[Hit, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"query": self.query, "hits": [asdict(h) for h in self.hits]}


@dataclass(frozen=True)
class Box:
    """Canonical box: pixel xyxy in the original image, plus the label it grounds."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = ""

    @classmethod
    def from_fractions(cls, fx0: float, fy0: float, fx1: float, fy1: float, width: int, height: int,
                       label: str = "") -> "Box":
        """A box given as fractions of the image (0..1), in pixels, ordered and clamped to it."""
        xs = sorted(min(max(v, 0.0), 1.0) * width for v in (fx0, fx1))
        ys = sorted(min(max(v, 0.0), 1.0) * height for v in (fy0, fy1))
        return cls(xs[0], ys[0], xs[1], ys[1], label)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Point:
    """Canonical point: pixel x, y in the original image, plus the label it points at."""

    x: float
    y: float
    label: str = ""

    @classmethod
    def from_fractions(cls, fx: float, fy: float, width: int, height: int, label: str = "") -> "Point":
        """A point given as fractions of the image (0..1), in pixels, clamped to it."""
        return cls(min(max(fx, 0.0), 1.0) * width, min(max(fy, 0.0), 1.0) * height, label)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Grounding:
    """Boxes (or, for pointing, points) found for a phrase in one image, plus the model's raw
    output for inspection."""

    image: str
    phrase: str
    boxes: tuple[Box, ...]
    raw: str
    points: tuple[Point, ...] = ()

    def to_dict(self) -> dict:
        out = {"image": self.image, "phrase": self.phrase, "raw": self.raw, "boxes": [b.to_dict() for b in self.boxes]}
        if self.points:
            out["points"] = [p.to_dict() for p in self.points]
        return out

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


@dataclass(frozen=True, eq=False)
class GeneratedImage:
    """A picture a model made (``imagine``): the image, the prompt, the discrete image codes the
    model emitted where it works that way (SEED-LLaMA's 32), and the wall time."""

    image: object  # PIL.Image.Image (not imported here: the task vocabulary stays light)
    prompt: str
    codes: tuple[int, ...] = ()
    seconds: float = 0.0

    def save(self, path) -> Path:
        """The image written to ``path`` (format by suffix: .png, .jpg, .webp) atomically: the
        old file or the new one, never half of one."""
        import io

        from vlmzoo.errors import InputError
        from vlmzoo.files import write_atomically

        path = Path(path)
        fmt = IMAGE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise InputError(f"{path}: give a .png, .jpg or .webp file name for the image")
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file name such as car.png")
        buf = io.BytesIO()
        self.image.convert("RGB").save(buf, fmt) if fmt == "JPEG" else self.image.save(buf, fmt)
        return write_atomically(path, buf.getvalue())

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "codes": list(self.codes), "width": self.image.width,
                "height": self.image.height, "seconds": self.seconds}
