"""SEED's modules, from transformers' building blocks where the math is the same (each held to
the official code's outputs in tests/test_seed.py).

``ImageTokenizer`` is the official ``Blip2QformerQuantizer`` (models/seed_qformer/qformer_quantizer.py)
as ``ImageTokenizer`` runs it:

- encode (``get_codebook_indices``): EVA ViT-g and ln_vision (transformers' ``Blip2VisionModel``,
  families/lavis.py) -> the causal Q-Former: LAVIS's query-only BERT Q-Former
  (``Blip2QFormerModel``) whose 32 queries attend causally among themselves (qformer_causual.py
  masks query j from query i < j, with an additive -10000, when exactly 32 queries come in) ->
  ``encode_task_layer`` (Linear, Tanh, Linear to 32 dimensions) -> the nearest of 8,192 codebook
  rows by squared distance (``VectorQuantizer2``: ties to the lowest index, as argmin).
- decode (``get_codebook_entry``): codebook rows -> ``decode_task_layer`` -> plus
  ``pos_embed_image`` -> ``blocks_image`` (4 timm ViT blocks: pre-norm, fused qkv with a bias,
  exact GELU, eps 1e-6, 12 heads; transformers' ``Blip2Encoder`` is that block) -> ``image_down``
  (768 -> 256 -> 128 -> 32, ReLU, no biases) -> the 32 x 32 flattened -> ``distill_image_proj``:
  the 1,024-d image embedding the unCLIP Stable Diffusion decoder takes (trained to stand for the
  OpenCLIP ViT-H/14 image embedding stable-diffusion-2-1-unclip is conditioned on).

SEED-LLaMA is transformers' ``LlamaForCausalLM`` (the official ``llama_xformer.py`` is transformers
4.30's Llama with xformers' exact attention); images enter its prompt as code tokens, so its
modules see only token ids. The image tokenizer rides along as ``image_tokenizer``.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from vlmzoo.families.lavis import eva_tower

CAUSAL_QUERIES = 32  # qformer_causual.py: the queries are causal only when exactly 32 come in
MASKED = -10000.0  # the official additive mask value


class ImageTokenizer(nn.Module):
    def __init__(self, vision_config, qformer_config, decoder_config, queries: int = 32, codebook: int = 8192,
                 code_dim: int = 32, image_features: int = 1024, decode: bool = True):
        from transformers import Blip2QFormerModel

        super().__init__()
        width = qformer_config.hidden_size
        self.visual_encoder = eva_tower(vision_config)
        self.query_tokens = nn.Parameter(torch.empty(1, queries, width))
        self.qformer = Blip2QFormerModel(qformer_config)
        self.encode_task_layer = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, code_dim))
        self.codebook = nn.Embedding(codebook, code_dim)
        if decode:
            from transformers.models.blip_2.modeling_blip_2 import Blip2Encoder

            self.decode_task_layer = nn.Sequential(nn.Linear(code_dim, code_dim), nn.Tanh(), nn.Linear(code_dim, width))
            self.pos_embed_image = nn.Parameter(torch.empty(1, queries, width))
            self.blocks_image = Blip2Encoder(decoder_config)
            self.image_down = nn.Sequential(nn.Linear(width, 256, bias=False), nn.ReLU(), nn.Linear(256, 128, bias=False),
                                            nn.ReLU(), nn.Linear(128, 32, bias=False))
            self.distill_image_proj = nn.Linear(queries * 32, image_features)

    @property
    def num_codes(self) -> int:
        return self.codebook.num_embeddings

    @property
    def queries(self) -> int:
        return self.query_tokens.shape[1]

    def causal_embeddings(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, 224, 224) -> every stage up to the Q-Former: ``vit``, ``ln_vision`` and
        ``causal_embeddings`` (N, 32, width)."""
        tower = self.visual_encoder
        hidden = tower.encoder(inputs_embeds=tower.embeddings(pixels)).last_hidden_state
        normed = tower.post_layernorm(hidden)
        queries = self.query_tokens.expand(pixels.shape[0], -1, -1)
        mask = None
        if queries.shape[1] == CAUSAL_QUERIES:
            n = queries.shape[1]
            allowed = torch.ones(n, n, dtype=torch.bool, device=queries.device).tril()
            mask = torch.zeros(n, n, dtype=queries.dtype, device=queries.device).masked_fill(~allowed, MASKED)
            mask = mask[None, None].expand(queries.shape[0], 1, n, n)
        out = self.qformer(query_embeds=queries, attention_mask=mask, encoder_hidden_states=normed).last_hidden_state
        return {"vit": hidden, "ln_vision": normed, "causal_embeddings": out}

    def quantize(self, causal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal embeddings -> (codes (N, 32), the pre-quantisation vectors (N, 32, 32)): the nearest
        codebook row as VectorQuantizer2 measures it, |z|^2 + |e|^2 - 2 z.e (not a norm of z - e:
        the same ties and roundings)."""
        z = self.encode_task_layer(causal)
        flat = z.reshape(-1, z.shape[-1])
        table = self.codebook.weight
        d = flat.pow(2).sum(1, keepdim=True) + table.pow(2).sum(1) - 2 * torch.einsum("bd,dn->bn", flat, table.t())
        return d.argmin(dim=1).reshape(z.shape[0], -1), z

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, 224, 224) -> (N, 32) codes."""
        return self.quantize(self.causal_embeddings(pixels)["causal_embeddings"])[0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, 32) codes -> (N, 1024) unCLIP image embeddings (get_codebook_entry)."""
        x = self.decode_task_layer(self.codebook(codes))
        x = x + self.pos_embed_image.expand(x.shape[0], -1, -1)
        x = self.blocks_image(inputs_embeds=x).last_hidden_state
        x = self.image_down(x)
        return self.distill_image_proj(x.reshape(x.shape[0], -1))


class SeedLlamaMixin:
    """transformers' Llama with SEED's image tokenizer beside it (images become code tokens before
    the prompt is tokenized: the LLM itself sees only ids)."""

    def attach_image_tokenizer(self, tokenizer: ImageTokenizer) -> None:
        self.image_tokenizer = tokenizer


@cache
def seed_llama_class():
    from transformers import LlamaForCausalLM

    class SeedLlama(SeedLlamaMixin, LlamaForCausalLM):
        """SEED-LLaMA: Llama over text and image-code tokens, with the SEED image tokenizer."""

    return SeedLlama
