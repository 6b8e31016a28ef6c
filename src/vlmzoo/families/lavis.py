"""LAVIS's BLIP-2 parts as transformers modules, for the families whose official code builds on
them (MiniGPT-4, SEED): one piece of code for both.

- EVA ViT-g/14 (LAVIS ``eva_vit.py``, ``create_eva_vit_g``) is transformers' ``Blip2VisionModel``
  (the module transformers' BLIP-2 port built for it): pre-norm blocks, exact GELU, one fused qkv
  projection whose bias is ``cat(q_bias, zeros, v_bias)``, a class token and learned positions,
  no final norm. Its ``post_layernorm`` is BLIP-2's ``ln_vision``, at LAVIS's eps (torch's
  default 1e-5; transformers' BLIP-2 gives it the ViT's 1e-6).
- The query side of LAVIS's BERT Q-Former (``Qformer.bert``: LayerNorm on the queries,
  cross-attention to the ViT features every 2nd layer, the ``*_query`` feed-forwards) is
  transformers' ``Blip2QFormerModel``.
- ``eva_rows`` and ``qformer_rows``: the official files' tensor names (LAVIS's ``eva_vit_g.pth``,
  ``Qformer.bert.*`` in any checkpoint that saved the Q-Former) as rows of a family's table
  (checkpoints.py); EVA's separate q / v biases go to ``QVBiases`` holders and are folded into the
  fused bias after loading (``fold_qv_biases``).
- ``resize_positions``: the 224 px position table interpolated once for another input size, as
  LAVIS's ``interpolate_pos_embed`` does at load.
- ``read_settings``: the JSON file beside a folder of official files (minigpt4.json, seed.json)
  that names files kept elsewhere and the sizes the official code hard-codes (``vit``: EVA's,
  ``qformer``: BERT's) for a checkpoint smaller than the released one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vlmzoo.errors import UnknownModelError
from vlmzoo.families.checkpoints import Ignore

EVA_VIT_G = "eva_vit_g.pth"
EVA_VIT_G_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth"
# create_eva_vit_g's EVA ViT-g (224 px as the file is stored; it holds 40 blocks, 39 are built)
EVA_VIT_G_SIZES = {"embed_dim": 1408, "depth": 39, "num_heads": 16, "mlp_ratio": 4.3637, "patch_size": 14}
# bert-base-uncased's sizes: the Q-Former's (init_Qformer reads BertConfig.from_pretrained("bert-base-uncased"))
BERT_BASE_SIZES = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
FILE_IMAGE_SIZE = 224  # the resolution eva_vit_g.pth's positions are for
LN_VISION_EPS = 1e-5  # ln_vision: blip2.LayerNorm, torch's default eps

Q = r"Qformer\.bert\.encoder\.layer\.(\d+)\."


def eva_rows(tower: str = "visual_encoder", depth: int = EVA_VIT_G_SIZES["depth"], prefix: str = "",
             biases: str = "qkv_biases") -> list:
    """eva_vit_g.pth's names (LAVIS eva_vit.VisionTransformer's), under ``prefix`` in the file
    (``"visual_encoder\\."`` where a checkpoint saved the tower inside a model) -> ``tower``'s
    Blip2VisionModel; each block's q / v biases -> ``biases``.N (a ``QVBiases`` holder).
    ``depth``: the blocks the model builds (the file's next one is never read)."""
    p, v = prefix, tower
    return [
        (rf"{p}cls_token", f"{v}.embeddings.class_embedding"),
        (rf"{p}pos_embed", f"{v}.embeddings.position_embedding"),
        (rf"{p}patch_embed\.proj\.(weight|bias)", rf"{v}.embeddings.patch_embedding.\1"),
        Ignore(rf"{p}blocks\.{depth}\..+",
               "EVA-CLIP-g's last block: BLIP-2 reads the second-to-last layer's output, and create_eva_vit_g "
               "builds one block fewer than the file holds (loaded with strict=False)"),
        Ignore(rf"{p}(norm|fc_norm|head)\.(weight|bias)",
               "an EVA-CLIP final norm or head, if the file holds one: LAVIS's VisionTransformer builds none "
               "(its norm / fc_norm / head lines are commented out) and loads the file with strict=False"),
        (rf"{p}blocks\.(\d+)\.norm([12])\.(weight|bias)", rf"{v}.encoder.layers.\1.layer_norm\2.\3"),
        (rf"{p}blocks\.(\d+)\.attn\.qkv\.weight", rf"{v}.encoder.layers.\1.self_attn.qkv.weight"),
        (rf"{p}blocks\.(\d+)\.attn\.([qv]_bias)", rf"{biases}.\1.\2"),  # folded into qkv.bias = q | 0 | v
        (rf"{p}blocks\.(\d+)\.attn\.proj\.(weight|bias)", rf"{v}.encoder.layers.\1.self_attn.projection.\2"),
        (rf"{p}blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", rf"{v}.encoder.layers.\1.mlp.\2.\3"),
    ]


def qformer_rows(qformer: str = "qformer", ln_vision: str = "visual_encoder.post_layernorm",
                 query_tokens: str = "query_tokens") -> list:
    """The query side of LAVIS's Q-Former and BLIP-2's ln_vision and query tokens, as any LAVIS
    checkpoint names them -> Blip2QFormerModel ``qformer``, the tower's post_layernorm and
    ``query_tokens``. BERT's text side and position index are not rows here: each family says
    whether its files hold them (an Ignore row with its reason)."""
    return [
        ("query_tokens", query_tokens),
        (r"ln_vision\.(weight|bias)", rf"{ln_vision}.\1"),
        (r"Qformer\.bert\.embeddings\.LayerNorm\.(weight|bias)", rf"{qformer}.layernorm.\1"),
        (Q + r"(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)",
         rf"{qformer}.encoder.layer.\1.\2.attention.\3.\4"),
        (Q + r"(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)",
         rf"{qformer}.encoder.layer.\1.\2.output.\3.\4"),
        (Q + r"(intermediate_query|output_query)\.(dense|LayerNorm)\.(weight|bias)",
         rf"{qformer}.encoder.layer.\1.\2.\3.\4"),
    ]


BERT_TEXT_SIDE = (r"Qformer\.(cls\..+|bert\.embeddings\.(word|position)_embeddings\.weight"
                  r"|bert\.encoder\.layer\.\d+\.(intermediate|output)\.(dense|LayerNorm)\.(weight|bias))")
BERT_POSITION_IDS = r"Qformer\.bert\.embeddings\.position_ids"


def clip_pixels(image, size: int, resample: str = "bicubic"):
    """(3, size, size) float32, as LAVIS's and SEED's torchvision transforms make them: the image
    squeezed to size x size with PIL (``resample``: "bicubic" for Blip2ImageEvalProcessor and
    SEED's ImageTokenizer, "bilinear" for torchvision's default Resize), ToTensor (/255), CLIP's
    mean and std, all in float32 as torch computes them."""
    import numpy as np
    from PIL import Image
    from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    method = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[resample]
    x = np.asarray(image.convert("RGB").resize((size, size), method), np.float32) / np.float32(255)
    x = (x - np.array(OPENAI_CLIP_MEAN, np.float32)) / np.array(OPENAI_CLIP_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def eva_config(sizes: dict | None = None, image_size: int = FILE_IMAGE_SIZE):
    """Blip2VisionConfig of create_eva_vit_g's tower (``sizes`` override EVA_VIT_G_SIZES: a
    checkpoint smaller than the released one), with qkv_bias off: eva's q and v biases are folded
    in after loading."""
    from transformers import Blip2VisionConfig

    s = {**EVA_VIT_G_SIZES, **(sizes or {})}
    config = Blip2VisionConfig(hidden_size=s["embed_dim"], num_hidden_layers=s["depth"],
                               num_attention_heads=s["num_heads"], patch_size=s["patch_size"],
                               intermediate_size=int(s["embed_dim"] * s["mlp_ratio"]), image_size=image_size,
                               layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=False)
    config._attn_implementation = "sdpa"
    return config


def qformer_config(sizes: dict | None, width: int):
    """Blip2QFormerConfig of init_Qformer's BERT (``sizes`` override bert-base-uncased's), cross-
    attending every 2nd layer to features of ``width``."""
    from transformers import Blip2QFormerConfig

    config = Blip2QFormerConfig(**{**BERT_BASE_SIZES, **(sizes or {})}, hidden_act="gelu", layer_norm_eps=1e-12,
                                cross_attention_frequency=2, encoder_hidden_size=width)
    config._attn_implementation = "sdpa"
    return config


def eva_tower(config):
    """The EVA ViT-g with ln_vision as its post_layernorm (LAVIS's eps)."""
    from transformers import Blip2VisionModel

    tower = Blip2VisionModel(config)
    tower.post_layernorm.eps = LN_VISION_EPS
    return tower


def qv_bias_holders(width: int, depth: int) -> nn.ModuleList:
    return nn.ModuleList(QVBiases(width) for _ in range(depth))


class QVBiases(nn.Module):
    """EVA's separate q and v biases of one block, as the official file holds them, until they
    are folded into the fused qkv bias."""

    def __init__(self, width: int):
        super().__init__()
        self.q_bias = nn.Parameter(torch.empty(width))
        self.v_bias = nn.Parameter(torch.empty(width))


def fold_qv_biases(tower, biases) -> None:
    """Each block's qkv bias: cat(q_bias, zeros, v_bias), as the official attention builds it."""
    for layer, b in zip(tower.encoder.layers, biases):
        q, v = b.q_bias.detach(), b.v_bias.detach()
        layer.self_attn.qkv.bias = nn.Parameter(torch.cat([q, torch.zeros_like(v), v]), requires_grad=False)
    tower.config.qkv_bias = True


def resize_positions(tower, image_size: int) -> None:
    """The tower at ``image_size``: its position table interpolated once, bicubic, in float32
    (the official interpolate_pos_embed; transformers' interpolate_pos_encoding is that arithmetic)."""
    embeddings = tower.embeddings
    if image_size == embeddings.image_size:
        return
    table = embeddings.position_embedding.detach()
    probe = table.new_empty(1, (image_size // embeddings.patch_size) ** 2 + 1, table.shape[-1])
    embeddings.position_embedding = nn.Parameter(table.float(), requires_grad=False)
    resized = embeddings.interpolate_pos_encoding(probe.float(), image_size, image_size)
    embeddings.position_embedding = nn.Parameter(resized.to(table.dtype).contiguous(), requires_grad=False)
    embeddings.image_size = tower.config.image_size = image_size
    embeddings.num_patches = (image_size // embeddings.patch_size) ** 2
    embeddings.num_positions = embeddings.num_patches + 1


def read_settings(file: Path, keys: tuple[str, ...]) -> dict:
    """The settings ``file`` holds ({} when there is none): an object with keys among ``keys``,
    ``vit`` and ``qformer`` (if allowed) objects of EVA's and BERT's size names."""
    if not file.is_file():
        return {}
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UnknownModelError(f"{file}: not valid JSON ({e})") from None
    unknown = sorted(set(raw) - set(keys)) if isinstance(raw, dict) else None
    if unknown is None or unknown:
        raise UnknownModelError(f"{file}: expected an object with keys among {', '.join(keys)}"
                                + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    for key, sizes in (("vit", EVA_VIT_G_SIZES), ("qformer", BERT_BASE_SIZES)):
        value = raw.get(key, {})
        if not isinstance(value, dict) or set(value) - set(sizes):
            raise UnknownModelError(f"{file}: \"{key}\" takes sizes among {', '.join(sizes)}")
    return raw


def settings_path(folder: Path, value) -> Path:
    """A path a settings file gives: relative to the folder, ~ expanded."""
    return (folder / Path(str(value)).expanduser()).resolve()


def config_json(folder: Path | None) -> dict:
    """A transformers-format folder's config.json ({} when there is none or it is not JSON)."""
    if folder is None:
        return {}
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
