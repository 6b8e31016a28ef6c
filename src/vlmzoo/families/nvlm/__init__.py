"""NVLM-D (NVIDIA NVLM-D-72B), implemented here: caption, ask and chat with several images, at any
aspect ratio (up to 6 tiles and a thumbnail an image), from the official checkpoint layout,
never with Hub code.

NVLM-D's own inference code is only on the Hugging Face hub; the port follows the code it was
derived from (InternVL's InternVLChatModel and InternViT) and NVLM's rules from NVIDIA's
Megatron-LM (tile tags, the projector, the dummy heads). The least certain piece is the chat
template (ChatML, system "You are a helpful assistant."): tests/data/nvlm_d/README.md says why.
At 79B parameters it needs ~160 GB in bf16: ``vlmzoo.load`` refuses it up front on smaller
machines; the card names an engine that serves it at full size.

The modules are in modeling.py (InternViT and mlp1 ours, the LLM transformers' Qwen2), tiling
and the prompt in processing.py, the checkpoint's names in convert.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.generative import GenerativeModel
from vlmzoo.tasks import AskRequest, ImagePart, Message

CAPTION_INSTRUCTION = "Please describe the image shortly."  # the model card's example


class NVLMModel(GenerativeModel):
    family = "nvlm"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask")
    default_batch_size: ClassVar[int] = 1
    multi_image = False  # not documented for the released checkpoint (its card); the code takes several

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model.generation_config.eos_token_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.model.generation_config.pad_token_id = self.tokenizer.pad_token_id

    # -- loading hooks: our modules, the official files ----------------------------------------

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        from vlmzoo.families.nvlm import convert

        return convert.load(path, device=device, dtype=dtype)

    @classmethod
    def load_processor(cls, path: Path):
        from vlmzoo.families import hf
        from vlmzoo.families.nvlm.processing import NVLMProcessor, TileSettings

        tokenizer = hf.load_tokenizer(path, "NVLM-D")
        raw = hf.read_config(path)
        settings = TileSettings(raw.get("min_dynamic_patch", 1), raw.get("max_dynamic_patch", 6),
                                raw.get("use_thumbnail", True))
        try:
            return NVLMProcessor(tokenizer, settings)
        except ValueError as e:
            raise UnknownModelError(f"{path}: {e}") from None

    # -- prompts --------------------------------------------------------------------------------

    def prompt(self, request: AskRequest) -> str:
        from vlmzoo.families.nvlm.processing import IMAGE_MARK, chatml

        numbered = sum(isinstance(p, ImagePart) for m in request.messages for p in m.parts) > 1
        turns, system, k = [], None, 0
        for m in request.messages:
            if m.role == "system":
                system = m.text
                continue
            lines = []
            for part in m.parts:
                if isinstance(part, ImagePart):
                    k += 1
                    lines.append(f"Image-{k}: {IMAGE_MARK}" if numbered else IMAGE_MARK)
                else:
                    lines.append(part)
            turns.append((m.role, "\n".join(lines)))
        return chatml(turns) if system is None else chatml(turns, system)

    def caption_prompt(self, prompt: str | None) -> str:
        return self.prompt(AskRequest((Message("user", (ImagePart(None), prompt or CAPTION_INSTRUCTION)),)))

    def encode(self, prompts: list[str], images):
        try:
            inputs = self.processor(prompts, [[im.image for im in per] for per in images])
        except ValueError as e:
            raise InputError(f"{self.name} cannot take this input: {e}") from None
        return inputs.to(self.device)
