"""Llama 3.2 Vision (Mllama): images enter through cross-attention layers, not as tokens.

The instruct checkpoints were tuned with one image per conversation; several are refused.
"""

from __future__ import annotations

from vlmzoo.families.chat import ChatModel


class MllamaModel(ChatModel):
    family = "mllama"
    multi_image = False
