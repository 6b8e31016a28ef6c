"""SEED's official files -> the modules in modeling.py, through one table.

The official code (configs/tokenizer/seed_llama_tokenizer_hf.yaml, configs/llm/*.yaml,
models/seed_llama_tokenizer.py) assembles SEED-LLaMA from five sources, and so does vlmzoo:

- ``seed_tokenizer/`` (AILab-CVC/seed-tokenizer-2): ``seed_quantizer.pt``, a bare pickled state
  dict of ``Blip2QformerQuantizer`` without its ViT (ln_vision, the query tokens, the causal
  Q-Former's query side, the codebook and the task layers, the de-tokenizer), and the LLaMA
  SentencePiece tokenizer with the image tokens added;
- ``eva_vit_g.pth``: LAVIS's EVA ViT-g/14 (create_eva_vit_g downloads it), as for MiniGPT-4;
- ``bert-base-uncased``: the Q-Former's sizes (init_Qformer reads its config; its weights are
  overwritten by seed_quantizer.pt). Optional: BERT-base's sizes are built in;
- the LLM (SEED-LLaMA only): a transformers-format Llama folder (AILab-CVC/seed-llama-8b-sft,
  AILab-CVC/seed-llama-14b-sft), safetensors or pickled ``pytorch_model*.bin``;
- the unCLIP decoder (``imagine`` and ``decode_codes`` only): a diffusers
  StableUnCLIPImg2ImgPipeline folder (stabilityai/stable-diffusion-2-1-unclip), loaded when first
  used.

A folder holding them loads by ``vlmzoo.load(folder)``: ``seed_tokenizer/`` (or the tokenizer's
files at its top), ``eva_vit_g.pth``, optionally ``bert-base-uncased/``, one LLM folder (none: the
SEED tokenizer alone) and ``stable-diffusion-2-1-unclip/``. An optional ``seed.json`` names files
kept elsewhere or renamed (``tokenizer``, ``vit_model``, ``llm``, ``diffusion``), the sizes a
checkpoint smaller than the released one has (``vit``: create_eva_vit_g's ``embed_dim``,
``depth``, ``num_heads``, ``mlp_ratio``; ``qformer``: BERT's sizes), which the official code
hard-codes, and the prompt format (``prompt_format``: ``vicuna`` for the 8B, ``llama2`` for the
14B; otherwise read off the LLM folder's name, then its config). Pickles are read only with
``torch.load(weights_only=True)`` and kept as safetensors in vlmzoo's cache (families/pickled.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vlmzoo.errors import UnknownModelError
from vlmzoo.families.checkpoints import (
    Ignore,
    hand_back,
    load_official,
    plan,
    rebuild_rotary,
    shapes,
    view,
)
from vlmzoo.families.lavis import (
    BERT_BASE_SIZES,
    BERT_POSITION_IDS,
    BERT_TEXT_SIDE,
    EVA_VIT_G,
    EVA_VIT_G_SIZES,
    EVA_VIT_G_URL,
    config_json,
    eva_config,
    eva_rows,
    qformer_config,
    qformer_rows,
    settings_path,
)
from vlmzoo.families.lavis import read_settings as lavis_settings
from vlmzoo.families.seed.processing import LLAMA2, VICUNA, PromptFormat

QUANTIZER = "seed_quantizer.pt"
TOKENIZER_DIR = "seed_tokenizer"
BERT_DIR = "bert-base-uncased"
DIFFUSION_DIR = "stable-diffusion-2-1-unclip"
SETTINGS = "seed.json"
SETTING_KEYS = ("tokenizer", "vit_model", "llm", "diffusion", "vit", "qformer", "prompt_format")
FORMATS = {"vicuna": VICUNA, "llama2": LLAMA2}
URLS = {QUANTIZER: "https://huggingface.co/AILab-CVC/seed-tokenizer-2 (seed_quantizer.pt)", EVA_VIT_G: EVA_VIT_G_URL}
DECODER_HEADS = 12  # the de-tokenizer's timm Blocks: num_heads=12, hard-coded
T = "image_tokenizer"  # where SEED-LLaMA keeps the image tokenizer
VIT_PREFIX = "visual_encoder."  # eva_vit_g.pth's tensors are the official quantizer's visual_encoder.*
B = r"blocks_image\.(\d+)\."
TRAINING_ONLY = (r"(pos_embed_text|blocks_text\..+|distill_text_proj\..+|Reverse_Qformer(_text)?\..+"
                 r"|reverse_tokens(_text)?|clip_model\..+|text_encoder\..+|vision_proj\..+|text_proj\..+"
                 r"|itm_head\..+|temp)")


def table(vit_depth: int = EVA_VIT_G_SIZES["depth"], prefix: str = "") -> list:
    """Official tensor names -> ours, for every source at once (their names do not collide).
    ``prefix``: where the image tokenizer sits in the model ("" for the SEED tokenizer alone,
    "image_tokenizer." in SEED-LLaMA)."""
    p = prefix
    # eva_vit_g.pth under the name create_eva_vit_g loads it as: the quantizer's visual_encoder
    return eva_rows(f"{p}visual_encoder", vit_depth, prefix=re.escape(VIT_PREFIX), biases="qkv_biases") + qformer_rows(
        f"{p}qformer", f"{p}visual_encoder.post_layernorm", f"{p}query_tokens") + [
        # the rest of seed_quantizer.pt (Blip2QformerQuantizer's names, without visual_encoder.*)
        Ignore(BERT_POSITION_IDS, "BERT's position index buffer, saved along: the query-only Q-Former has no "
                                  "position embeddings (Blip2QformerQuantizer removes them)"),
        Ignore(BERT_TEXT_SIDE, "BERT's text side (word / position embeddings, text feed-forwards, LM head), if the "
                               "file holds it: Blip2QformerQuantizer removes these modules and loads with strict=False"),
        Ignore(TRAINING_ONLY, "modules of SEED's tokenizer training (SEED_Tokenizer/lavis: the causal Q-Former's "
                              "contrastive heads, the text-distillation blocks and Q-Formers, the frozen CLIP towers), "
                              "if the file holds them: the inference class builds none and loads with strict=False"),
        (r"quantize\.embedding\.weight", f"{p}codebook.weight"),
        (r"(encode|decode)_task_layer\.([02])\.(weight|bias)", rf"{p}\1_task_layer.\2.\3"),
        Ignore(r"(pos_embed|blocks\.\d+\..+)",
               "recon_s: the blocks that reconstruct the causal embeddings from the codes in training; "
               "neither encoding nor get_codebook_entry runs them"),
        (r"pos_embed_image", f"{p}pos_embed_image"),
        (B + r"norm([12])\.(weight|bias)", rf"{p}blocks_image.layers.\1.layer_norm\2.\3"),
        (B + r"attn\.qkv\.(weight|bias)", rf"{p}blocks_image.layers.\1.self_attn.qkv.\2"),
        (B + r"attn\.proj\.(weight|bias)", rf"{p}blocks_image.layers.\1.self_attn.projection.\2"),
        (B + r"mlp\.(fc[12])\.(weight|bias)", rf"{p}blocks_image.layers.\1.mlp.\2.\3"),
        (r"image_down\.([024])\.weight", rf"{p}image_down.\1.weight"),
        (r"distill_image_proj\.(weight|bias)", rf"{p}distill_image_proj.\1"),
        # the LLM folder (models/llama_xformer.LlamaForCausalLM's names: transformers 4.30 Llama)
        Ignore(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",
               "rotary frequency buffers llama_xformer.py saves (persistent): computed from the config"),
        (r"(model\.(embed_tokens|layers|norm)\..+|lm_head\.weight)", r"\1"),
    ]


# -- the folder ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where each of SEED's files is."""
    folder: Path
    settings: dict
    tokenizer: Path  # the folder with seed_quantizer.pt and the LLaMA tokenizer files
    vit: Path  # eva_vit_g.pth
    bert: Path | None  # bert-base-uncased (config.json): the Q-Former's sizes
    llm: Path | None  # None: the SEED tokenizer alone
    diffusion: Path | None  # stable-diffusion-2-1-unclip (diffusers)

    @property
    def quantizer(self) -> Path:
        return self.tokenizer / QUANTIZER

    @classmethod
    def read(cls, path: Path) -> Layout:
        folder = Path(path)
        if not folder.is_dir():
            raise UnknownModelError(f"{folder}: not a folder")
        settings = read_settings(folder)
        if "tokenizer" in settings:
            tokenizer = _path(folder, settings["tokenizer"])
        else:
            tokenizer = folder / TOKENIZER_DIR if (folder / TOKENIZER_DIR / QUANTIZER).is_file() else folder
        if not (tokenizer / QUANTIZER).is_file():
            where = f"tokenizer in {SETTINGS} names {tokenizer}" if "tokenizer" in settings else \
                f"{folder} holds neither {TOKENIZER_DIR}/{QUANTIZER} nor {QUANTIZER}"
            raise UnknownModelError(f"the SEED tokenizer is missing: {where} (AILab-CVC/seed-tokenizer-2, as "
                                    f"{TOKENIZER_DIR}/; or its folder as \"tokenizer\" in {SETTINGS})")
        vit = _path(folder, settings["vit_model"]) if "vit_model" in settings else folder / EVA_VIT_G
        if not vit.is_file() and "vit_model" not in settings and (tokenizer / EVA_VIT_G).is_file():
            vit = tokenizer / EVA_VIT_G
        if not vit.is_file():
            where = f"vit_model in {SETTINGS} names {vit}" if "vit_model" in settings else f"{folder} holds no {EVA_VIT_G}"
            raise UnknownModelError(f"the vision tower is missing: {where} ({EVA_VIT_G_URL}; or its path as "
                                    f"\"vit_model\" in {SETTINGS})")
        bert = folder / BERT_DIR if (folder / BERT_DIR / "config.json").is_file() else None
        return cls(folder, settings, tokenizer, vit, bert, _llm_folder(folder, settings), _diffusion(folder, settings))

    @property
    def prompt_format(self) -> PromptFormat:
        """vicuna (8B: Vicuna-7B based) or llama2 (14B: LLaMA2-chat-13B based): the settings', else
        the LLM folder's name (seed_llama_8b_sft / seed-llama-14b-sft), else its config (a LLaMA-2
        era config.json carries num_key_value_heads; the 8B's Vicuna one does not)."""
        if "prompt_format" in self.settings:
            return FORMATS[self.settings["prompt_format"]]
        name = self.llm.name.lower() if self.llm else ""
        if re.search(r"(^|[-_])14b([-_]|$)", name):
            return LLAMA2
        if re.search(r"(^|[-_])8b([-_]|$)", name):
            return VICUNA
        return LLAMA2 if "num_key_value_heads" in _config(self.llm) else VICUNA


