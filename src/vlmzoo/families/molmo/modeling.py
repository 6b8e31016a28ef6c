"""Molmo's modules: its vision backbone (ours), around a transformers causal LM.

Molmo (allenai, github.com/allenai/molmo; Hugging Face allenai/Molmo-7B-D-0924 and -7B-O-0924):

- vision: an OpenAI CLIP ViT-L/14 at 336 px (23 of its 24 layers kept), run on a global crop
  and on overlapping tiles (processing.py). The features of two layers (``vit_layers`` -2 and -9)
  are put side by side per patch, a learned ``pad_embed`` is added to patches that are all or
  partly padding, each 2 x 2 neighbourhood is pooled by attention whose query is the
  neighbourhood's mean, and a SwiGLU MLP projects the result to the LLM's width.
- LLM: 7B-D is Qwen2-7B, 7B-O is OLMo-7B-1024 (norms after attention and MLP, RMS norms over the
  whole q and k). Both are transformers' own decoders here (``Qwen2ForCausalLM``,
  ``Olmo2ForCausalLM``), so the decode loop and the CPU fast paths serve Molmo as they serve any
  Qwen2. Molmo's embedding has 128 rows beyond the LM head's (``new_embedding``): the image
  tokens' rows in 7B-D.
- Image features are *added* to the embeddings of the ``<im_patch>`` tokens they belong to
  (``image_positions``), not substituted for them.

The official names of every tensor are in convert.py; crops and token layout in processing.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from vlmzoo.families.image_prompt import ImagePromptLM

VIT_LAYERS = (-2, -9)  # hf_molmo.py fixes these for every released checkpoint
POOL = 2  # 2 x 2 patches per pooled token
ADDED_ROWS = 128  # additional_vocab_size: the embedding's rows beyond embedding_size
# VisionBackboneConfig fields that only matter in training
TRAINING_ONLY = {"image_dropout_rate", "attention_dropout", "residual_dropout", "initializer_range"}


@dataclass(frozen=True)
class VisionConfig:
    """The vision backbone. Defaults are the released checkpoints' (hf_molmo.py fixes them in
    code; their config.json carries none); a config.json "vision_backbone" object overrides."""
    image_model_type: str = "openai"
    image_default_input_size: tuple[int, int] = (336, 336)
    image_patch_size: int = 14
    image_pos_patch_size: int = 14
    image_emb_dim: int = 1024
    image_num_heads: int = 16
    image_num_key_value_heads: int = 16
    image_num_layers: int = 23
    image_head_dim: int = 64
    image_mlp_dim: int = 4096
    image_mlp_activations: str = "quick_gelu"
    image_num_pos: int = 577
    image_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, raw: dict) -> VisionConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known - TRAINING_ONLY
        if unknown:
            raise ValueError(f"vision_backbone has unknown key(s) {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        grid = self.grid
        if self.image_model_type != "openai":
            raise ValueError(f"vision backbone {self.image_model_type!r}: only the CLIP ('openai') one of the "
                             "released checkpoints is implemented")
        if self.image_mlp_activations != "quick_gelu":
            raise ValueError(f"vision MLP activation {self.image_mlp_activations!r}: only quick_gelu is implemented")
        if self.image_num_pos != grid * grid + 1 or self.image_pos_patch_size != self.image_patch_size:
            raise ValueError(f"{self.image_num_pos} positions for a {grid} x {grid} patch grid: resized position "
                             "embeddings are not implemented")
        if self.image_num_layers < max(-v for v in VIT_LAYERS):
            raise ValueError(f"{self.image_num_layers} ViT layers; Molmo reads layers {VIT_LAYERS}")
        if self.image_num_heads != self.image_num_key_value_heads:
            raise ValueError("a ViT with fewer key/value heads than query heads is not implemented")

    @property
    def grid(self) -> int:
        """Patches per side of one crop (24)."""
        return self.image_default_input_size[0] // self.image_patch_size


# -- the ViT (CLIP, as Molmo's checkpoint names it) --------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention with biases; its input may be wider than its output (pooling)."""

    def __init__(self, in_dim: int, heads: int, head_dim: int, out_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.wq = nn.Linear(in_dim, heads * head_dim)
        self.wk = nn.Linear(in_dim, heads * head_dim)
        self.wv = nn.Linear(in_dim, heads * head_dim)
        self.wo = nn.Linear(heads * head_dim, out_dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        keys = queries if keys is None else keys
        b, n, m = queries.shape[0], queries.shape[1], keys.shape[1]
        q = self.wq(queries).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.wk(keys).view(b, m, self.heads, self.head_dim).transpose(1, 2)
        v = self.wv(keys).view(b, m, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.w1(x)
        return self.w2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class Block(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.attention = Attention(c.image_emb_dim, c.image_num_heads, c.image_head_dim, c.image_emb_dim)
        self.feed_forward = FeedForward(c.image_emb_dim, c.image_mlp_dim)
        self.attention_norm = nn.LayerNorm(c.image_emb_dim, eps=c.image_norm_eps)
        self.ffn_norm = nn.LayerNorm(c.image_emb_dim, eps=c.image_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))


class Blocks(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(c) for _ in range(c.image_num_layers))


class VisionTransformer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.empty(c.image_emb_dim))
        self.positional_embedding = nn.Parameter(torch.empty(c.image_num_pos, c.image_emb_dim))
        # a patch's pixels flattened (row, column, channel): processing.py lays them out so
        self.patch_embedding = nn.Linear(c.image_patch_size ** 2 * 3, c.image_emb_dim, bias=False)
        self.pre_ln = nn.LayerNorm(c.image_emb_dim, eps=c.image_norm_eps)
        self.transformer = Blocks(c)

    def forward(self, patches: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """The hidden states after the blocks ``layers`` (negative: from the end), class token
        included; blocks after the last one asked for are not run (the released models never
        read their 23rd)."""
        blocks = self.transformer.resblocks
        wanted = [i % len(blocks) for i in layers]
        x = self.patch_embedding(patches)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = self.pre_ln(x + self.positional_embedding.to(x.dtype))
        kept = {}
        for i, block in enumerate(blocks[: max(wanted) + 1]):
            x = block(x)
            if i in wanted:
                kept[i] = x
        return [kept[i] for i in wanted]


class ImageProjector(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, out_dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class VisionBackbone(nn.Module):
    def __init__(self, c: VisionConfig, llm_dim: int, llm_mlp_hidden: int):
        super().__init__()
        self.config = c
        wide = c.image_emb_dim * len(VIT_LAYERS)
        self.image_vit = VisionTransformer(c)
        self.image_pooling_2d = Attention(wide, c.image_num_heads, c.image_head_dim, c.image_emb_dim)
        self.image_projector = ImageProjector(c.image_emb_dim, llm_mlp_hidden, llm_dim)
        self.pad_embed = nn.Parameter(torch.empty(2, wide))  # all padding, part padding

    def forward(self, crops: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B, n_crops, patches, pixels) crops, (B, n_crops, patches) fractions of real pixels
        -> (B, n_crops, pooled tokens, llm_dim). A crop that is all -1 is batch padding: it is
        not run and its features are zeros (no token reads them)."""
        b, n, p, d = crops.shape
        flat = crops.reshape(b * n, p, d)
        real = ~(flat == -1).all(dim=(1, 2))
        wide = self.pad_embed.shape[-1]
        features = flat.new_zeros(b * n, p, wide)
        if real.any():
            hidden = self.image_vit(flat[real], VIT_LAYERS)
            features[real] = torch.cat(hidden, dim=-1)[:, 1:]  # class token dropped
        masks = masks.reshape(b * n, p, 1).to(features.dtype)
        all_pad = masks == 0
        part_pad = (masks < 1) & ~all_pad  # a mask of -1 counts as part padding, as released
        features = features + self.pad_embed[0] * all_pad + self.pad_embed[1] * part_pad
        pooled = self.image_pooling_2d(*_neighbourhoods(features, self.config.grid))
        tokens = pooled.view(b, n, -1, pooled.shape[-1])
        return self.image_projector(tokens)


def _neighbourhoods(features: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(crops, grid*grid, C) -> each POOL x POOL neighbourhood's mean (the query) and its patches."""
    c = features.shape[-1]
    x = features.view(-1, grid, grid, c)
    pad = (-grid) % POOL  # an odd grid is padded right and bottom with zeros
    if pad:
        x = F.pad(x, (0, 0, 0, pad, 0, pad))
    side = x.shape[1] // POOL
    x = x.view(-1, side, POOL, side, POOL, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, POOL * POOL, c)
    return x.mean(dim=1, keepdim=True), x


class MolmoMixin(ImagePromptLM):
    """What Molmo adds to a transformers causal LM: the vision backbone, its features added to
    the ``<im_patch>`` embeddings, and an LM head narrower than the embedding."""

    adds_image_features = True

    def attach_vision(self, vision: VisionConfig, embedding_size: int, mlp_hidden: int) -> None:
        cfg = self.config
        self.vision_backbone = VisionBackbone(vision, cfg.hidden_size, mlp_hidden)
        self.lm_head = nn.Linear(cfg.hidden_size, embedding_size, bias=False)

    def encode_images(self, pixel_values, image_masks=None, image_sizes=None):
        return self.vision_backbone(pixel_values, image_masks)


@cache
def molmo_classes():
    """The two LM-backed classes, built on first use (transformers imports are slow)."""
    from transformers import Olmo2ForCausalLM, Qwen2ForCausalLM

    class MolmoQwen2(MolmoMixin, Qwen2ForCausalLM):
        """7B-D (and 72B): Qwen2 with Molmo's vision."""

    class MolmoOlmo2(MolmoMixin, Olmo2ForCausalLM):
        """7B-O: OLMo-7B-1024 (OLMo 2's block) with Molmo's vision."""

    return {"qwen2": MolmoQwen2, "olmo2": MolmoOlmo2}
