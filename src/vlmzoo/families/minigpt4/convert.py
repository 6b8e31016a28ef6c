"""MiniGPT-4 / MiniGPT-v2's official files -> the modules in modeling.py, through one table.

The official code (eval_configs/*.yaml and the model configs they name) assembles a model from
four sources, and so does vlmzoo:

- ``eva_vit_g.pth``: LAVIS's EVA ViT-g/14, a bare pickled state dict in float16
  (storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth). It
  holds one block more than ``create_eva_vit_g`` builds (BLIP-2 reads the second-to-last layer).
- ``blip2_pretrained_flant5xxl.pth`` (MiniGPT-4 with Vicuna only): LAVIS's BLIP-2 FlanT5-XXL
  checkpoint, ``{"model": ...}``: ``query_tokens``, ``ln_vision``, the query-only Q-Former and
  ``t5_proj`` (BLIP-2's projection into FlanT5, unused here).
- the MiniGPT checkpoint, ``{"model": ..., "optimizer": ...}`` as the training runner saves it:
  ``llama_proj`` (and MiniGPT-v2's LoRA on q_proj / v_proj), plus buffers it carried along.
- the LLM: a transformers-format Llama folder (Vicuna V0 7B / 13B, Llama-2-7b-chat-hf), as
  safetensors or as the pickled ``pytorch_model*.bin`` shards Vicuna V0 is published as.

Instead of the first two, a transformers-format BLIP-2 folder (Salesforce/blip2-flan-t5-xxl,
which transformers converted from LAVIS's ``pretrain_flant5xxl``: these same two files) gives the
ViT, ln_vision, the Q-Former and the query tokens. Pickles are read only with
``torch.load(weights_only=True)`` and kept as safetensors in vlmzoo's cache (families/pickled.py).

A folder laid out as the eval configs expect loads by ``vlmzoo.load(folder)``: ``eva_vit_g.pth``
(or a BLIP-2 folder inside it), ``blip2_pretrained_flant5xxl.pth`` for the Vicuna version, the
MiniGPT checkpoint under its published name and the LLM folder inside it. An optional
``minigpt4.json`` names files kept elsewhere or renamed (the eval configs' keys ``llama_model``,
``ckpt``, ``q_former_model``; ``vit_model`` for eva_vit_g.pth or a BLIP-2 folder), the sizes a
checkpoint smaller than the released ones has (``vit``: create_eva_vit_g's ``embed_dim``,
``depth``, ``num_heads``, ``mlp_ratio``, ``patch_size``; ``qformer``: BERT's ``hidden_size``,
``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``), which the official code
hard-codes, and the eval configs' ``image_size`` and ``lora_alpha`` where they differ from the
released ones. Which model it is (Q-Former or not, LoRA or not) is read off the checkpoint's
tensors.
"""

from __future__ import annotations

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
    BERT_POSITION_IDS,
    BERT_TEXT_SIDE,
    EVA_VIT_G,
    EVA_VIT_G_SIZES,
    EVA_VIT_G_URL,
    FILE_IMAGE_SIZE,
    config_json,
    eva_config,
    eva_rows,
    qformer_rows,
    settings_path,
)
from vlmzoo.families.lavis import (
    qformer_config as lavis_qformer_config,
)
from vlmzoo.families.lavis import (
    read_settings as lavis_settings,
)
from vlmzoo.families.minigpt4.processing import VARIANTS, Variant
from vlmzoo.families.pickled import folder_weights

BLIP2_QFORMER = "blip2_pretrained_flant5xxl.pth"
SETTINGS = "minigpt4.json"
# the MiniGPT checkpoints under the names they are published with (the 7B one is misspelt on the
# official Google Drive and the Vision-CAIR/minigpt4 Space)
CHECKPOINTS = ("pretrained_minigpt4.pth", "pretrained_minigpt4_7b.pth", "prerained_minigpt4_7b.pth",
               "pretrained_minigpt4_llama2_7b.pth", "minigptv2_checkpoint.pth")
URLS = {EVA_VIT_G: EVA_VIT_G_URL,
        BLIP2_QFORMER: "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/"
                       "blip2_pretrained_flant5xxl.pth"}
SETTING_KEYS = ("llama_model", "ckpt", "q_former_model", "vit_model", "vit", "qformer", "image_size", "lora_alpha")
LORA_ALPHA = 16  # eval_configs/minigptv2_eval.yaml (not in the checkpoint)

V = "visual_encoder"