def read_settings(folder: Path) -> dict:
    raw = lavis_settings(folder / SETTINGS, SETTING_KEYS)
    if raw.get("prompt_format", "vicuna") not in FORMATS:
        raise UnknownModelError(f"{folder / SETTINGS}: \"prompt_format\" is one of {', '.join(FORMATS)}")
    return raw


_path = settings_path
_config = config_json


def _llm_folder(folder: Path, settings: dict) -> Path | None:
    if "llm" in settings:
        llm = _path(folder, settings["llm"])
        if _config(llm).get("model_type") != "llama":
            raise UnknownModelError(f"llm in {SETTINGS} names {llm}: not a transformers-format Llama folder "
                                    "(config.json with model_type \"llama\")")
        return llm
    found = sorted(p for p in folder.iterdir() if p.is_dir() and _config(p).get("model_type") == "llama")
    if len(found) > 1:
        raise UnknownModelError(f"{folder}: {len(found)} language model folders ({', '.join(p.name for p in found)}); "
                                f"keep one beside the SEED tokenizer, or name it as \"llm\" in {SETTINGS}")
    return found[0] if found else None


def _diffusion(folder: Path, settings: dict) -> Path | None:
    if "diffusion" in settings:
        return _path(folder, settings["diffusion"])
    if (folder / DIFFUSION_DIR / "model_index.json").is_file():
        return folder / DIFFUSION_DIR
    for p in sorted(folder.iterdir()):
        index = p / "model_index.json"
        if p.is_dir() and index.is_file() and "StableUnCLIPImg2ImgPipeline" in index.read_text(encoding="utf-8"):
            return p
    return None


