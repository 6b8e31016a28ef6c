"""MiniGPT-4 and MiniGPT-v2's modules, from transformers' building blocks where the math is the
same (each equivalence is held to the official code's outputs in tests/test_minigpt4.py):

- ``visual_encoder``: LAVIS's EVA ViT-g/14 as transformers' ``Blip2VisionModel``, its
  ``post_layernorm`` MiniGPT's ``ln_vision`` (families/lavis.py, shared with SEED). MiniGPT-v2
  runs the tower at 448 px on the 224 px positions interpolated once at load.
- MiniGPT-4 (Vicuna): ``query_tokens`` and ``qformer``, transformers' ``Blip2QFormerModel`` (the
  query-only path of LAVIS's BERT Q-Former, families/lavis.py), then ``llama_proj`` (768 -> LLM).
- MiniGPT-4 (Llama 2) and MiniGPT-v2: no Q-Former; the ViT features without the class token,
  each 4 consecutive tokens side by side (64 tokens at 224 px, 256 at 448), then ``llama_proj``.
- The LLM is transformers' ``LlamaForCausalLM`` (Vicuna V0, Llama-2-chat); MiniGPT-v2's LoRA
  (q_proj / v_proj) is merged into its weights at load (convert.py). The projected image tokens
  replace the embeddings of the placeholder positions the prompt holds for them.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from vlmzoo.families.image_prompt import ImagePromptLM
from vlmzoo.families.lavis import eva_tower

MERGE = 4  # consecutive ViT tokens per LLM token without a Q-Former


class MiniGPTMixin(ImagePromptLM):
    """What MiniGPT adds to transformers' Llama: the EVA ViT-g, the Q-Former (MiniGPT-4 with
    Vicuna) and ``llama_proj``."""

    def attach_vision(self, vision_config, qformer_config=None, queries: int = 32) -> None:
        from transformers import Blip2QFormerModel

        self.visual_encoder = eva_tower(vision_config)
        if qformer_config is not None:
            self.query_tokens = nn.Parameter(torch.empty(1, queries, qformer_config.hidden_size))
            self.qformer = Blip2QFormerModel(qformer_config)
            width = qformer_config.hidden_size
        else:
            width = vision_config.hidden_size * MERGE
        self.llama_proj = nn.Linear(width, self.config.hidden_size)

    @property
    def has_qformer(self) -> bool:
        return hasattr(self, "qformer")

    def vision_stages(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage of the image path for (N, 3, S, S) pixels: ``visual_encoder`` (the last
        block's output), ``ln_vision``, ``qformer`` (MiniGPT-4 with Vicuna) and ``image_embeds``
        (what enters the LLM)."""
        tower = self.visual_encoder
        hidden = tower.encoder(inputs_embeds=tower.embeddings(pixels)).last_hidden_state
        stages = {"visual_encoder": hidden, "ln_vision": tower.post_layernorm(hidden)}
        x = stages["ln_vision"]
        if self.has_qformer:
            queries = self.query_tokens.expand(x.shape[0], -1, -1)
            x = stages["qformer"] = self.qformer(query_embeds=queries, encoder_hidden_states=x).last_hidden_state
        else:
            x = x[:, 1:]
            b, n, c = x.shape
            x = x.reshape(b, n // MERGE, c * MERGE)
        stages["image_embeds"] = self.llama_proj(x)
        return stages

    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, image tokens, LLM width)."""
        return self.vision_stages(pixels)["image_embeds"]

    def encode_images(self, pixel_values, image_masks=None, image_sizes=None):
        """(B, n, 3, S, S) images, ``image_masks`` (B, n) False for batch padding -> (B, n, tokens, D)."""
        b, n = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)
        real = image_masks.flatten().bool() if image_masks is not None else torch.ones(b * n, dtype=torch.bool)
        tokens = self.image_tokens_per_image()
        out = flat.new_zeros(b * n, tokens, self.config.hidden_size)
        if real.any():
            out[real] = self.image_embeds(flat[real]).to(out.dtype)
        return out.view(b, n, tokens, -1)

    def image_tokens_per_image(self) -> int:
        if self.has_qformer:
            return self.query_tokens.shape[1]
        return (self.visual_encoder.embeddings.position_embedding.shape[1] - 1) // MERGE

    def generate(self, *args, repetition_penalty=None, logits_processor=None, **kwargs):
        """transformers' generate, with ``repetition_penalty`` counted as the official code counts
        it: over the answer's tokens and the BOS generation starts from, not the prompt (the
        official model generates from embeddings: transformers 4.30 then begins the sequence
        with one BOS). Sampling warpers run after the penalty, as they did there."""
        from transformers import LogitsProcessorList

        if repetition_penalty is None or repetition_penalty == 1.0:
            return super().generate(*args, logits_processor=logits_processor, **kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        processors = LogitsProcessorList(logits_processor or [])
        processors.append(AnswerRepetitionPenalty(repetition_penalty, ids.shape[1], self.generation_config.bos_token_id))
        if kwargs.get("do_sample"):  # the warpers after the penalty, as 4.30 ordered them
            processors.extend(_warpers(kwargs))
            kwargs.update(temperature=None, top_k=None, top_p=None)
        return super().generate(*args, logits_processor=processors, **kwargs)


class AnswerRepetitionPenalty:
    """transformers' repetition penalty over the tokens after the prompt, plus a BOS."""

    def __init__(self, penalty: float, prompt_length: int, bos_id: int | None):
        from transformers import RepetitionPenaltyLogitsProcessor

        self.inner = RepetitionPenaltyLogitsProcessor(penalty)
        self.start, self.bos = prompt_length, bos_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        seen = input_ids[:, self.start:]
        if self.bos is not None:
            seen = torch.cat([seen.new_full((seen.shape[0], 1), self.bos), seen], dim=1)
        return self.inner(seen, scores)


def _warpers(kwargs: dict) -> list:
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    out = []
    if kwargs.get("temperature") not in (None, 1.0):
        out.append(TemperatureLogitsWarper(kwargs["temperature"]))
    if kwargs.get("top_k"):
        out.append(TopKLogitsWarper(kwargs["top_k"]))
    if kwargs.get("top_p") is not None and kwargs["top_p"] < 1.0:
        out.append(TopPLogitsWarper(kwargs["top_p"]))
    return out


class LoRAPair(nn.Module):
    """One LoRA adapter as peft 0.2.0 saved it: ``A`` (r, in), ``B`` (out, r); merged, never run."""

    def __init__(self, rank: int, width_in: int, width_out: int):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, width_in))
        self.B = nn.Parameter(torch.empty(width_out, rank))


def merge_lora(model, adapters, scaling: float) -> None:
    """W + scaling * B @ A into each adapted projection, computed in float32."""
    for layer, pairs in zip(model.model.layers, adapters):
        for name, pair in pairs.items():
            linear = getattr(layer.self_attn, name)
            delta = (pair.B.detach().float() @ pair.A.detach().float()) * scaling
            linear.weight.data = (linear.weight.data.float() + delta).to(linear.weight.dtype)


@cache
def minigpt_class():
    from transformers import LlamaForCausalLM

    class MiniGPT(MiniGPTMixin, LlamaForCausalLM):
        """MiniGPT-4 / MiniGPT-v2: Llama with the EVA ViT-g, the Q-Former and llama_proj."""

    return MiniGPT