def table(vit_depth: int = EVA_VIT_G_SIZES["depth"], qformer: bool = True) -> list:
    """Official tensor names -> ours, for every source at once (their names do not collide).
    ``vit_depth``: the blocks the model builds (the file's next one is unused); ``qformer``:
    whether the model has one (MiniGPT-4 with Vicuna)."""
    without_qformer = [] if qformer else [
        Ignore(r"vision_model\.post_layernorm\.(weight|bias)",
               "BLIP-2's trained ln_vision: MiniGPT-4 (Llama 2) and MiniGPT-v2 load no BLIP-2 checkpoint, so "
               "their ln_vision keeps LayerNorm's initial weight 1 and bias 0"),
        Ignore(r"(qformer\..+|query_tokens)", "BLIP-2's Q-Former: this MiniGPT has none"),
    ]
    return without_qformer + eva_rows(V, vit_depth) + qformer_rows() + [
        Ignore(BERT_TEXT_SIDE,
               "BERT's text side (word / position embeddings, text feed-forwards, LM head), if a checkpoint holds "
               "it: init_Qformer removes these modules and loads with strict=False (blip2_pretrained_flant5xxl.pth "
               "holds none: its 433 MB are the query side, ln_vision and t5_proj in float32)"),
        Ignore(BERT_POSITION_IDS,
               "BERT's position index buffer, saved along: the query-only Q-Former has no position embeddings "
               "(init_Qformer removes them)"),
        Ignore(r"t5_proj\.(weight|bias)", "BLIP-2's projection into FlanT5-XXL: MiniGPT-4 has its own llama_proj"),
        # the MiniGPT checkpoint
        (r"llama_proj\.(weight|bias)", r"llama_proj.\1"),
        (r"llama_model\.base_model\.model\.model\.layers\.(\d+)\.self_attn\.([qv]_proj)\.lora_([AB])\.weight",
         r"lora.\1.\2.\3"),  # merged into the LLM's q_proj / v_proj
        Ignore(r"llama_model\.(base_model\.model\.)?model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",
               "transformers 4.30's rotary frequency buffers, saved along with llama_proj: transformers "
               "computes them from the LLM's config"),
        # the LLM folder (transformers LlamaForCausalLM)
        Ignore(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",
               "rotary frequency buffers older transformers saved: computed from the config"),
        (r"(model\.(embed_tokens|layers|norm)\..+|lm_head\.weight)", r"\1"),
        # a transformers-format BLIP-2 folder (Salesforce/blip2-flan-t5-xxl)
        (r"vision_model\.(.+)", rf"{V}.\1"),
        (r"(qformer\..+)", r"\1"),
        Ignore(r"language_projection\.(weight|bias)", "BLIP-2's t5_proj: MiniGPT-4 has its own llama_proj"),
        Ignore(r"language_model\..+", "BLIP-2's FlanT5-XXL: MiniGPT's LLM is Vicuna or Llama 2"),
    ]


TABLE = table()  # at the released sizes


# -- the folder ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where each of a MiniGPT's files is, and which model they make."""
    folder: Path
    settings: dict
    ckpt: Path  # the MiniGPT checkpoint
    llm: Path  # the LLM folder
    vit: Path  # eva_vit_g.pth, or a transformers BLIP-2 folder (ViT, and ln_vision + Q-Former if used)
    qformer: Path | None  # blip2_pretrained_flant5xxl.pth or the BLIP-2 folder; None without a Q-Former
    variant: Variant
    lora_rank: int

    @property
    def blip2_folder(self) -> bool:
        return self.vit.is_dir()

    @classmethod
    def read(cls, folder: Path) -> Layout:
        folder = Path(folder)
        settings = read_settings(folder)
        ckpt = _checkpoint_file(folder, settings)
        llm = _llm_folder(folder, settings)
        vit = _vision_source(folder, settings)
        names = header(converted_folder(ckpt))
        if "llama_proj.weight" not in names:
            raise UnknownModelError(f"{ckpt}: not a MiniGPT-4 / MiniGPT-v2 checkpoint (no llama_proj.weight)")
        lora = sorted(shape[0] for name, shape in names.items() if ".lora_A." in name)
        width = vision_config(vit, settings).hidden_size
        uses_qformer = names["llama_proj.weight"][1] != width * 4
        variant = next((v for v in VARIANTS.values() if v.qformer == uses_qformer and v.lora == bool(lora)), None)
        if variant is None:
            raise UnknownModelError(f"{ckpt}: a Q-Former model with LoRA is no released MiniGPT")
        qformer = None
        if uses_qformer:
            qformer = vit if vit.is_dir() else _file(folder, settings, "q_former_model", BLIP2_QFORMER,
                                                    "MiniGPT-4 (Vicuna) needs BLIP-2's Q-Former")
        if vit.is_dir():
            check_blip2_folder(vit, uses_qformer)
        return cls(folder, settings, ckpt, llm, vit, qformer, variant, lora[0] if lora else 0)