# -- configurations --------------------------------------------------------------------------------


def bert_sizes(layout: Layout) -> dict:
    """The Q-Former's sizes: bert-base-uncased's config where the folder has one (what the official
    init_Qformer reads), else BERT-base's; the settings' over both."""
    sizes = dict(BERT_BASE_SIZES)
    if layout.bert is not None:
        raw = _config(layout.bert)
        sizes.update({k: raw[k] for k in BERT_BASE_SIZES if k in raw})
    return {**sizes, **layout.settings.get("qformer", {})}


def quantizer_shapes(layout: Layout) -> dict[str, tuple]:
    """seed_quantizer.pt's tensor shapes, from the pickle's metadata (memory-mapped, no data read)."""
    from vlmzoo.families.pickled import read_pickle

    return {k: tuple(v.shape) for k, v in read_pickle(layout.quantizer).items()}


def image_tokenizer(layout: Layout):
    """The image tokenizer at the folder's sizes (on the meta device), and its q / v bias holders."""
    found = quantizer_shapes(layout)
    for name in ("query_tokens", "quantize.embedding.weight", "distill_image_proj.weight"):
        if name not in found:
            raise UnknownModelError(f"{layout.quantizer}: holds no {name}: not SEED's seed_quantizer.pt")
    return tokenizer_modules(found, layout.settings.get("vit", {}), bert_sizes(layout))


