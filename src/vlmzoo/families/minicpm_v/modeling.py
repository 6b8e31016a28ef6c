"""MiniCPM-V-2.6's modules: a SigLIP-400M ViT over variable-size slices, a perceiver resampler,
and Qwen2-7B (transformers' own classes for the ViT's layers and the LLM).

- ``vpm``: SigLIP so400m/14 taking each slice at its own size. A slice of h x w patches arrives
  as one row of h*w patches (processing.py lays them out so); its position ids are NaViT's:
  each patch's fractional row and column bucketed into the 70 x 70 position table. Slices of
  one batch are padded to the longest, and padded patches are masked as keys.
- ``resampler``: 64 learned queries attend (one cross-attention, ``hidden / 128`` heads) over a
  slice's patches plus a 2D sin-cos position table of its patch grid, giving 64 tokens a slice.
- ``llm``: Qwen2; the 64 tokens of each slice *replace* the embeddings of the ``<unk>``
  placeholders between ``<image>``/``<slice>`` and their end tokens.

Names are the official checkpoint's (``vpm.*``, ``resampler.*``; ``llm.*`` is the Qwen2 class's
own, under the prefix convert.py strips).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlmzoo.families.image_prompt import ImagePromptLM

POSITION_GRID = 70  # SigLIP-980's position table is 70 x 70
RESAMPLER_HEAD_DIM = 128  # the official code sets heads = hidden // 128
SINCOS_BASE = 70  # the resampler's table covers 70 x 70 patches and grows for larger slices


class VisionEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_size = config.patch_size
        self.grid = config.image_size // config.patch_size
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size, config.patch_size)
        self.position_embedding = nn.Embedding(self.grid * self.grid, config.hidden_size)

    def forward(self, pixels: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """(B, 3, patch, L * patch) slices in one row of patches, (B, 2) their (h, w) in patches."""
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)  # padding reads row 0
        for i, (h, w) in enumerate(sizes.tolist()):
            ids[i, : h * w] = self.position_ids(h, w).to(x.device)
        return x + self.position_embedding(ids)

    def position_ids(self, h: int, w: int) -> torch.Tensor:
        """NaViT's: fractional coordinates bucketed into the position table's rows and columns."""
        bounds = torch.arange(1 / self.grid, 1.0, 1 / self.grid)
        rows = torch.bucketize(torch.arange(0, 1 - 1e-6, 1 / h), bounds, right=True)
        cols = torch.bucketize(torch.arange(0, 1 - 1e-6, 1 / w), bounds, right=True)
        return (rows[:, None] * self.grid + cols).flatten()


class VisionTower(nn.Module):
    def __init__(self, config):
        super().__init__()
        from transformers.models.siglip.modeling_siglip import SiglipEncoder

        self.embeddings = VisionEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels, sizes)
        lengths = (sizes[:, 0] * sizes[:, 1]).to(x.device)
        real = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
        mask = None if bool(real.all()) else real[:, None, None, :]  # padded patches are no keys
        return self.post_layernorm(self.encoder(x, attention_mask=mask).last_hidden_state)


class PackedAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (packed q/k/v), computed with sdpa."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """q (B, Q, D); k, v (B, L, D); key_mask (B, L) True where a key may be read."""
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        b, d = k.shape[0], k.shape[-1]

        def heads(x):
            return x.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(F.linear(q, wq, bq)), heads(F.linear(k, wk, bk)),
                                             heads(F.linear(v, wv, bv)), attn_mask=key_mask[:, None, None, :])
        return self.out_proj(out.transpose(1, 2).reshape(b, -1, d))


class Resampler(nn.Module):
    def __init__(self, queries: int, dim: int, vision_dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.empty(queries, dim))
        self.kv_proj = nn.Linear(vision_dim, dim, bias=False) if vision_dim != dim else nn.Identity()
        self.attn = PackedAttention(dim, dim // RESAMPLER_HEAD_DIM)
        self.ln_q = nn.LayerNorm(dim, eps=1e-6)
        self.ln_kv = nn.LayerNorm(dim, eps=1e-6)
        self.ln_post = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Parameter(torch.empty(dim, dim))

    def forward(self, x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """(B, L, vision_dim) patch features of slices of (h, w) patches -> (B, queries, dim)."""
        b, length = x.shape[:2]
        dim = self.query.shape[-1]
        table = sincos_table(dim, max(SINCOS_BASE, int(sizes[:, 0].max())), max(SINCOS_BASE, int(sizes[:, 1].max())))
        pos = x.new_zeros(b, length, dim)
        for i, (h, w) in enumerate(sizes.tolist()):
            pos[i, : h * w] = torch.from_numpy(table[:h, :w].reshape(h * w, dim)).to(x.dtype)
        lengths = (sizes[:, 0] * sizes[:, 1]).to(x.device)
        key_mask = torch.arange(length, device=x.device)[None] < lengths[:, None]
        kv = self.ln_kv(self.kv_proj(x))
        q = self.ln_q(self.query).expand(b, -1, -1)
        out = self.ln_post(self.attn(q, kv + pos, kv, key_mask))
        return out @ self.proj


@cache
def sincos_table(dim: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols, dim) float32, as the official numpy code builds it: the first half of the
    channels from the column index, the second from the row index, each [sin | cos]."""
    def one_axis(d: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(d // 2, dtype=np.float32)
        omega /= d / 2.0
        omega = 1.0 / 10000 ** omega
        out = np.einsum("hw,d->hwd", pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=-1)

    col, row = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    return np.concatenate([one_axis(dim // 2, col), one_axis(dim // 2, row)], axis=-1).astype(np.float32)


class MiniCPMVMixin(ImagePromptLM):
    """What MiniCPM-V adds to transformers' Qwen2: the SigLIP tower and the resampler, whose
    tokens replace the placeholders' embeddings."""

    vision_batch_size = 16  # slices per ViT call, as the official code runs them

    def attach_vision(self, vision_config, queries: int) -> None:
        self.vpm = VisionTower(vision_config)
        self.resampler = Resampler(queries, self.config.hidden_size, vision_config.hidden_size)

    def encode_images(self, pixel_values, image_masks=None, image_sizes=None):
        """(B, n, 3, patch, L * patch) slices with (B, n, 2) sizes (padding slices: size 0)
        -> (B, n, queries, D)."""
        b, n = pixel_values.shape[:2]
        flat, sizes = pixel_values.flatten(0, 1), image_sizes.flatten(0, 1)
        real = (sizes[:, 0] * sizes[:, 1]) > 0
        out = pixel_values.new_zeros(b * n, self.resampler.query.shape[0], self.config.hidden_size)
        index = real.nonzero()[:, 0]
        for chunk in index.split(self.vision_batch_size):
            longest = int((sizes[chunk, 0] * sizes[chunk, 1]).max())
            pixels = flat[chunk][..., : longest * flat.shape[-2]]
            out[chunk] = self.resampler(self.vpm(pixels, sizes[chunk]), sizes[chunk])
        return out.view(b, n, -1, out.shape[-1])


@cache
def minicpmv_class():
    from transformers import Qwen2ForCausalLM

    class MiniCPMV(MiniCPMVMixin, Qwen2ForCausalLM):
        """MiniCPM-V-2.6: Qwen2 with the SigLIP tower and resampler."""

    return MiniCPMV
