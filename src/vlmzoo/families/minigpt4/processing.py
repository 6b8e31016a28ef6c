"""MiniGPT-4 / MiniGPT-v2 inputs: the image transform, the official conversation templates, the
image slots in the prompt, the answer clean-ups and MiniGPT-v2's boxes.

- Pixels (``Blip2ImageEvalProcessor``): the image squeezed to S x S with PIL's bicubic resize
  (S = 224, 448 for MiniGPT-v2), /255, CLIP's mean and std.
- Prompts (``conversation.py``): Chat.upload_img adds the user message ``<Img><ImageHere></Img>``
  and Chat.ask joins the question onto it with a space; ``get_prompt`` writes the system text, the
  separator, then each message as role + text + separator, and the assistant's role last.
  MiniGPT-4 (Vicuna V0): ``###Human: ... ###Assistant: `` after the official system text;
  MiniGPT-4 (Llama 2): the same system text, then ``<s>[INST] ... [/INST] ``; MiniGPT-v2: no
  system text, ``<s>[INST] ... [/INST]``. The literal ``<s>`` is the BOS token: the Llama-2
  prompts hold a second one (the tokenizer adds one to the first piece), MiniGPT-v2's start
  with two.
- The prompt is tokenized in pieces split at ``<ImageHere>``, only the first with the BOS
  (``get_context_emb``); each slot becomes as many positions as the image has tokens.
- Answers as ``Chat.answer`` cleans them: the text before the first ``###``, after the last
  ``Assistant:``, stripped. (``MiniGPTBase.generate``, the evaluation scripts' path, cleans
  differently: ``eval_answer``.)
- MiniGPT-v2 boxes: ``{<x1><y1><x2><y2>}`` in 0-100 bins of the image's width and height, after
  ``<p>phrase</p>`` for grounded phrases, several boxes of one phrase joined by ``<delim>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vlmzoo.tasks import Box, ImagePart

IMAGE_SLOT = "<ImageHere>"
IMAGE_MESSAGE = "<Img><ImageHere></Img>"
SYSTEM = ("Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to "
          "you. Please answer my questions.")
BOX_BINS = 100  # demo_v2.py bounding_box_size; eval_ref.py res


@dataclass(frozen=True)
class Conversation:
    """One of conversation.py's templates (SeparatorStyle.SINGLE)."""
    system: str
    roles: tuple[str, str]
    sep: str

    def prompt(self, turns: list[tuple[int, str]], system: str | None = None) -> str:
        """``get_prompt`` with the assistant's turn opened: ``turns`` are (0 user / 1 assistant, text)."""
        text = (self.system if system is None else system) + self.sep
        for role, message in turns:
            text += self.roles[role] + message + self.sep if message else self.roles[role]
        return text + self.roles[1]


VICUNA0 = Conversation(SYSTEM, ("Human: ", "Assistant: "), "###")
LLAMA2 = Conversation(SYSTEM, ("<s>[INST] ", " [/INST] "), "")
MINIGPT_V2 = Conversation("", ("<s>[INST] ", " [/INST]"), "")


CAPTION = "Describe this image in detail."  # prompts/alignment.txt's first instruction (stage-2 training)
CAPTION_V2 = "[caption] please describe this image?"  # coco_caption.py, the COCO caption evaluation
REFER_V2 = "[refer] give me the location of {}"  # coco_caption.py RefCOCOEvalData, eval_ref.py


@dataclass(frozen=True)
class Variant:
    """One released model: its image path, prompt template, stops and instructions."""
    name: str
    qformer: bool  # EVA ViT-g -> Q-Former (32 queries), else 4 ViT tokens per LLM token
    lora: bool
    conversation: Conversation
    image_size: int
    stop_strings: tuple[str, ...]  # demo.py stops at the tokens ### or ## #: text "###" (see the card)
    caption: str


VARIANTS = {
    "minigpt4-vicuna": Variant("MiniGPT-4 (Vicuna V0)", True, False, VICUNA0, 224, ("###",), CAPTION),
    "minigpt4-llama2": Variant("MiniGPT-4 (Llama 2 Chat)", False, False, LLAMA2, 224, ("###",), CAPTION),
    "minigpt-v2": Variant("MiniGPT-v2", False, True, MINIGPT_V2, 448, (), CAPTION_V2),
}


def turns_of(messages) -> tuple[list[tuple[int, str]], str | None]:
    """A request's messages as the official Chat records them, and a system text if one is given:
    each image is an upload (its own user message), each user text an ``ask`` (joined onto an
    image message that precedes it)."""
    turns: list[list] = []
    system = None
    for m in messages:
        if m.role == "system":
            system = m.text
        elif m.role == "assistant":
            turns.append([1, m.text])
        else:
            for part in m.parts:
                if isinstance(part, ImagePart):
                    turns.append([0, IMAGE_MESSAGE])
                elif turns and turns[-1][0] == 0 and turns[-1][1].endswith("</Img>"):
                    turns[-1][1] = " ".join([turns[-1][1], part])
                else:
                    turns.append([0, part])
    return [(r, t) for r, t in turns], system