def read_settings(folder: Path) -> dict:
    return lavis_settings(folder / SETTINGS, SETTING_KEYS)


_path = settings_path


def _file(folder: Path, settings: dict, key: str, name: str, why: str) -> Path:
    path = _path(folder, settings[key]) if key in settings else folder / name
    if not path.is_file():
        where = f"{key} in {SETTINGS} names {path}" if key in settings else f"{folder} holds no {name}"
        raise UnknownModelError(f"{why}: {where} ({URLS.get(name, 'see the model card')}; or its path as "
                                f"\"{key}\" in {SETTINGS})")
    return path


def _checkpoint_file(folder: Path, settings: dict) -> Path:
    if "ckpt" in settings:
        return _file(folder, settings, "ckpt", "", "the MiniGPT checkpoint")
    found = [folder / n for n in CHECKPOINTS if (folder / n).is_file()]
    if not found:  # a renamed download: the one other .pth
        found = [p for p in sorted(folder.glob("*.pth")) if p.name not in (EVA_VIT_G, BLIP2_QFORMER)]
    if len(found) != 1:
        what = (f"{len(found)} candidates ({', '.join(p.name for p in found)})" if found
                else f"none of {', '.join(CHECKPOINTS)}")
        raise UnknownModelError(f"{folder}: no single MiniGPT-4 / MiniGPT-v2 checkpoint: {what}; put the official "
                                f".pth there (the README's Google Drive links) or its path as \"ckpt\" in {SETTINGS}")
    return found[0]


_config = config_json


def _llm_folder(folder: Path, settings: dict) -> Path:
    if "llama_model" in settings:
        llm = _path(folder, settings["llama_model"])
        if _config(llm).get("model_type") != "llama":
            raise UnknownModelError(f"llama_model in {SETTINGS} names {llm}: not a transformers-format Llama "
                                    "folder (config.json with model_type \"llama\")")
        return llm
    found = sorted(p for p in folder.iterdir() if p.is_dir() and _config(p).get("model_type") == "llama")
    if len(found) != 1:
        what = f"{len(found)} ({', '.join(p.name for p in found)})" if found else "none"
        raise UnknownModelError(f"{folder}: the language model folder is missing: MiniGPT needs one transformers-format "
                                f"Llama folder inside it (Vicuna V0 7B / 13B: Vision-CAIR/vicuna-7b, Vision-CAIR/vicuna; "
                                f"Llama-2: meta-llama/Llama-2-7b-chat-hf), found {what}; or its path as \"llama_model\" "
                                f"in {SETTINGS}")
    return found[0]


def _vision_source(folder: Path, settings: dict) -> Path:
    if "vit_model" in settings:
        path = _path(folder, settings["vit_model"])
        if not (path.is_file() or _config(path).get("model_type") == "blip-2"):
            raise UnknownModelError(f"vit_model in {SETTINGS} names {path}: neither {EVA_VIT_G} nor a transformers "
                                    "BLIP-2 folder")
        return path
    if (folder / EVA_VIT_G).is_file():
        return folder / EVA_VIT_G
    found = sorted(p for p in folder.iterdir() if p.is_dir() and _config(p).get("model_type") == "blip-2")
    if len(found) == 1:
        return found[0]
    raise UnknownModelError(f"{folder}: the vision tower is missing: {EVA_VIT_G} ({URLS[EVA_VIT_G]}), or a "
                            "transformers BLIP-2 folder (Salesforce/blip2-flan-t5-xxl) inside it, or its path as "
                            f"\"vit_model\" in {SETTINGS}")