def tokenizer_modules(found: dict[str, tuple], vit: dict | None = None, qformer: dict | None = None):
    """The image tokenizer for seed_quantizer.pt's tensor shapes ``found`` (queries, codebook,
    de-tokenizer depth and output width are read off them), EVA's sizes ``vit`` and BERT's
    ``qformer`` (both default to the released ones), on the meta device; and its q / v bias holders."""
    import torch
    from transformers import Blip2VisionConfig

    from vlmzoo.families.lavis import qv_bias_holders
    from vlmzoo.families.seed.modeling import ImageTokenizer

    vision = eva_config(vit or {})
    sizes = {**BERT_BASE_SIZES, **(qformer or {})}
    width = sizes["hidden_size"]
    decoder = Blip2VisionConfig(hidden_size=width, intermediate_size=4 * width, num_attention_heads=DECODER_HEADS,
                                num_hidden_layers=len({k.split(".")[1] for k in found if k.startswith("blocks_image.")}),
                                layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True)
    decoder._attn_implementation = "sdpa"
    queries, codes = found["query_tokens"][1], found["quantize.embedding.weight"]
    with torch.device("meta"):
        module = ImageTokenizer(vision, qformer_config(sizes, vision.hidden_size), decoder, queries=queries,
                                codebook=codes[0], code_dim=codes[1], image_features=found["distill_image_proj.weight"][0])
        holders = qv_bias_holders(vision.hidden_size, vision.num_hidden_layers)
    return module, holders


def text_config(llm: Path):
    from transformers import LlamaConfig

    raw = _config(llm)
    if raw.get("model_type") != "llama":
        raise UnknownModelError(f"{llm}: SEED-LLaMA's LLM is a Llama, not {raw.get('model_type')}")
    pad = raw.get("pad_token_id")
    if pad is not None and not 0 <= pad < raw.get("vocab_size", 0):
        raw["pad_token_id"] = None  # the 8B's -1 (Vicuna's) names no token
    return adapted(LlamaConfig.from_dict(raw))


def adapted(config):
    """The LLM's config as vlmzoo runs it: llama_xformer.py (the official model) has no
    pretraining_tp slicing (the 14B's config says 2), nor has transformers' Llama; the 8B's
    pad_token_id -1 (Vicuna's) names no token; the configs' use_cache false (a training setting)
    would make generation recompute the prompt at every token."""
    config.pretraining_tp = 1
    config.use_cache = True
    if config.pad_token_id is not None and not 0 <= config.pad_token_id < config.vocab_size:
        config.pad_token_id = None
    config._attn_implementation = "sdpa"
    return config


def build(layout: Layout):
    """(the model on the meta device, its holders, the image tokenizer inside it): SEED-LLaMA
    (transformers' Llama with the image tokenizer attached) or the image tokenizer alone."""
    tokenizer, biases = image_tokenizer(layout)
    return assemble(tokenizer, biases, text_config(layout.llm) if layout.llm is not None else None)


