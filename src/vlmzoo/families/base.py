"""What every loaded model offers: the task methods, each guarded by the tasks it really has.

A family subclass implements the task methods it serves and sets ``self.tasks`` for the loaded
checkpoint. Calling a task the model lacks raises TaskNotSupportedError naming the ones it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np

from vlmzoo.errors import ImageError, InputError, TaskNotSupportedError
from vlmzoo.images import ImageLike, LoadedImage, expand, is_folder, load_image, load_images
from vlmzoo.tasks import AskRequest, Hit, ImagePart, MatchScores, Message, Retrieval, parse_messages


CHARS_PER_TOKEN = 32
MIN_TEXT_CHARS = 16_384


def is_single(images: Any) -> bool:
    """One image (not a list, not a directory): the caller gets one result back, not a list."""
    if isinstance(images, (list, tuple)):
        return False
    if is_folder(images):
        return False
    return True


def as_text_list(texts: str | Iterable[str], what: str) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    try:
        texts = list(texts)
    except TypeError:
        raise InputError(f"{what} must be a string or a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise InputError(f"{what} is empty")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise InputError(f"{what} must be strings; got {type(bad[0]).__name__} {bad[0]!r}")
    return texts


def ask_requests(images, question, messages) -> tuple[list[AskRequest], bool]:
    """The three ways to ask, as requests, and whether the caller gets one result back.

    - ``ask(images, "q")``: one request; ``images`` is one image or several, all in one prompt.
    - ``ask([imgs_1, imgs_2], ["q1", "q2"])``: a batch; each entry is one image or a list.
    - ``ask(messages=[...])``: one chat; ``ask(messages=[[...], [...]])``: a batch of chats.
    """
    if messages is not None:
        if images is not None or question is not None:
            raise InputError("give either images and question, or messages, not both")
        if isinstance(messages, (list, tuple)) and messages and all(isinstance(m, (list, tuple)) for m in messages):
            return [AskRequest(tuple(parse_messages(chat))) for chat in messages], False
        return [AskRequest(tuple(parse_messages(messages)))], True
    if question is None:
        raise InputError("ask needs a question (or messages)")
    if isinstance(question, str):
        if not question.strip():
            raise InputError("question is empty")
        imgs = [] if images is None else _image_list(images)
        return [AskRequest((Message("user", (*map(ImagePart, imgs), question)),))], True
    questions = as_text_list(question, "question")
    entries = _image_list(images) if images is not None else [[] for _ in questions]
    if len(entries) != len(questions):
        raise InputError(f"{len(questions)} questions but {len(entries)} image entries; give one entry per question")
    return [AskRequest((Message("user", (*map(ImagePart, _image_list(e)), q)),)) for e, q in zip(entries, questions)], False


def check_stream(requests: list[AskRequest]) -> None:
    """A stream answers one request: refuse a batch with stream=True."""
    if len(requests) != 1:
        raise InputError("stream=True takes one request, not a batch")


def check_caption_prompt(prompt) -> None:
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"prompt must be a string, got {type(prompt).__name__}")


def single_question(request: AskRequest, model_name: str) -> str:
    """For models that answer one question about one image: check the request is that, and
    return its question text."""
    msgs = request.messages
    if len(msgs) != 1 or msgs[0].role != "user":
        raise InputError(f"{model_name} answers one question, not a chat: got {len(msgs)} messages")
    if len(msgs[0].images) != 1:
        raise InputError(f"{model_name} takes exactly one image per question, got {len(msgs[0].images)}")
    if not msgs[0].text.strip():
        raise InputError("the message has no question text")
    return msgs[0].text


def _image_list(images) -> list:
    """One image, a list of images, or a folder, as a list (a folder expands to its files)."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if is_folder(images):
        return list(expand(images))
    return [images]