def check_blip2_folder(path: Path, uses_qformer: bool) -> None:
    """A transformers BLIP-2 folder carries MiniGPT's weights when it was converted from LAVIS's
    224 px pre-training checkpoints (the ViT: any of them; the Q-Former: FlanT5-XXL's)."""
    raw = _config(path)
    size = (raw.get("vision_config") or {}).get("image_size", 224)
    if size != FILE_IMAGE_SIZE:
        raise UnknownModelError(f"{path}: a BLIP-2 fine-tuned at {size} px; MiniGPT's ViT is the pre-trained "
                                f"224 px one (eva_vit_g.pth), as in Salesforce/blip2-flan-t5-xxl")
    text = raw.get("text_config") or {}
    if uses_qformer and (text.get("model_type") != "t5" or text.get("d_model") == 2048):
        raise UnknownModelError(f"{path}: MiniGPT-4 (Vicuna) uses the Q-Former of BLIP-2 FlanT5-XXL "
                                "(blip2_pretrained_flant5xxl.pth, Salesforce/blip2-flan-t5-xxl); this BLIP-2's "
                                f"language model is {text.get('model_type')} {text.get('d_model', '')}, whose "
                                "Q-Former was trained apart")


# -- files as safetensors --------------------------------------------------------------------------


def converted_folder(source: Path, wrapper: str | None = "model") -> Path:
    """The folder whose safetensors hold ``source``: a transformers folder itself, or a pickle's
    conversion in vlmzoo's cache (``wrapper``: the training runner's ``{"model": ...}``, which
    LAVIS's and MiniGPT's checkpoints are; None for eva_vit_g.pth, a bare state dict)."""
    from vlmzoo.families.pickled import converted

    if source.is_dir():
        return source
    return converted(source, wrapper=wrapper)


def llm_weights(llm: Path) -> Path:
    """The LLM folder's safetensors, or its pickled ``pytorch_model*.bin`` shards converted once
    (Vicuna V0 is published so)."""
    return folder_weights(llm, "the language model folder")


header = shapes  # tensor name -> shape over a folder's safetensors, from the headers alone


# -- configurations --------------------------------------------------------------------------------


def vision_config(vit: Path, settings: dict):
    from transformers import Blip2Config

    if vit.is_dir():
        config = Blip2Config.from_pretrained(str(vit)).vision_config
        config._attn_implementation = "sdpa"
        return config
    return eva_config(settings.get("vit", {}))


def qformer_config(source: Path, settings: dict, width: int):
    """``source``: blip2_pretrained_flant5xxl.pth (bert-base-uncased's sizes, or the settings') or a
    transformers BLIP-2 folder (its config); ``width``: the ViT's."""
    from transformers import Blip2Config

    if source.is_dir():
        config = Blip2Config.from_pretrained(str(source)).qformer_config
        config._attn_implementation = "sdpa"
        return config
    return lavis_qformer_config(settings.get("qformer", {}), width)


def text_config(llm: Path):
    from transformers import AutoConfig, LlamaConfig

    config = AutoConfig.from_pretrained(str(llm), trust_remote_code=False)
    if not isinstance(config, LlamaConfig):
        raise UnknownModelError(f"{llm}: MiniGPT's LLM is a Llama (Vicuna V0, Llama-2-chat), not {config.model_type}")
    return config


