"""Idefics3 and SmolVLM: images split into tiles plus a global view.

Splitting multiplies image tokens (SmolVLM-256M: 17 tiles, about 1,100 tokens for a 448 px
image), and with them the time to first token. ``model.image_splitting = False`` sends one
view only; None keeps the checkpoint's setting.
"""

from __future__ import annotations

from vlmzoo.families.chat import ChatModel


class Idefics3Model(ChatModel):
    family = "idefics3"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.image_splitting: bool | None = None

    def processor_kwargs(self) -> dict:
        return {} if self.image_splitting is None else {"do_image_splitting": self.image_splitting}
