"""moondream2's modules, named as its official checkpoint names its tensors (without "model.").

Three parts (Hugging Face layout of vikhyatk/moondream2 from revision 2025-01-09; the code
behind it is github.com/vikhyat/moondream, moondream/torch/):

- ``vision``: a SigLIP-style ViT over 378 x 378 crops in 14 x 14 patches (27 x 27 = 729 per
  crop), run on the whole image resized (the global crop) and on overlapping local crops. The
  local crops' patch features are stitched into one grid, pooled back to 27 x 27, put beside
  the global crop's features, and projected to the text model's width by ``proj_mlp``.
- ``text``: a Phi-1.5-style decoder: one LayerNorm per block feeding attention and MLP in
  parallel, q/k/v as one product, rotary on the first 32 dimensions of each head, GELU (tanh)
  MLPs, a final LayerNorm and a biased LM head. The BOS token and the 729 image tokens attend
  to each other both ways (a prefix); everything after is causal.
- ``region``: the head behind detection and pointing. A coordinate (0..1) enters the text model
  as Fourier features through ``coord_encoder`` and comes out of a hidden state as 1024 bins
  through ``coord_decoder``; a box size (w, h) likewise through ``size_encoder`` /
  ``size_decoder`` (1024 log-scale bins each).

Only the modules and their forward passes live here; crops and prompts are in processing.py,
the checkpoint's names and files in convert.py, the decoding loops in decoding.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

ROTARY_DIMS = 32  # of each text attention head (Phi-1.5's partial rotary)
ROTARY_BASE = 10000.0


# -- configuration (config.json's "config" section; absent keys take the official defaults) ---------


@dataclass(frozen=True)
class TextConfig:
    dim: int = 2048
    ff_dim: int = 8192
    n_layers: int = 24
    vocab_size: int = 51200
    max_context: int = 2048
    n_heads: int = 32
    n_kv_heads: int = 32
    prefix_attn: int = 730
    group_size: int | None = None  # quantised checkpoints: not supported here


@dataclass(frozen=True)
class VisionConfig:
    enc_dim: int = 1152
    enc_patch_size: int = 14
    enc_n_layers: int = 27
    enc_ff_dim: int = 4304
    enc_n_heads: int = 16
    proj_out_dim: int = 2048
    crop_size: int = 378
    in_channels: int = 3
    max_crops: int = 12
    overlap_margin: int = 4
    proj_inner_dim: int = 8192
    # moondream1's tower differs in these (its own layout, families/moondream/moondream1.py)
    gelu_approximate: str = "tanh"  # moondream1: "none" (exact GELU), in the tower and projection
    ln_eps: float = 1e-5  # moondream1: 1e-6
    local_crops: bool = True  # moondream1: False, the image is one 378 x 378 crop and projected alone

    @property
    def grid(self) -> int:
        """Patches per side of one crop (27)."""
        return self.crop_size // self.enc_patch_size


@dataclass(frozen=True)
class RegionConfig:
    dim: int = 2048
    coord_feat_dim: int = 256
    coord_out_dim: int = 1024
    size_feat_dim: int = 512
    size_out_dim: int = 2048
    inner_dim: int = 8192
    group_size: int | None = None


@dataclass(frozen=True)
class TokenizerConfig:
    bos_id: int = 0
    eos_id: int = 0
    answer_id: int = 3
    thinking_id: int = 4
    coord_id: int = 5
    size_id: int = 6
    start_ground_points_id: int = 7
    end_ground_id: int = 9
    templates: dict = field(default_factory=lambda: {
        "caption": {"short": [1, 32708, 2, 12492, 3], "normal": [1, 32708, 2, 6382, 3],
                    "long": [1, 32708, 2, 4059, 3]},
        "query": {"prefix": [1, 15381, 2], "suffix": [3]},
        "detect": {"prefix": [1, 7235, 476, 2], "suffix": [3]},
        "point": {"prefix": [1, 2581, 2], "suffix": [3]},
    })


@dataclass(frozen=True)
class MoondreamConfig:
    text: TextConfig = TextConfig()
    vision: VisionConfig = VisionConfig()
    region: RegionConfig | None = RegionConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()

    @classmethod
    def from_dict(cls, raw: dict) -> "MoondreamConfig":
        """From config.json's "config" section; an unknown key is an error, not ignored."""
        parts = {}
        for f in fields(cls):
            section = raw.get(f.name) or {}
            known = {k.name for k in fields(f.default.__class__)}
            unknown = set(section) - known
            if unknown:
                raise ValueError(f"config.{f.name} has unknown key(s) {sorted(unknown)}")
            parts[f.name] = f.default.__class__(**section)
        extra = set(raw) - {f.name for f in fields(cls)}
        if extra:
            raise ValueError(f"config has unknown section(s) {sorted(extra)}")
        return cls(**parts)


