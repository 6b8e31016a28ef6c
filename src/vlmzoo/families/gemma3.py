"""Gemma 3: a SigLIP tower whose 896 px view is pooled to 256 tokens; several images per prompt."""

from __future__ import annotations

from vlmzoo.families.chat import ChatModel


class Gemma3Model(ChatModel):
    family = "gemma3"
