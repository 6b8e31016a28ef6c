"""ImageBind (imagebind_huge): six encoders into one embedding space, as vlmzoo's own modules.

One ``Encoder`` per modality: a stem turning the input into tokens (a conv over patches, the
token table, or a linear over IMU windows), a CLS token and a learned position table, a stack
of pre-norm transformer blocks, a head (LayerNorm, one token, a linear projection into the shared
space) and the official post-processing (L2 normalisation times a fixed or learned scale).
convert.py maps the official checkpoint's names onto these.

What the official code does and this keeps (tests/data/imagebind/README.md, "Quirks"):
- attention is torch's MultiheadAttention; audio, depth, thermal and IMU add a learned key /
  value position (``add_bias_kv``), vision and text do not;
- trunk and head LayerNorms use eps 1e-6, the stems' LayerNorms torch's default 1e-5;
- an image is a two-frame still video (the Conv3d kernel spans two frames);
- the text is causal through a mask kept in the checkpoint, and pools the first position that
  holds the largest id (the end token);
- clips (audio always, video when given) are embedded one by one and averaged *after*
  normalising and scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")
TRUNK_EPS, STEM_EPS = 1e-6, 1e-5
MAX_LOGIT_SCALE = 100.0  # the official scaling clips exp(log scale) here
VIDEO_FRAMES = 2  # a still image is repeated to this many frames
TEXT_CONTEXT = 77
IMU_WINDOW, IMU_CHANNELS, IMU_SAMPLES = 8, 6, 2000  # 250 tokens of 6 channels x 8 samples
# the scales of the modalities whose scale is fixed (buffers in the checkpoint); text's is learned
FIXED_SCALES = {"audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}


@dataclass(frozen=True)
class ModalityConfig:
    width: int
    blocks: int
    heads: int
    tokens: int  # positions of the learned table: CLS + patches (text: the 77 positions)


@dataclass(frozen=True)
class ImageBindConfig:
    """``ImageBindModel``'s keyword arguments that shape the weights; imagebind_huge's by default."""

    out_dim: int = 1024
    vision: ModalityConfig = ModalityConfig(1280, 32, 16, 1 + 16 * 16)
    text: ModalityConfig = ModalityConfig(1024, 24, 16, TEXT_CONTEXT)
    audio: ModalityConfig = ModalityConfig(768, 12, 12, 1 + 12 * 19)
    depth: ModalityConfig = ModalityConfig(384, 12, 8, 1 + 14 * 14)
    thermal: ModalityConfig = ModalityConfig(768, 12, 12, 1 + 14 * 14)
    imu: ModalityConfig = ModalityConfig(512, 6, 8, 1 + IMU_SAMPLES // IMU_WINDOW)
    vocab_size: int = 49408

    @classmethod
    def from_kwargs(cls, kw: dict) -> ImageBindConfig:
        """From the official constructor's arguments (the ones a released checkpoint can vary)."""
        base = cls()
        parts = {m: ModalityConfig(kw.get(f"{m}_embed_dim", getattr(base, m).width),
                                   kw.get(f"{m}_num_blocks", getattr(base, m).blocks),
                                   kw.get(f"{m}_num_heads", getattr(base, m).heads), getattr(base, m).tokens)
                 for m in MODALITIES}
        return cls(out_dim=kw.get("out_embed_dim", base.out_dim), **parts)


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as the official blocks


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, bias_kv: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, add_bias_kv=bias_kv, batch_first=True)
        self.norm_1, self.norm_2 = nn.LayerNorm(dim, eps=TRUNK_EPS), nn.LayerNorm(dim, eps=TRUNK_EPS)
        self.mlp = Mlp(dim)

    def forward(self, x, mask=None):
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.norm_2(x))


