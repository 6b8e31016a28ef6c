"""SEED / SEED-LLaMA inputs and outputs: pixels, the LLaMA tokenizer as the official code runs it,
the prompt formats, images as code tokens, and answers.

- Pixels: the scripts' and the demo server's transform (configs/transform/clip_transform.yaml:
  torchvision ``Resize((224, 224))``, i.e. PIL's bilinear resize, ToTensor, CLIP's mean and std);
  ``ImageTokenizer.processor`` (``encode_image(image_path=...)``) resizes bicubic instead
  (``resample="bicubic"``).
- The tokenizer: ``SeedLlamaTokenizer`` is transformers 4.30's slow ``LlamaTokenizer`` over the
  LLaMA SentencePiece model with 8,192 added tokens ``<img_00000>`` .. ``<img_08191>`` and the
  additional special tokens ``<img>`` / ``</img>``. ``LegacyLlamaTokenizer`` reproduces its ids and
  text: the text is split at added and special tokens (longest match first); the whitespace on
  both sides of an added token and of ``<img>`` / ``</img>`` is stripped (4.30 strips around a
  no-split token that is no ``AddedToken`` object), not around ``<s>`` / ``</s>`` / ``<unk>``; each
  piece between them is SentencePiece-encoded on its own (a dummy prefix space each time). Decoding
  joins added tokens and SentencePiece runs with single spaces (``spaces_between_special_tokens``)
  and leaves ``clean_up_tokenization_spaces`` off, as the tokenizer was saved.
- Prompts: scripts/seed_llama_inference_8B.py (Vicuna style, ``USER: ... \\nASSISTANT:``) and
  _14B.py (``[INST] ... [/INST]\\n``), which gradio_demo/conversation.py's ``conv_seed_vicuna`` /
  ``conv_seed_llama2`` extend to several rounds; an image is ``<img>`` + its 32 codes as
  ``<img_%05d>`` tokens + ``</img>`` where the message has it (the demo's ``<image>`` flag), the BOS
  written at the start of the text and the text tokenized without special tokens.
- Answers: the scripts' ``decode(..., skip_special_tokens=True)`` of the new tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vlmzoo.errors import UnknownModelError

BOI = "<img>"
EOI = "</img>"
IMG_TOKEN = "<img_{:05d}>"
IMG_FLAG = "<image>"  # where a message holds an image (gradio_demo)
NUM_IMG_TOKENS = 32
NUM_IMG_CODES = 8192
IMAGE_SIZE = 224
CAPTION = "Describe this image in detail."  # vlmzoo's: the repository has no caption instruction


def image_text(codes) -> str:
    """An image in a prompt: ``<img>`` + one ``<img_%05d>`` token per code + ``</img>``."""
    return BOI + "".join(IMG_TOKEN.format(int(c)) for c in codes) + EOI


def pixels(image, resample: str = "bilinear"):
    """(3, 224, 224) float32 of a PIL image, as the scripts' transform makes them."""
    from vlmzoo.families.lavis import clip_pixels

    return clip_pixels(image, IMAGE_SIZE, resample)


# -- the prompt formats -------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptFormat:
    """One of the two conversation styles (gradio_demo/conversation.py, system text empty)."""
    name: str
    llama2: bool  # [INST] style (SEED-LLaMA 14B) rather than USER / ASSISTANT (8B)

    def conversation(self, turns: list[tuple[int, str]]) -> str:
        """``get_prompt()['text']`` for ``turns`` (0 user / 1 assistant, text with <image> flags),
        the assistant's turn opened: the 8B's ``ASSISTANT:`` ends it; the 14B's ends with the
        ``\\n`` after ``[/INST]``."""
        text = ""
        for role, message in turns:
            if self.llama2:
                text += f"[INST] {message} [/INST]\n" if role == 0 else message + "\n"
            else:
                text += ("USER" if role == 0 else "ASSISTANT") + ": " + message + "\n"
        return text if self.llama2 else text + "ASSISTANT:"


VICUNA = PromptFormat("SEED-LLaMA 8B (USER: / ASSISTANT:)", llama2=False)
LLAMA2 = PromptFormat("SEED-LLaMA 14B ([INST] ... [/INST])", llama2=True)


def turns_of(messages) -> list[tuple[int, str]]:
    """A request's messages as the demo records them: each message's parts in order, texts as
    they are and each image as the ``<image>`` flag, nothing between them (gradio's add_text and
    add_image append). A system text has no place in these formats (the released templates'
    system text is empty)."""
    from vlmzoo.errors import InputError
    from vlmzoo.tasks import ImagePart

    turns = []
    for m in messages:
        if m.role == "system":
            raise InputError("SEED-LLaMA's prompt formats have no system text (the released templates' is empty)")
        text = ""
        for part in m.parts:
            if isinstance(part, ImagePart):
                text += IMG_FLAG
            elif IMG_FLAG in part:
                raise InputError(f"a message may not write the image flag {IMG_FLAG} itself; give the image as an "
                                 "image part")
            else:
                text += part
        turns.append((0 if m.role == "user" else 1, text))
    return turns


# -- the tokenizer ------------------------------------------------------------------------------


