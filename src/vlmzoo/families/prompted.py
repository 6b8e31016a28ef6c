"""Prompted models: one question about one image, in the family's own prompt format.

BLIP-2, InstructBLIP, GIT, Kosmos-2, Florence-2 and PaliGemma have no chat template; each
family module states its prompt formats (``question_format``, ``prompt_prefix``,
``caption_text``) and this
class turns a request into that prompt, refusing chats and several images clearly.
"""

from __future__ import annotations

from typing import ClassVar

from vlmzoo.families.base import single_question
from vlmzoo.families.generative import GenerativeModel
from vlmzoo.tasks import AskRequest


class PromptedModel(GenerativeModel):
    multi_image: ClassVar[bool] = False
    question_format: ClassVar[str] = "{question}"
    # A caption prompt is the prefix (the family's marker, e.g. PaliGemma's <image>) followed by
    # the user's prompt, or by the family's own caption text when there is none.
    prompt_prefix: ClassVar[str] = ""
    caption_text: ClassVar[str] = ""

    def prompt(self, request: AskRequest) -> str:
        return self.question_format.format(question=single_question(request, self.name))

    def caption_prompt(self, prompt: str | None) -> str:
        return self.prompt_prefix + (prompt or self.caption_text)

    def max_images(self) -> int | None:
        return 1