class Encoder(nn.Module):
    """One modality from its model input to its vector in the shared space."""

    def __init__(self, modality: str, cfg: ModalityConfig, out_dim: int, vocab_size: int):
        super().__init__()
        d = cfg.width
        self.modality = modality
        if modality == "vision":
            self.stem = nn.Conv3d(3, d, (VIDEO_FRAMES, 14, 14), stride=(VIDEO_FRAMES, 14, 14), bias=False)
        elif modality == "text":
            self.stem = nn.Embedding(vocab_size, d)
            causal = torch.full((TEXT_CONTEXT, TEXT_CONTEXT), float("-inf")).triu(1)
            self.register_buffer("mask", causal)  # in the checkpoint: loaded, not trusted to this
        elif modality == "audio":
            self.stem = nn.Conv2d(1, d, 16, stride=10, bias=False)
        elif modality in ("depth", "thermal"):
            self.stem = nn.Conv2d(1, d, 16, stride=16, bias=False)
        else:
            self.stem = nn.Linear(IMU_CHANNELS * IMU_WINDOW, d, bias=False)
        self.stem_norm = nn.LayerNorm(d, eps=STEM_EPS) if modality in ("audio", "depth", "thermal", "imu") else None
        self.cls = nn.Parameter(torch.zeros(1, 1, d)) if modality != "text" else None
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, d))
        self.pre_norm = nn.LayerNorm(d, eps=TRUNK_EPS) if modality == "vision" else None
        bias_kv = modality not in ("vision", "text")
        self.blocks = nn.ModuleList(Block(d, cfg.heads, bias_kv) for _ in range(cfg.blocks))
        self.head_norm = nn.LayerNorm(d, eps=TRUNK_EPS)
        self.head = nn.Linear(d, out_dim, bias=False)
        if modality == "text":
            self.log_logit_scale = nn.Parameter(torch.tensor(0.0))
        elif modality in FIXED_SCALES:
            self.register_buffer("log_logit_scale", torch.tensor(FIXED_SCALES[modality]).log())
        else:
            self.log_logit_scale = None

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The model input as (B, positions, width) before the blocks."""
        if self.modality == "vision":
            x = x.unsqueeze(2).expand(-1, -1, VIDEO_FRAMES, -1, -1) if x.ndim == 4 else x
            x = self.stem(x).flatten(2).transpose(1, 2)
        elif self.modality == "text":
            return self.stem(x) + self.pos
        elif self.modality == "imu":
            b = x.shape[0]  # (B, 6, 2000) -> 250 windows of 6 channels x 8 samples, channel-major
            x = self.stem(x.unfold(-1, IMU_WINDOW, IMU_WINDOW).permute(0, 2, 1, 3).reshape(b, -1, IMU_CHANNELS * IMU_WINDOW))
        else:
            x = self.stem(x).flatten(2).transpose(1, 2)
        if self.stem_norm is not None:
            x = self.stem_norm(x)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos

    def head_output(self, inputs: torch.Tensor) -> torch.Tensor:
        """The projection into the shared space, before normalising and scaling (text: ids)."""
        x = self.tokens(inputs)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        mask = self.mask.to(x.dtype) if self.modality == "text" else None
        for block in self.blocks:
            x = block(x, mask)
        # text pools the first position holding the largest id (the end token); the others the CLS
        pooled = x[torch.arange(x.shape[0]), inputs.argmax(dim=-1)] if self.modality == "text" else x[:, 0]
        return self.head(self.head_norm(pooled))

    def scale(self) -> torch.Tensor | float:
        if self.log_logit_scale is None:
            return 1.0
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The official embedding: normalised, scaled, and averaged over clips when there are
        clips (audio (B, clips, 1, 128, 204); video (B, clips, 3, T, 224, 224))."""
        clips = x.ndim >= 5 and self.modality in ("vision", "audio")
        b = x.shape[0]
        if clips:
            x = x.flatten(0, 1)
        out = self.head_output(x)
        out = F.normalize(out, dim=-1) * self.scale()
        return out.view(b, -1, out.shape[-1]).mean(dim=1) if clips else out


class ImageBind(nn.Module):
    def __init__(self, config: ImageBindConfig):
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleDict({m: Encoder(m, getattr(config, m), config.out_dim, config.vocab_size)
                                       for m in MODALITIES})

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](x) for m, x in inputs.items()}
