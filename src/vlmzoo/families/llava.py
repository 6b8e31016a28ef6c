"""LLaVA-1.5 and LLaVA-NeXT (llava-hf checkpoints): a CLIP tower, an MLP projector, an LLM.

LLaVA-1.5 was trained with one image per conversation; prompts with several are refused
(per its card). LLaVA-NeXT tiles each image at several resolutions ("any resolution").
"""

from __future__ import annotations

from vlmzoo.families.chat import ChatModel


class LlavaModel(ChatModel):
    family = "llava"
    multi_image = False


class LlavaNextModel(ChatModel):
    family = "llava_next"
    multi_image = False
