"""NVLM-D's modules: InternViT-6B, pixel shuffle and the ``mlp1`` projector (ours), before
transformers' Qwen2 (NVLM-D-72B: InternViT-6B-448px-V1-5 + Qwen2-72B-Instruct).

- ``vision_model``: InternViT on 448 x 448 tiles in 14 px patches (32 x 32 + a class token);
  pre-norm blocks with RMSNorm, layer scale (``ls1``, ``ls2``), q/k RMS normalisation over the
  whole width, exact GELU. The published attention tensors carry 7 zero "dummy" heads (32 heads
  for tensor parallelism where the model has 25): the modules keep that layout, and the q/k norms
  take their mean square over the real width only, so the padding changes nothing.
- The last layer's patch features (class token dropped) are pixel-shuffled: each 2 x 2
  neighbourhood becomes one token of 4x the width (256 tokens a tile), and ``mlp1`` (LayerNorm,
  Linear, GELU, Linear, no biases in the Linears) projects them to the LLM's width.
- ``language_model``: Qwen2; the features *replace* the embeddings of the ``<|vision_pad|>``
  tokens, tile by tile.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from vlmzoo.families.image_prompt import ImagePromptLM

DUMMY_HEADS = 7  # NVLM-D pads InternViT-6B's 25 heads to 32 (Megatron-LM examples/multimodal/nvlm)
SHUFFLE = 2  # pixel shuffle with downsample_ratio 0.5


class RMSNorm(nn.Module):
    """RMSNorm whose statistic divides by ``width`` (the real width when the input is padded
    with zero channels)."""

    def __init__(self, size: int, eps: float, width: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size))
        self.eps, self.width = eps, width or size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).sum(-1, keepdim=True) / self.width + self.eps)
        return self.weight * h.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.heads = c.num_attention_heads + DUMMY_HEADS
        inner = self.heads * self.head_dim
        self.qkv = nn.Linear(c.hidden_size, 3 * inner, bias=c.qkv_bias)
        self.q_norm = RMSNorm(inner, c.layer_norm_eps, c.hidden_size)
        self.k_norm = RMSNorm(inner, c.layer_norm_eps, c.hidden_size)
        self.proj = nn.Linear(inner, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)

        def heads(t):
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attn = Attention(c)
        self.mlp = MLP(c)
        self.norm1 = RMSNorm(c.hidden_size, c.layer_norm_eps)
        self.norm2 = RMSNorm(c.hidden_size, c.layer_norm_eps)
        self.ls1 = nn.Parameter(torch.empty(c.hidden_size))
        self.ls2 = nn.Parameter(torch.empty(c.hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x)) * self.ls1
        return x + self.mlp(self.norm2(x)) * self.ls2


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        grid = c.image_size // c.patch_size
        self.class_embedding = nn.Parameter(torch.empty(1, 1, c.hidden_size))
        self.patch_embedding = nn.Conv2d(3, c.hidden_size, c.patch_size, c.patch_size)
        self.position_embedding = nn.Parameter(torch.empty(1, grid * grid + 1, c.hidden_size))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype), x], dim=1)
        return x + self.position_embedding.to(x.dtype)  # tiles are always image_size: no resizing


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))


class InternViT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels)
        for layer in self.encoder.layers:
            x = layer(x)
        return x  # select_layer -1: the last layer, no final norm


def pixel_shuffle(x: torch.Tensor) -> torch.Tensor:
    """(n, grid*grid, C) -> (n, (grid/2)^2, 4C): token (r, c) holds (2r, 2c), (2r, 2c+1),
    (2r+1, 2c), (2r+1, 2c+1) side by side (InternVL's "v2" shuffle)."""
    n, length, c = x.shape
    side = int(length ** 0.5)
    half = side // SHUFFLE
    x = x.view(n, half, SHUFFLE, half, SHUFFLE, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, half * half, SHUFFLE * SHUFFLE * c)


class NVLMMixin(ImagePromptLM):
    """What NVLM-D adds to transformers' Qwen2: InternViT and ``mlp1``, whose tokens replace
    the ``<|vision_pad|>`` embeddings."""

    def attach_vision(self, vision_config) -> None:
        wide = vision_config.hidden_size * SHUFFLE * SHUFFLE
        self.vision_model = InternViT(vision_config)
        self.mlp1 = nn.Sequential(nn.LayerNorm(wide), nn.Linear(wide, self.config.intermediate_size, bias=False),
                                  nn.GELU(), nn.Linear(self.config.intermediate_size, self.config.hidden_size, bias=False))

    def image_tokens(self, tiles: torch.Tensor) -> torch.Tensor:
        """(n, 3, 448, 448) tiles -> (n, 256, hidden)."""
        return self.mlp1(pixel_shuffle(self.vision_model(tiles)[:, 1:]))

    def encode_images(self, pixel_values, image_masks=None, image_sizes=None):
        """(B, n, 3, 448, 448) tiles, ``image_masks`` (B, n) False for batch padding ->
        (B, n, 256, hidden)."""
        b, n = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)
        real = image_masks.flatten().bool()
        tokens = (self.vision_model.embeddings.position_embedding.shape[1] - 1) // (SHUFFLE * SHUFFLE)
        out = flat.new_zeros(b * n, tokens, self.config.hidden_size)
        if real.any():
            out[real] = self.image_tokens(flat[real])
        return out.view(b, n, -1, out.shape[-1])


@cache
def nvlm_class():
    from transformers import Qwen2ForCausalLM

    class NVLMD(NVLMMixin, Qwen2ForCausalLM):
        """NVLM-D: Qwen2 with InternViT and mlp1."""

    return NVLMD