# -- modules --------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, dim: int, qkv_dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, qkv_dim)
        self.proj = nn.Linear(dim, dim)


class MLP(nn.Module):
    def __init__(self, dim: int, inner: int, out: int | None = None, approximate: str = "tanh"):
        super().__init__()
        self.fc1 = nn.Linear(dim, inner)
        self.fc2 = nn.Linear(inner, out or dim)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class VisionBlock(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.enc_dim, eps=c.ln_eps)
        self.attn = Attention(c.enc_dim, 3 * c.enc_dim)
        self.ln2 = nn.LayerNorm(c.enc_dim, eps=c.ln_eps)
        self.mlp = MLP(c.enc_dim, c.enc_ff_dim, approximate=c.gelu_approximate)


class Vision(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.config = c
        self.patch_emb = nn.Linear(c.enc_patch_size ** 2 * c.in_channels, c.enc_dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, c.grid ** 2, c.enc_dim))
        self.blocks = nn.ModuleList(VisionBlock(c) for _ in range(c.enc_n_layers))
        self.post_ln = nn.LayerNorm(c.enc_dim, eps=c.ln_eps)
        inputs = 2 if c.local_crops else 1  # the global crop's features, beside the local grid's
        self.proj_mlp = MLP(inputs * c.enc_dim, c.proj_inner_dim, c.proj_out_dim, approximate=c.gelu_approximate)

    def encode(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, C, 378, 378) normalised crops -> (N, 729, enc_dim) patch features."""
        c = self.config
        n, ch, h, w = crops.shape
        p = c.enc_patch_size
        # patches in row-major order, each flattened channel-first: (C, p, p)
        x = crops.reshape(n, ch, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, ch * p * p)
        x = self.patch_emb(x) + self.pos_emb
        heads = c.enc_n_heads
        for block in self.blocks:
            x = x + _self_attention(block.ln1(x), block.attn, heads, heads, mask=None)
            x = x + block.mlp(block.ln2(x))
        return self.post_ln(x)

    def project(self, global_features: torch.Tensor, stitched: torch.Tensor | None = None) -> torch.Tensor:
        """The image's 729 tokens: the global crop's features beside the stitched local grid
        pooled back to 27 x 27 (moondream1: the global crop's alone), through ``proj_mlp``."""
        if stitched is None:
            return self.proj_mlp(global_features)
        g = self.config.grid
        pooled = F.adaptive_avg_pool2d(stitched.permute(2, 0, 1), (g, g)).permute(1, 2, 0).reshape(g * g, -1)
        return self.proj_mlp(torch.cat([global_features, pooled], dim=-1))


class TextBlock(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        head_dim = c.dim // c.n_heads
        self.ln = nn.LayerNorm(c.dim)
        self.attn = Attention(c.dim, c.dim + 2 * c.n_kv_heads * head_dim)
        self.mlp = MLP(c.dim, c.ff_dim)


class Text(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.config = c
        self.wte = nn.Parameter(torch.zeros(c.vocab_size, c.dim))
        self.blocks = nn.ModuleList(TextBlock(c) for _ in range(c.n_layers))
        self.post_ln = nn.LayerNorm(c.dim)
        self.lm_head = nn.Linear(c.dim, c.vocab_size)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.wte)

    def forward(self, x: torch.Tensor, cache: "KVCache", start: int, prefix: int = 0) -> torch.Tensor:
        """Hidden states (before the final LayerNorm) of ``x`` (1, T, dim) at positions
        ``start`` .. ``start + T - 1``, its keys and values appended to ``cache``. The first
        ``prefix`` positions of the sequence attend to each other both ways, the rest causally."""
        c = self.config
        t = x.shape[1]
        positions = torch.arange(start, start + t, device=x.device)
        cos, sin = _rotary(positions)
        mask = _prefix_causal_mask(start, t, prefix, x.device)
        for i, block in enumerate(self.blocks):
            h = block.ln(x)
            attn = _self_attention(h, block.attn, c.n_heads, c.n_kv_heads, mask=mask, rotary=(cos, sin),
                                   cache=(cache, i, start))
            x = x + attn + block.mlp(h)
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.post_ln(hidden))


class Region(nn.Module):
    def __init__(self, c: RegionConfig):
        super().__init__()
        self.coord_features = nn.Parameter(torch.zeros(1, c.coord_feat_dim // 2))
        self.coord_encoder = nn.Linear(c.coord_feat_dim, c.dim)
        self.coord_decoder = MLP(c.dim, c.inner_dim, c.coord_out_dim)
        self.size_features = nn.Parameter(torch.zeros(2, c.size_feat_dim // 2))
        self.size_encoder = nn.Linear(c.size_feat_dim, c.dim)
        self.size_decoder = MLP(c.dim, c.inner_dim, c.size_out_dim)

    def encode_coordinate(self, coord: torch.Tensor) -> torch.Tensor:
        """(..., 1) coordinates in 0..1 -> (..., dim) input embeddings."""
        return self.coord_encoder(_fourier(coord, self.coord_features))

    def decode_coordinate(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the coordinate bins."""
        return self.coord_decoder(hidden)

    def encode_size(self, size: torch.Tensor) -> torch.Tensor:
        """(..., 2) width and height in 0..1 -> (..., dim) input embeddings."""
        return self.size_encoder(_fourier(size, self.size_features))

    def decode_size(self, hidden: torch.Tensor) -> torch.Tensor:
        """(2, bins) logits: width, then height."""
        return self.size_decoder(hidden).reshape(2, -1)


class Moondream(nn.Module):
    """The whole model; its state dict is the official checkpoint's without the "model." prefix."""

    def __init__(self, config: MoondreamConfig):
        super().__init__()
        if config.text.group_size is not None or getattr(config.region, "group_size", None) is not None:
            raise ValueError("quantised moondream checkpoints (group_size set) are not supported; use the bf16 one")
        self.config = config
        self.vision = Vision(config.vision)
        self.text = Text(config.text)
        self.region = Region(config.region) if config.region is not None else None  # moondream1 has none

    @property
    def prefix_len(self) -> int:
        """The prefix that attends both ways: BOS and the image tokens (730; moondream1: 0)."""
        return self.config.text.prefix_attn


# -- the key-value cache ------------------------------------------------------------------------------


class KVCache:
    """Keys and values per text layer, preallocated for ``length`` positions."""

    def __init__(self, text: Text, length: int, device, dtype):
        c = text.config
        shape = (1, c.n_kv_heads, length, c.dim // c.n_heads)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in text.blocks]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in text.blocks]
        self.length = length

    def append(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        """Store ``k``, ``v`` at ``start`` onwards; the keys and values of every position so far."""
        end = start + k.shape[2]
        if end > self.length:
            raise ValueError(f"the sequence needs {end} positions; the cache holds {self.length}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


# -- the pieces of a forward pass --------------------------------------------------------------------


def _self_attention(x, w: Attention, n_heads: int, n_kv_heads: int, mask, rotary=None, cache=None):
    b, t, d = x.shape
    head_dim = d // n_heads
    q, k, v = w.qkv(x).split([n_heads * head_dim, n_kv_heads * head_dim, n_kv_heads * head_dim], dim=-1)
    q = q.view(b, t, n_heads, head_dim).transpose(1, 2)
    k = k.view(b, t, n_kv_heads, head_dim).transpose(1, 2)
    v = v.view(b, t, n_kv_heads, head_dim).transpose(1, 2)
    if rotary is not None:
        q, k = _apply_rotary(q, *rotary), _apply_rotary(k, *rotary)
    if cache is not None:
        store, layer, start = cache
        k, v = store.append(layer, start, k, v)  # every position's keys and values so far
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=n_heads != n_kv_heads)
    return w.proj(out.transpose(1, 2).reshape(b, t, d))


def _rotary(positions: torch.Tensor):
    """cos and sin (float32) of each position's rotary angles, computed here: no buffer to load."""
    inv_freq = 1.0 / (ROTARY_BASE ** (torch.arange(0, ROTARY_DIMS, 2, dtype=torch.float32,
                                                   device=positions.device) / ROTARY_DIMS))
    angles = positions.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ROTARY_DIMS of each head, as (first half, second half) pairs, in float32
    (as the official code's float32 angles promote it), then back to ``x``'s dtype."""
    rot, rest = x[..., :ROTARY_DIMS], x[..., ROTARY_DIMS:]
    half = ROTARY_DIMS // 2
    real, imag = rot[..., :half], rot[..., half:]
    rotated = torch.cat([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return torch.cat([rotated.to(x.dtype), rest], dim=-1)


def _prefix_causal_mask(start: int, t: int, prefix: int, device) -> torch.Tensor:
    """(t, start + t) boolean mask: query i (at position start + i) sees key j when j <= start + i,
    or when both lie in the prefix."""
    q = torch.arange(start, start + t, device=device)[:, None]
    k = torch.arange(start + t, device=device)[None, :]
    return (k <= q) | ((q < prefix) & (k < prefix))


def _fourier(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    f = 2 * math.pi * x @ w
    return torch.cat([f.cos(), f.sin()], dim=-1)
