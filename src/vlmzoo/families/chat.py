"""Chat models: checkpoints whose processor carries a chat template.

LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM, Gemma 3 and Llama 3.2 Vision all
load as ``AutoModelForImageTextToText``, and their processor turns chat messages into the
prompt, placing each image's tokens where the message puts the image. The template is the
checkpoint's own, so vlmzoo never re-types a family's prompt format for these.
"""

from __future__ import annotations

from typing import ClassVar

from vlmzoo.families.generative import GenerativeModel
from vlmzoo.tasks import AskRequest, ImagePart, Message


class ChatModel(GenerativeModel):
    caption_instruction: ClassVar[str] = "Describe this image in one sentence."

    def chat_messages(self, request: AskRequest) -> list[dict]:
        """Messages in the transformers chat format: images as ``{"type": "image"}`` parts."""
        return [
            {"role": m.role,
             "content": [{"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p} for p in m.parts]}
            for m in request.messages
        ]

    def prompt(self, request: AskRequest) -> str:
        return self.processor.apply_chat_template(self.chat_messages(request), add_generation_prompt=True,
                                                  tokenize=False)

    def _instruction(self, text: str) -> str:
        """One user turn holding one image and ``text``, through the chat template."""
        return self.prompt(AskRequest((Message("user", (ImagePart(None), text)),)))

    def caption_prompt(self, prompt: str | None) -> str:
        return self._instruction(prompt or self.caption_instruction)

    def ground_prompt(self, phrase: str) -> str:
        return self._instruction(self.ground_instruction(phrase))

    def ground_instruction(self, phrase: str) -> str:  # pragma: no cover - families with "ground"
        raise NotImplementedError