def to_pixels(image: Image.Image, size: int) -> np.ndarray:
    """(3, size, size) float32: Resize((size, size), bicubic), ToTensor, CLIP Normalize."""
    from vlmzoo.families.lavis import clip_pixels

    return clip_pixels(image, size, "bicubic")


def chat_answer(text: str) -> str:
    """Chat.answer's clean-up of the decoded output."""
    return text.split("###")[0].split("Assistant:")[-1].strip()


def eval_answer(text: str) -> str:
    """MiniGPTBase.generate's clean-up (the evaluation scripts'), on text decoded without special
    tokens (a leading id 0 is dropped before decoding there; the decoder here drops it anyway)."""
    return text.split("</s>")[0].replace("<s>", "").split("[/INST]")[-1].strip()


_PHRASE = re.compile(r"<p>(.*?)</p>")
_BOX = re.compile(r"\{\s*<(-?\d+)>\s*<(-?\d+)>\s*<(-?\d+)>\s*<(-?\d+)>\s*\}")


def box_bins(text: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Every complete ``{<x1><y1><x2><y2>}`` in ``text`` with the phrase of the ``<p>...</p>``
    before it ("" for none), in order."""
    out = []
    phrases = [(m.end(), m.group(1).strip()) for m in _PHRASE.finditer(text)]
    for m in _BOX.finditer(text):
        label = next((p for end, p in reversed(phrases) if end <= m.start()), "")
        out.append((label, tuple(int(v) for v in m.groups())))
    return out


def parse_boxes(text: str, size: tuple[int, int], default_label: str = "") -> list[Box]:
    """MiniGPT-v2's boxes in pixels of an image of ``size`` (width, height): bin / 100 of each
    side, ordered and clamped to the image."""
    width, height = size
    return [Box.from_fractions(x0 / BOX_BINS, y0 / BOX_BINS, x1 / BOX_BINS, y1 / BOX_BINS, width, height,
                               label or default_label)
            for label, (x0, y0, x1, y1) in box_bins(text)]


@dataclass
class Encoded:
    ids: list[int]
    pixels: list[np.ndarray]
    positions: list[np.ndarray]  # per image, the prompt positions of its tokens


class MiniGPTProcessor:
    """Prompts with ``<ImageHere>`` slots and their images -> the model's inputs."""

    def __init__(self, tokenizer, variant: Variant, image_size: int, image_tokens: int, decoder=None):
        self.tokenizer = tokenizer
        self.variant = variant
        self.image_size = image_size
        self.image_tokens = image_tokens
        self.decoder = decoder  # sentencepiece processor of tokenizer.model (the official decode)
        self.slot_id = tokenizer.unk_token_id  # any id: the image tokens replace its embedding

    def encode_one(self, prompt: str, images: list[Image.Image]) -> Encoded:
        pieces = prompt.split(IMAGE_SLOT)
        if len(pieces) - 1 != len(images):
            raise ValueError(f"the prompt holds {len(pieces) - 1} image slot(s) ({IMAGE_SLOT}) for {len(images)} "
                             "image(s); a question may not write the slot itself")
        ids = self.tokenizer(pieces[0], add_special_tokens=True)["input_ids"]
        positions = []
        for piece in pieces[1:]:
            positions.append(np.arange(len(ids), len(ids) + self.image_tokens, dtype=np.int64))
            ids = ids + [self.slot_id] * self.image_tokens + self.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return Encoded(ids, [to_pixels(im, self.image_size) for im in images], positions)

    def __call__(self, text: list[str], images: list[list[Image.Image]] | None = None, **_):
        """A batch of prompts and their images, called as a transformers processor is (by
        ``GenerativeModel.encode``): left-padded torch tensors always, and the BOS always on the
        first piece, as the official code puts it (``add_special_tokens`` does not apply: a Llama-2
        template's literal ``<s>`` is a second BOS there too)."""
        from vlmzoo.families.image_prompt import image_batch

        rows = [self.encode_one(p, imgs) for p, imgs in zip(text, images or [[] for _ in text])]
        return image_batch([r.ids for r in rows], [r.pixels for r in rows], [r.positions for r in rows],
                           self.tokenizer.pad_token_id)

    def decode(self, ids) -> str:
        """The official decode(skip_special_tokens=True): sentencepiece's own decode of the ids
        without <unk>, <s> and </s> (ids past the vocabulary, Vicuna's 32,001st row, dropped too)."""
        special = {self.tokenizer.unk_token_id, self.tokenizer.bos_token_id, self.tokenizer.eos_token_id}
        if self.decoder is None:
            return self.tokenizer.decode([int(i) for i in ids if int(i) not in special], skip_special_tokens=True)
        size = self.decoder.get_piece_size()
        return self.decoder.decode([int(i) for i in ids if int(i) not in special and 0 <= int(i) < size])