def assemble(tokenizer, biases, llm_config=None):
    """(model, holders, image tokenizer) of the built parts: the tokenizer alone without an LLM."""
    import torch
    from torch import nn

    from vlmzoo.families.seed.modeling import seed_llama_class

    holders = nn.Module()
    holders.qkv_biases = biases
    if llm_config is None:
        return tokenizer, holders, tokenizer
    config = llm_config
    with torch.device("meta"):
        model = seed_llama_class()(config)
    rebuild_rotary(model, config)
    model.attach_image_tokenizer(tokenizer)
    return model, holders, tokenizer


def sources(layout: Layout, prefix: str) -> list[tuple[Path, str, tuple[str, ...], tuple[str, ...]]]:
    """(safetensors folder, the prefix its names take in the official model, the model paths it
    fills, the holders it fills) per source file."""
    from vlmzoo.families.pickled import converted, folder_weights

    p = prefix
    out = [(converted(layout.vit), VIT_PREFIX, (f"{p}visual_encoder.embeddings", f"{p}visual_encoder.encoder"),
            ("qkv_biases",)),
           (converted(layout.quantizer), "", tuple(f"{p}{n}" for n in (
               "visual_encoder.post_layernorm", "query_tokens", "qformer", "encode_task_layer", "codebook",
               "decode_task_layer", "pos_embed_image", "blocks_image", "image_down", "distill_image_proj")), ())]
    if layout.llm is not None:
        out.append((folder_weights(layout.llm, "the language model folder"), "", ("model", "lm_head"), ()))
    return out


def check(layout: Layout, model, holders, prefix: str) -> list[tuple]:
    """Every source planned from its headers before any weight is read; each model tensor filled
    exactly once. Returns (folder, name prefix, view, parameter paths) per source."""
    depth = len(_tokenizer_of(model, prefix).visual_encoder.encoder.layers)
    tab = table(depth, prefix)
    planned, problems, filled = [], [], []
    for folder, names_prefix, paths, names in sources(layout, prefix):
        part, handed = view(model, paths, holders, names)
        expected = {k: tuple(v.shape) for k, v in part.state_dict().items()}
        result = plan({names_prefix + k: v for k, v in shapes(folder).items()}, tab, expected)
        problems += [f"{folder}: {p}" for p in result.problems]
        filled += [k for k in expected if k.split(".")[0] not in names]
        planned.append((folder, names_prefix, part, handed))
    model_keys = set(model.state_dict())
    if problems:
        raise UnknownModelError("the SEED files do not match the model: " + "; ".join(problems))
    if sorted(filled) != sorted(model_keys):  # vlmzoo's own layout, checked so no tensor stays random
        raise UnknownModelError(f"vlmzoo's SEED layout fills {sorted(model_keys - set(filled))[:5]} from no file "
                                f"and {sorted({k for k in filled if filled.count(k) > 1})[:5]} twice")
    return planned


def _tokenizer_of(model, prefix: str):
    return getattr(model, prefix.rstrip(".")) if prefix else model


def load(path: Path, *, device: str, dtype):
    from vlmzoo.families.lavis import fold_qv_biases

    layout = Layout.read(path)
    model, holders, tokenizer = build(layout)
    prefix = f"{T}." if layout.llm is not None else ""
    tab = table(len(tokenizer.visual_encoder.encoder.layers), prefix)
    for folder, names_prefix, part, handed in check(layout, model, holders, prefix):
        load_official(part, folder, tab, device=device, dtype=dtype, prefix=names_prefix)
        hand_back(model, part, handed)
    tokenizer = _tokenizer_of(model, prefix)
    fold_qv_biases(tokenizer.visual_encoder, holders.qkv_biases)
    if layout.llm is not None:
        model.generation_config = generation_config(layout.llm, model.config)
    return model.to(device=device).eval()


def generation_config(llm: Path, config):
    """The LLM folder's generation_config.json, as the official from_pretrained reads it (the
    8B's says eos 1, the 14B's eos 2), with the cache on."""
    from transformers import GenerationConfig
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # the 14B's temperature / top_p without do_sample: vlmzoo passes its own
    try:
        gen = GenerationConfig.from_pretrained(str(llm))
    except OSError:
        gen = GenerationConfig.from_model_config(config)
    finally:
        logging.set_verbosity(level)
    gen.use_cache = True
    return gen