def image_tokens(layout: Layout) -> tuple[int, int]:
    """(the image side in pixels, the LLM tokens an image becomes)."""
    size = int(layout.settings.get("image_size", layout.variant.image_size))
    if layout.variant.qformer:
        return size, header(converted_folder(layout.qformer))["query_tokens"][1]
    patch = vision_config(layout.vit, layout.settings).patch_size
    return size, (size // patch) ** 2 // 4


# -- building and loading --------------------------------------------------------------------------


def build(layout: Layout):
    """The model on the meta device and its holders (see ``modules``), for the folder's files."""
    vision = vision_config(layout.vit, layout.settings)
    qformer = qformer_config(layout.qformer, layout.settings, vision.hidden_size) if layout.variant.qformer else None
    queries = image_tokens(layout)[1] if qformer else 0
    return modules(text_config(layout.llm), vision, qformer, queries, layout.lora_rank, not layout.blip2_folder)


def modules(text, vision, qformer=None, queries: int = 0, lora_rank: int = 0, qv_biases: bool = True):
    """The model on the meta device, and the holders of the tensors folded in after loading:
    eva's q / v biases (``qkv_biases``) and MiniGPT-v2's LoRA (``lora``, when ``lora_rank``)."""
    import torch
    from torch import nn

    from vlmzoo.families.lavis import qv_bias_holders
    from vlmzoo.families.minigpt4.modeling import LoRAPair, minigpt_class

    with torch.device("meta"):
        model = minigpt_class()(text)
        model.attach_vision(vision, qformer, queries)
        holders = nn.Module()
        if qv_biases:
            holders.qkv_biases = qv_bias_holders(vision.hidden_size, vision.num_hidden_layers)
        if lora_rank:
            holders.lora = nn.ModuleList(nn.ModuleDict({name: LoRAPair(lora_rank, p.in_features, p.out_features)
                                                        for name, p in (("q_proj", layer.self_attn.q_proj),
                                                                        ("v_proj", layer.self_attn.v_proj))})
                                         for layer in model.model.layers)
    rebuild_rotary(model, text)
    return model, holders


VISION_PATHS = ("visual_encoder.embeddings", "visual_encoder.encoder")
QFORMER_PATHS = ("visual_encoder.post_layernorm", "query_tokens", "qformer")
LLM_PATHS = ("model", "lm_head")


def sources(layout: Layout) -> list[tuple[Path, tuple[str, ...], tuple[str, ...]]]:
    """(safetensors folder, the model paths it fills, the holders it fills) per source file."""
    out = []
    if layout.blip2_folder:
        out.append((layout.vit, VISION_PATHS + (QFORMER_PATHS if layout.variant.qformer else ()), ()))
    else:
        out.append((converted_folder(layout.vit, wrapper=None), VISION_PATHS, ("qkv_biases",)))
        if layout.variant.qformer:
            out.append((converted_folder(layout.qformer), QFORMER_PATHS, ()))
    out.append((converted_folder(layout.ckpt), ("llama_proj",), ("lora",) if layout.variant.lora else ()))
    out.append((llm_weights(layout.llm), LLM_PATHS, ()))
    return out


def initialised(layout: Layout) -> tuple[str, ...]:
    """Model paths no file fills: ln_vision without BLIP-2's checkpoint (weight 1, bias 0, as the
    official model leaves it)."""
    return () if layout.variant.qformer else ("visual_encoder.post_layernorm",)


def check(layout: Layout, model, holders) -> list[tuple]:
    """Every source planned from its headers before any weight is read; each model tensor filled
    exactly once. Returns (folder, view, parameter paths) per source."""
    tab = table(len(model.visual_encoder.encoder.layers), layout.variant.qformer)
    planned, problems, filled = [], [], []
    for folder, paths, names in sources(layout):
        part, handed = view(model, paths, holders, names)
        expected = {k: tuple(v.shape) for k, v in part.state_dict().items()}
        result = plan(header(folder), tab, expected)
        problems += [f"{folder}: {p}" for p in result.problems]
        filled += [k for k in expected if k.split(".")[0] not in names]
        planned.append((folder, part, handed))
    model_keys = set(model.state_dict())
    filled += [k for k in model_keys if k.startswith(initialised(layout))]
    if problems:
        raise UnknownModelError("the MiniGPT files do not match the model: " + "; ".join(problems))
    if sorted(filled) != sorted(model_keys):  # vlmzoo's own layout, checked so no tensor stays random
        raise UnknownModelError(f"vlmzoo's MiniGPT layout fills {sorted(model_keys - set(filled))[:5]} from no file "
                                f"and {sorted({k for k in filled if filled.count(k) > 1})[:5]} twice")
    return planned


def load(path: Path, *, device: str, dtype):
    import torch
    from torch import nn

    from vlmzoo.families.lavis import fold_qv_biases, resize_positions
    from vlmzoo.families.minigpt4.modeling import merge_lora

    layout = Layout.read(path)
    model, holders = build(layout)
    for folder, part, handed in check(layout, model, holders):
        # the checkpoint with the LoRA in float32: it is merged into the LLM's weights below
        load_official(part, folder, table(len(model.visual_encoder.encoder.layers), layout.variant.qformer),
                      device=device, dtype=torch.float32 if "lora" in part._modules else dtype)
        hand_back(model, part, handed)
    tower = model.visual_encoder
    if not layout.blip2_folder:
        fold_qv_biases(tower, holders.qkv_biases)
    if not layout.variant.qformer:
        width = tower.config.hidden_size
        ones = {"dtype": dtype, "device": device}
        tower.post_layernorm.weight = nn.Parameter(torch.ones(width, **ones), requires_grad=False)
        tower.post_layernorm.bias = nn.Parameter(torch.zeros(width, **ones), requires_grad=False)
    resize_positions(tower, int(layout.settings.get("image_size", layout.variant.image_size)))
    if layout.variant.lora:
        merge_lora(model, holders.lora, layout.settings.get("lora_alpha", LORA_ALPHA) / layout.lora_rank)
    model.llama_proj.to(dtype=dtype)
    return model.to(device=device).eval()