class VLModel:
    """Base of every family's model object. Task methods raise unless the family serves them."""

    family: ClassVar[str] = ""
    default_batch_size: ClassVar[int] = 16
    tasks_served: ClassVar[tuple[str, ...]] = ()
    model_class: ClassVar[str] = "AutoModel"  # the transformers class a checkpoint loads as
    # CPU dtype when none is asked for: "bfloat16" only where a test shows outputs survive it
    cpu_dtype: ClassVar[str] = "float32"
    # what ``embed`` takes (the server's /v1/embeddings refuses other inputs by name)
    embed_modalities: ClassVar[tuple[str, ...]] = ("text", "image")

    def __init__(self, *, name: str, path: Path, model=None, processor=None, card=None, checkpoint=None,
                 device: str, dtype, tasks: Iterable[str], allow_urls: bool = False, max_pixels: int | None = None):
        self.model = model
        self.processor = processor
        self.name = name
        self.path = path
        self.card = card
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.tasks = frozenset(tasks)
        self.allow_urls = allow_urls
        self.max_pixels = max_pixels
        self.batch_size = self.default_batch_size

    @classmethod
    def from_pretrained(cls, path: Path, *, device: str, dtype, **kwargs) -> "VLModel":
        """A model object for the checkpoint folder ``path``, through the family's hooks:
        ``class_for`` (which class serves this checkpoint), ``build_model`` (the modules with
        their weights) and ``load_processor`` (what turns images and text into inputs)."""
        served_by = cls.class_for(path)
        return served_by(model=served_by.build_model(path, device, dtype), processor=served_by.load_processor(path),
                         path=path, device=device, dtype=dtype, tasks=served_by.tasks_served, **kwargs)

    # -- hooks: what a family may change about loading ---------------------------------------

    @classmethod
    def class_for(cls, path: Path) -> type["VLModel"]:
        """The class serving the checkpoint at ``path``: this one, or a subclass for a
        checkpoint with another head (BLIP's captioning, VQA and matching checkpoints)."""
        return cls

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        """The model's modules with the checkpoint's weights, on ``device`` in ``dtype``, in eval mode.

        Default: the transformers class ``model_class`` names, from safetensors, never with Hub
        code. A family that owns its modeling code (a package ``families/<name>/``) overrides
        this: it builds its modules (modeling.py) and loads the official checkpoint into them
        through its one table of tensor names (convert.py).
        """
        import transformers

        from vlmzoo.families.hf import load_model

        return load_model(getattr(transformers, cls.model_class), path, device=device, dtype=dtype)

    @classmethod
    def weight_params(cls, path: Path) -> float | None:
        """Billions of parameters the checkpoint at ``path`` holds, read without loading a tensor
        (the memory check before loading); None when it cannot be told. Default: the
        safetensors headers. Families whose official files are pickles or lie in several places
        count their own."""
        from vlmzoo.engine.memory import params_from_weights

        return params_from_weights(path)

    @classmethod
    def load_processor(cls, path: Path):
        """What turns images and text into model inputs. Default: the checkpoint's own processor
        (transformers' AutoProcessor, never Hub code)."""
        from vlmzoo.families.hf import load_processor

        return load_processor(path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} tasks={sorted(self.tasks)} {self.device}/{self.dtype}>"

    # -- helpers shared by families ---------------------------------------------------------

    def require(self, task: str) -> None:
        if task not in self.tasks:
            raise TaskNotSupportedError(
                f"{self.name} cannot {task!r}; its tasks are: {', '.join(sorted(self.tasks))}"
            )

    def context_tokens(self) -> int | None:
        """Positions the text model takes (its position table); the card's token limit for a
        model with no weights here (API models); None where neither says."""
        config = getattr(self.model, "config", None)
        if config is not None and hasattr(config, "get_text_config"):
            return getattr(config.get_text_config(), "max_position_embeddings", None)
        return self.card.token_limit if self.card is not None else None

    def max_text_chars(self) -> int | None:
        """The most characters of text one request may hold for this model, checked before any
        tokenizing: no tokenizer packs more than CHARS_PER_TOKEN characters of real text into a
        token, so a longer text cannot fit the context anyway (and texts a text tower truncates
        get MIN_TEXT_CHARS at least)."""
        tokens = self.context_tokens()
        return None if tokens is None else max(tokens * CHARS_PER_TOKEN, MIN_TEXT_CHARS)

    def check_prompt_length(self, tokens: int, new_tokens: int = 0) -> None:
        """Refuse a prompt the text model cannot take (its position table ends), clearly and
        before generation fails somewhere inside the model."""
        limit = self.context_tokens()
        if limit is not None and tokens + new_tokens > limit:
            raise InputError(f"prompt of {tokens} tokens (+{new_tokens} new) is longer than {self.name} takes: "
                             f"{limit} positions")

    def weight_bytes(self) -> int | None:
        """Bytes the model's weights take in memory; None for a model with none here (API models)."""
        if self.model is None:
            return None
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    @property
    def resize_rule(self):
        """The checkpoint processor's resize rule (its ``size``): image intake refuses an image
        this model's preprocessing would blow up, before resizing it (see ``images.check_shape``)."""
        return getattr(getattr(self.processor, "image_processor", None), "size", None)

    def take_image(self, source: ImageLike, draft: tuple[int, int] | None = None) -> LoadedImage:
        """One image taken in within this model's limits (an already taken-in image is re-checked)."""
        return load_image(source, allow_urls=self.allow_urls, max_pixels=self.max_pixels, resize=self.resize_rule,
                          draft=draft)

    def image_batches(self, images: ImageLike | Sequence[ImageLike]):
        """Batches of taken-in images, decoded in threads one batch ahead of the caller, so a
        large folder is never held in memory at full resolution all at once."""
        from vlmzoo.engine.prefetch import prefetched

        return prefetched(expand(images), self.batch_size, lambda sources: [self.take_image(s) for s in sources])

    def take_images(self, images: ImageLike | Sequence[ImageLike]) -> list[LoadedImage]:
        return [self.take_image(s) for s in expand(images)]

    def over_images(self, sources: Sequence[ImageLike], fn: Callable[[list], list],
                    on_progress: Callable[[int], None] | None = None) -> tuple[list, list[ImageError]]:
        """``fn`` over ``sources`` a few batches at a time, with bad images set aside: (results, errors).

        Sources go to ``fn`` undecoded, so the model can decode ahead and at reduced scale. When a
        chunk holds a bad image, that chunk is taken in here instead: the bad images are returned
        as errors (each naming its input) and ``fn`` still runs on the good ones, in order.
        ``on_progress(n)`` is told after each chunk how many sources it held.
        """
        from vlmzoo.engine.batching import chunks

        results: list = []
        errors: list[ImageError] = []
        step = max(1, self.batch_size) * 4  # several batches per call: the model prefetches within it
        for chunk in chunks(list(sources), step):
            try:
                results.extend(fn(list(chunk)))
            except ImageError:
                intake = load_images(list(chunk), allow_urls=self.allow_urls, max_pixels=self.max_pixels,
                                     skip_bad=True, resize=self.resize_rule)
                errors.extend(intake.errors)
                if intake.images:
                    results.extend(fn(intake.images))
            if on_progress is not None:
                on_progress(len(chunk))
        return results, errors

    # -- tasks: families override what they serve -------------------------------------------

    def caption(self, images, prompt: str | None = None, **gen):
        self.require("caption")
        raise NotImplementedError

    def ask(self, images=None, question=None, *, messages=None, **gen):
        """A question about images, or a chat (``messages``, see ``tasks.Message``)."""
        self.require("ask")
        raise NotImplementedError

    def classify(self, images, labels, templates=None, top_k: int | None = None):
        self.require("classify")
        raise NotImplementedError

    def embed_images(self, images):
        self.require("embed")
        raise NotImplementedError

    def embed_texts(self, texts):
        self.require("embed")
        raise NotImplementedError

    def match(self, images, texts) -> MatchScores:
        self.require("match")
        raise NotImplementedError

    def ground(self, images, phrase: str, **gen):
        self.require("ground")
        raise NotImplementedError

    def detect(self, images, **gen):
        self.require("detect")
        raise NotImplementedError

    def point(self, images, phrase: str, **gen):
        """Points at each thing ``phrase`` names (``Grounding.points``, pixels of the original image)."""
        self.require("point")
        raise NotImplementedError

    def imagine(self, prompt: str, images=None, **gen):
        """A picture made from ``prompt`` (and, for models that take them, ``images``): a
        ``GeneratedImage``."""
        self.require("imagine")
        raise NotImplementedError

    def retrieve(self, *, images, texts, k: int = 5, query: str = "text") -> list[Retrieval]:
        """Top-k images for each text (``query="text"``) or texts for each image (``"image"``).

        Ranks by the family's ``match`` scores, so each image and each text is encoded once.
        """
        self.require("retrieve")
        if query not in ("text", "image"):
            raise InputError(f"query must be 'text' or 'image', got {query!r}")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        scores = self.match(images, texts)
        ranked = scores.ranking()  # logits where the scores are probabilities that can tie
        order_by = ranked if query == "image" else ranked.T
        matrix = scores.scores if query == "image" else scores.scores.T
        queries = scores.images if query == "image" else scores.texts
        items = scores.texts if query == "image" else scores.images
        k = min(k, len(items))
        out = []
        for q, row, key in zip(queries, matrix, order_by):
            top = np.argsort(-key, kind="stable")[:k]
            out.append(Retrieval(q, tuple(Hit(int(i), items[i], float(row[i])) for i in top)))
        return out