class LegacyLlamaTokenizer:
    """transformers 4.30's slow LlamaTokenizer with SEED's added tokens (see the module doc):
    ``encode`` without special tokens, ``decode`` with or without them."""

    def __init__(self, folder: Path):
        import sentencepiece

        folder = Path(folder)
        model = folder / "tokenizer.model"
        if not model.is_file():
            raise UnknownModelError(f"{folder}: no tokenizer.model (the SEED tokenizer folder, "
                                    "AILab-CVC/seed-tokenizer-2, holds it)")
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
        added = _json(folder / "added_tokens.json") or {}
        special = _json(folder / "special_tokens_map.json") or {}
        self.added = {str(k): int(v) for k, v in added.items()}  # added_tokens_encoder
        self.added_decoder = {v: k for k, v in self.added.items()}
        self.bos, self.eos, self.unk = (_content(special.get(k), d) for k, d in
                                        (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>")))
        self.additional = tuple(_content(t, "") for t in special.get("additional_special_tokens", []))
        self.special_tokens = (self.bos, self.eos, self.unk, *self.additional)
        self.special_ids = {self.token_id(t) for t in self.special_tokens}
        # the three AddedToken objects (lstrip / rstrip false) keep their neighbours' spaces
        self.keeps_spaces = {self.bos, self.eos, self.unk}
        self._trie: dict = {}
        for token in set(self.added) | set(self.special_tokens):
            node = self._trie
            for ch in token:
                node = node.setdefault(ch, {})
            node[""] = token

    def __len__(self) -> int:
        return self.sp.get_piece_size() + sum(1 for i in self.added.values() if i >= self.sp.get_piece_size())

    def token_id(self, token: str) -> int:
        if token in self.added:
            return self.added[token]
        return self.sp.piece_to_id(token)

    def split(self, text: str) -> list[str]:
        """``text`` split at the no-split tokens (the longest one starting first)."""
        out, start, i = [], 0, 0
        while i < len(text):
            node, j, found = self._trie, i, None
            while j < len(text) and text[j] in node:
                node = node[text[j]]
                j += 1
                if "" in node:
                    found = j
            if found is None:
                i += 1
                continue
            if start < i:
                out.append(text[start:i])
            out.append(text[i:found])
            start = i = found
        if start < len(text):
            out.append(text[start:])
        return out

    def encode(self, text: str) -> list[int]:
        """``tokenizer(text, add_special_tokens=False).input_ids``."""
        tokens = self.split(text)
        no_split = lambda t: t in self.added or t in self.special_tokens
        for i, token in enumerate(tokens):
            if no_split(token) and token not in self.keeps_spaces:  # 4.30: stripped on both sides
                if i + 1 < len(tokens) and tokens[i + 1]:
                    tokens[i + 1] = tokens[i + 1].lstrip()
                if i > 0 and tokens[i - 1]:
                    tokens[i - 1] = tokens[i - 1].rstrip()
        ids = []
        for token in tokens:
            if not token:
                continue
            if no_split(token):
                ids.append(self.token_id(token))
            else:
                ids.extend(self.sp.piece_to_id(p) for p in self.sp.encode(token, out_type=str))
        return ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """``tokenizer.decode(ids, skip_special_tokens=...)`` (4.30's _decode)."""
        size = self.sp.get_piece_size()
        tokens = []
        for i in (int(x) for x in ids):
            if skip_special_tokens and i in self.special_ids:
                continue
            if i in self.added_decoder:
                tokens.append(self.added_decoder[i])
            elif 0 <= i < size:
                tokens.append(self.sp.id_to_piece(i))
        texts, run = [], []
        for token in tokens:
            if token in self.added:
                if run:
                    texts.append(self._pieces_to_text(run))
                    run = []
                texts.append(token)
            else:
                run.append(token)
        if run:
            texts.append(self._pieces_to_text(run))
        return " ".join(texts)

    def _pieces_to_text(self, pieces: list[str]) -> str:
        """LlamaTokenizer.convert_tokens_to_string (4.30): special tokens outside SentencePiece."""
        out, run, previous_special = "", [], False
        for i, piece in enumerate(pieces):
            if piece in self.special_tokens:
                if not previous_special and i != 0:
                    out += " "
                out += self.sp.decode(run) + piece
                previous_special, run = True, []
            else:
                run.append(piece)
                previous_special = False
        return out + self.sp.decode(run)


def _json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UnknownModelError(f"{path}: not valid JSON ({e})") from None


def _content(value, default: str) -> str:
    if isinstance(value, dict):
        return str(value.get("content", default))
    return default if value is None else str(value)


@dataclass
class SeedProcessor:
    """What SEED-LLaMA's prompts and answers go through: the official-behaving tokenizer
    (``text``) and a transformers tokenizer over the same vocabulary (``tokenizer``: what
    vlmzoo's generation machinery asks of one: special ids, padding side, stop strings)."""
    text: LegacyLlamaTokenizer
    tokenizer: object
    format: PromptFormat | None = None

    @property
    def image_id_shift(self) -> int:
        """The id of ``<img_00000>`` (32,000 in the release: right after LLaMA's vocabulary)."""
        return self.text.token_id(IMG_TOKEN.format(0))

    @property
    def boi_id(self) -> int:
        return self.text.token_id(BOI)

    @property
    def eoi_id(self) -> int:
        return self.text.token_id(EOI)
