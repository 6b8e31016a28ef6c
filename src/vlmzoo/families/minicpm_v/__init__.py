"""MiniCPM-V-2.6 (openbmb), implemented here: caption, ask and chat with several images per turn
at any resolution, from the official checkpoint layout, never with Hub code.

- Images are sliced (up to 9 slices plus the whole image, processing.py); ``max_slice_nums``
  on the model object trades detail for speed (None: the checkpoint's 9).
- Prompts go through the checkpoint's own chat template; each image sits where the message puts
  it, numbered across the conversation (``<image_id>``).
- Decoding is greedy unless sampling is asked for. The official ``chat(sampling=False)`` runs
  beam search (3 beams, repetition penalty 1.2): pass ``num_beams=3, repetition_penalty=1.2``
  to match it. As the official code does, token id 0 is dropped from answers and masked in
  prompts (it is "!" in the released vocabulary), and special tokens other than the
  terminators stay in answers (its grounding writes ``<ref>``/``<box>``).

The modules are in modeling.py (SigLIP tower and resampler ours, the LLM transformers' Qwen2),
slicing and placeholders in processing.py, the checkpoint's names in convert.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.generative import GenerativeModel
from vlmzoo.tasks import AskRequest, ImagePart

CAPTION_INSTRUCTION = "Describe this image in one sentence."
TERMINATORS = ("<|im_end|>", "<|endoftext|>")  # the official chat()'s


class MiniCPMVModel(GenerativeModel):
    family = "minicpm_v"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask")
    default_batch_size: ClassVar[int] = 2  # up to 10 slices an image

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.max_slice_nums: int | None = None
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in TERMINATORS]
        self._terminator_ids = {i for i in ids if i is not None}
        self.model.generation_config.eos_token_id = sorted(self._terminator_ids)
        self.model.generation_config.pad_token_id = 0  # the official generate's

    # -- loading hooks: our modules, the official files ----------------------------------------

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        from vlmzoo.families.minicpm_v import convert

        return convert.load(path, device=device, dtype=dtype)

    @classmethod
    def load_processor(cls, path: Path):
        from vlmzoo.families.hf import load_tokenizer
        from vlmzoo.families.minicpm_v.processing import (
            MiniCPMVProcessor,
            SliceSettings,
        )

        tokenizer = load_tokenizer(path, "MiniCPM-V", fast_only=True)  # its class is Hub code
        if not tokenizer.chat_template:
            raise UnknownModelError(f"{path}: the tokenizer has no chat template (tokenizer_config.json)")
        try:
            return MiniCPMVProcessor(tokenizer, SliceSettings.from_folder(path))
        except (TypeError, ValueError) as e:
            raise UnknownModelError(f"{path}: {e}") from None

    # -- prompts --------------------------------------------------------------------------------

    def prompt(self, request: AskRequest) -> str:
        from vlmzoo.families.minicpm_v.processing import IMAGE_MARK

        messages = [{"role": m.role, "content": "\n".join(IMAGE_MARK if isinstance(p, ImagePart) else p
                                                          for p in m.parts)} for m in request.messages]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def caption_prompt(self, prompt: str | None) -> str:
        from vlmzoo.tasks import Message

        return self.prompt(AskRequest((Message("user", (ImagePart(None), prompt or CAPTION_INSTRUCTION)),)))

    def encode(self, prompts: list[str], images):
        try:
            inputs = self.processor(prompts, [[im.image for im in per] for per in images],
                                    max_slices=self.max_slice_nums)
        except ValueError as e:
            raise InputError(f"{self.name} cannot take this input: {e}") from None
        return inputs.to(self.device)

    def decode(self, ids, keep_special: bool = False) -> str:
        """As the official decoder: id 0 dropped everywhere, a leading ``<|im_start|>`` and the
        terminator dropped, other special tokens (``<box>``, ``<ref>``, ...) kept in the text."""
        ids = [int(i) for i in ids if int(i) != 0]
        if ids and ids[0] == self.tokenizer.bos_token_id:
            ids = ids[1:]
        ends = [k for k, i in enumerate(ids) if i in self._terminator_ids]
        return self.tokenizer.decode(ids[: ends[0]] if ends else ids, skip_special_tokens=False)
