"""Make the NVLM-D-72B reference test data from the closest official implementation.

This is vlmzoo's own driver script. It contains no upstream code: it imports official files
exported unchanged to a scratch folder outside the repository and runs them on a tiny random
configuration of the NVLM-D-72B architecture.

NVLM-D's own inference code (the Hugging Face repo nvidia/NVLM-D-72B: modeling_nvlm_d.py,
modeling_intern_vit.py, configuration_*.py, conversation.py) is hub-only and no faithful copy of
it exists on GitHub, so the pieces come from the sources it was derived from (see README.md):

- OpenGVLab/InternVL (commit c7c5af1, 2024-09-19, the state when NVLM-D's HF code was written):
  InternVLChatConfig, InternVLChatModel (pixel shuffle, feature extraction, chat(), generate()),
  InternVisionModel (InternViT-6B: RMSNorm, qk-normalization, layer scale), conversation.py
  (Conversation / SeparatorStyle.CHATML), train/dataset.py (dynamic_preprocess, build_transform).
- NVIDIA/Megatron-LM (commit 2ed67b2, 2024-12-02, NVLM's official training / inference code):
  the tile-tag rule (examples/multimodal/model.py _get_tile_tags, llava_model._apply_tile_tagging),
  the image tags "<Image>" / "</Image>" (multimodal_tokenizer.IMAGE_TAGS["nvlm"]), the projector
  for qwen2.0_72B (config.get_vision_projection_config: LayerNorm, no bias, GELU, hidden 29568),
  the 7 zero dummy attention heads of InternViT (nvlm/internvit.py) and the preprocessing
  (image_processing.get_visual_transform, run here and compared bit for bit).

    python make_reference.py --upstream /work/scratch/nvlm-ref/upstream
    python make_reference.py --upstream /work/scratch/nvlm-ref/upstream --out /tmp/x

--upstream holds InternVL/internvl_chat/internvl/... and Megatron-LM/examples/multimodal/...
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch

INTERNVL_REPO = "OpenGVLab/InternVL"
INTERNVL_COMMIT = "c7c5af1a8930b4862afe8ed14672307082ef61fa"
MEGATRON_REPO = "NVIDIA/Megatron-LM"
MEGATRON_COMMIT = "2ed67b201775c7479d38f9140cbcd1677fa256b5"
HF_REPO = "nvidia/NVLM-D-72B"
SEED = 0
MAX_NEW_TOKENS = 24
NUM_DUMMY_HEADS = 7  # Megatron nvlm/internvit.py: 25 heads + 7 zero heads = 32 (TP=8)

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE.parent / "moondream2" / "images"  # reused, not copied
IMAGES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "panorama.png", "small.png"]
FEATURE_FILES = ("astronaut.png", "panorama.png")  # mlp1 outputs saved as .npy

QUESTION = "What is in this picture?"
FOLLOW_UP = "Describe it in more detail."
MULTI_QUESTION = "Image-1: <image>\nImage-2: <image>\nWhat is different between the two images?"
TEXT_ONLY = "Hello, who are you?"
MULTI_IMAGES = ("astronaut.png", "small.png")

IMG_CONTEXT_TOKEN = "<|vision_pad|>"  # NVLM's chat() default (vLLM nvlm_d.py IMG_CONTEXT too)
IMAGE_TAG = ("<Image>", "</Image>")  # Megatron multimodal_tokenizer.IMAGE_TAGS["nvlm"]
TEMPLATE_NAME = "chatml"
SYSTEM_MESSAGE = "You are a helpful assistant."

# --------------------------------------------------------------------------- configurations
#
# config.json of the tiny checkpoint: the published NVLM-D-72B layout (top-level NVLM fields,
# "llm_config" = a Qwen2 config, "vision_config" = an InternVisionConfig), at tiny sizes.

TINY_VISION = {
    "architectures": ["InternVisionModel"],
    "attention_dropout": 0.0,
    "drop_path_rate": 0.0,
    "dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_size": 96,
    "image_size": 448,
    "initializer_factor": 0.1,
    "initializer_range": 0.02,
    "intermediate_size": 384,
    "layer_norm_eps": 1e-06,
    "model_type": "intern_vit_6b",
    "norm_type": "rms_norm",
    "num_attention_heads": 3,  # head dim 32; + 7 zero dummy heads in the checkpoint
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 14,
    "qk_normalization": True,
    "qkv_bias": False,
    "torch_dtype": "float32",
    "use_flash_attn": False,
}

FULL_VISION = dict(TINY_VISION, hidden_size=3200, intermediate_size=12800, num_attention_heads=25,
                   num_hidden_layers=45, torch_dtype="bfloat16")

TINY_LLM = {
    "_name_or_path": "tiny-random-qwen2",
    "architectures": ["Qwen2ForCausalLM"],
    "attention_bias": True,
    "attention_dropout": 0.0,
    "bos_token_id": None,  # filled with the tiny <|endoftext|> id
    "eos_token_id": None,  # filled with the tiny <|im_end|> id
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 160,
    "max_position_embeddings": 32768,
    "max_window_layers": 2,
    "mlp_bias": False,
    "model_type": "llama",  # as in the published llm_config (seen in a copy); the code ignores it
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 512,
}

FULL_LLM = dict(TINY_LLM, _name_or_path="Qwen/Qwen2-72B-Instruct", bos_token_id=151643,
                eos_token_id=151645, hidden_size=8192, intermediate_size=29568, max_window_layers=80,
                num_attention_heads=64, num_hidden_layers=80, num_key_value_heads=8,
                sliding_window=131072, torch_dtype="bfloat16", vocab_size=152064)

TOP_LEVEL = {
    "_commit_hash": None,
    "architectures": ["NVLM_D"],
    "auto_map": {
        "AutoConfig": "configuration_nvlm_d.NVLM_D_Config",
        "AutoModel": "modeling_nvlm_d.NVLM_D_Model",
        "AutoModelForCausalLM": "modeling_nvlm_d.NVLM_D_Model",
    },
    "downsample_ratio": 0.5,
    "dynamic_image_size": True,
    "force_image_size": 448,
    "max_dynamic_patch": 6,
    "min_dynamic_patch": 1,
    "model_type": "NVLM_D",
    "ps_version": "v2",
    "select_layer": -1,
    "template": TEMPLATE_NAME,
    "use_backbone_lora": 0,
    "use_llm_lora": 0,
    "use_thumbnail": True,
}


def config_dict(vision: dict, llm: dict, dtype: str) -> dict:
    out = dict(TOP_LEVEL)
    out["llm_config"] = llm
    out["vision_config"] = vision
    out["torch_dtype"] = dtype
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- tiny tokenizer
#
# Qwen2 layout: byte-level BPE behind Qwen2's pre-tokenizer regex (NFC normalizer), the special
# tokens appended after the BPE ids. "<Image>", "</Image>" and the tile tags are NOT special
# tokens: NVLM-D's tokenizer splits "<Image><tile_1>" into BPE pieces ("<Image", "><", "tile",
# ...; vLLM nvlm_d.py notes it, Megatron tokenizes the tags as text, 5 tokens each), so they are
# trained into the BPE as ordinary text here.

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>",
                  "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"]
BPE_VOCAB = 480

CORPUS = """\
<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
<image>
What is in this picture?<|im_end|>
<|im_start|>assistant
The picture shows an astronaut in a white space suit standing next to the flag.
<Image><tile_1><tile_2><tile_3><tile_4><tile_5><tile_6><tile_global_thumbnail></Image>
<Image><tile_global_thumbnail></Image> <tile_1> <tile_2> <tile_3> <tile_4> <tile_5> <tile_6>
Describe it in more detail. Image-1: Image-2: What is different between the two images?
Hello, who are you? I am a vision language model. I can answer questions about images.
A cat is sitting on the floor. Chelsea the cat has orange and black fur and green eyes.
A cup of coffee on a wooden table, with a saucer and a spoon. The coffee is hot.
A rocket is standing on the launch pad before the launch. There is smoke and a blue sky.
A wide panorama of a city skyline at sunset, with buildings, a river and a bridge.
A small picture of a red apple. The image is very small, it is only a few pixels wide.
Answer the questions. Provide a one-sentence caption for provided image.
Answer the question using a single word or phrase. The answer is yes. The answer is no.
There are two people in the image. There are three dogs, one is brown and one is white.
The astronaut is holding the flag. The flag is red, white and blue. It is on the moon.
What color is the car? The car is red. How many windows are there? There are four windows.
Please describe the image shortly. This is a photo of a street with cars and trees.
"""


def build_tokenizer(out_dir: Path):
    """Train the tiny BPE and save it with transformers' Qwen2 tokenizer classes."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    lines = CORPUS.splitlines()
    tok.train_from_iterator(lines * 3, trainer=trainer)
    assert tok.get_vocab_size() == BPE_VOCAB, tok.get_vocab_size()
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=32768,
    )
    added = fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    ids = fast.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert ids == list(range(BPE_VOCAB, BPE_VOCAB + len(SPECIAL_TOKENS))), ids
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return added


# --------------------------------------------------------------------------- import machinery


class _Inert(types.ModuleType):
    """Import-time stand-in: any attribute is a class that fails when used."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def _fail(*a, **k):
            raise RuntimeError(f"stub {self.__name__}.{name} called")

        return type(name, (), {"__init__": _fail, "__call__": _fail})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # cv2 / imageio / decord: internvl/train/dataset.py imports them for video and JPEG
    # augmentation; peft: modeling_internvl_chat.py imports LoraConfig / get_peft_model for LoRA.
    ROOTS = ("cv2", "imageio", "decord", "peft")

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _Inert(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


def load_file_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ast_constant(path: Path, name: str):
    """Read a module-level constant from a source file without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(name)


class Upstream:
    def __init__(self, root: Path):
        self.root = root
        sys.meta_path.insert(0, _StubFinder())
        # torchvision 0.28.0 from PyPI is a CUDA build whose C extension cannot load against the
        # CPU torch 2.13.0; its _meta_registrations module (fake kernels for nms / roi_align)
        # then fails at import. Only PIL-based transforms (Resize, ToTensor, Normalize) are used.
        sys.modules.setdefault("torchvision._meta_registrations",
                               types.ModuleType("torchvision._meta_registrations"))
        sys.path.insert(0, str(root / "InternVL" / "internvl_chat"))
        import internvl.conversation as conversation
        import internvl.train.dataset as dataset
        from internvl.model.internvl_chat import (InternVisionModel, InternVLChatConfig,
                                                  InternVLChatModel)

        self.conversation = conversation
        self.dataset = dataset
        self.InternVLChatConfig = InternVLChatConfig
        self.InternVLChatModel = InternVLChatModel
        self.InternVisionModel = InternVisionModel
        mm = root / "Megatron-LM" / "examples" / "multimodal"
        self.mg_image_processing = load_file_module("megatron_image_processing", mm / "image_processing.py")
        self.mg_tokenizer_file = root / "Megatron-LM" / "megatron" / "training" / "tokenizer" / "multimodal_tokenizer.py"
        self.mg_model_file = mm / "model.py"
        self.mg_config_file = mm / "config.py"
        self.register_template()

    def register_template(self):
        conv = self.conversation
        if TEMPLATE_NAME in conv.conv_templates:
            return
        conv.register_conv_template(conv.Conversation(
            name=TEMPLATE_NAME,
            system_template="<|im_start|>system\n{system_message}",
            system_message=SYSTEM_MESSAGE,
            roles=("<|im_start|>user", "<|im_start|>assistant"),
            sep_style=conv.SeparatorStyle.CHATML,
            sep="<|im_end|>",
        ))

    def check_megatron_constants(self):
        """The NVLM settings this driver uses, read from the official Megatron sources."""
        tags = ast_constant(self.mg_tokenizer_file, "IMAGE_TAGS")
        assert tuple(tags["nvlm"]) == IMAGE_TAG, tags
        src = self.mg_config_file.read_text()
        block = src[src.index('elif config.language_model_type == "qwen2.0_72B":\n        config.ffn_hidden_size = 29568\n        config.normalization'):]
        block = block[: block.index("else:")]
        assert "'LayerNorm'" in block and "gelu" in block, block
        proj = src[src.index("def get_vision_projection_config"):]
        assert "config.add_bias_linear = False" in proj[:400]
        model_src = self.mg_model_file.read_text()
        assert 'thumbnail_tag_text = "<tile_global_thumbnail>"' in model_src
        assert 'tile_tags_text = [f"<tile_{i}>" for i in range(1, args.max_num_tiles + 1)] + [thumbnail_tag_text]' in model_src
        llava = (self.root / "Megatron-LM" / "megatron" / "core" / "models" / "multimodal" / "llava_model.py").read_text()
        assert "tile_tags = self._tile_tags[: num_tiles - 1] + [self._tile_tags[-1]]" in llava
        return {
            "image_tags_nvlm": list(tags["nvlm"]),
            "qwen2p0_custom_template": ast_constant(self.mg_tokenizer_file, "qwen2p0_custom_template"),
        }


# --------------------------------------------------------------------------- model pieces


def install_nvlm_projector(model, config):
    """NVLM-D's mlp1: LayerNorm -> Linear(no bias) to the LLM's intermediate size -> GELU ->
    Linear(no bias) to the LLM hidden size (Megatron get_vision_projection_config for
    qwen2.0_72B; vLLM nvlm_d.py _init_mlp1). InternVL's own mlp1 (biases, LLM hidden width) is
    replaced before any weight is loaded."""
    from torch import nn

    vit = config.vision_config.hidden_size * int(1 / config.downsample_ratio) ** 2
    inter = config.llm_config.intermediate_size
    hidden = config.llm_config.hidden_size
    model.mlp1 = nn.Sequential(
        nn.LayerNorm(vit),
        nn.Linear(vit, inter, bias=False),
        nn.GELU(),
        nn.Linear(inter, hidden, bias=False),
    )
    return model


def build_model(up: Upstream, config, device=None):
    config.llm_config._attn_implementation = "eager"  # NVLM HF code with use_flash_attn=False
    config.vision_config.use_flash_attn = False
    if device is not None:
        with torch.device(device):
            model = up.InternVLChatModel(config)
            install_nvlm_projector(model, config)
    else:
        model = up.InternVLChatModel(config)
        install_nvlm_projector(model, config)
    return model.eval()


def vision_geometry(vcfg):
    heads = vcfg["num_attention_heads"] if isinstance(vcfg, dict) else vcfg.num_attention_heads
    hidden = vcfg["hidden_size"] if isinstance(vcfg, dict) else vcfg.hidden_size
    head_dim = hidden // heads
    return hidden, heads, head_dim, (heads + NUM_DUMMY_HEADS) * head_dim


def to_published(state: dict, vcfg, rng: torch.Generator | None = None) -> dict:
    """InternVL state dict -> NVLM-D published layout: InternViT attention padded with 7 dummy
    heads (after the real heads in each of q, k, v). Dummy qkv rows are zero (as in the released
    model, Megatron adds zero heads and masks their output); dummy q_norm / k_norm weights and
    dummy proj columns get random values (they must have no effect). Shapes only if rng is None."""
    hidden, heads, head_dim, padded = vision_geometry(vcfg)
    out = {}
    for name, t in state.items():
        if ".attn.qkv.weight" in name:
            assert tuple(t.shape) == (3 * hidden, hidden), (name, t.shape)
            if rng is None:
                out[name] = torch.empty((3 * padded, hidden), device="meta")
            else:
                zeros = torch.zeros(padded - hidden, hidden, dtype=t.dtype)
                out[name] = torch.cat([torch.cat([blk, zeros]) for blk in t.chunk(3)]).contiguous()
        elif name.endswith(".attn.q_norm.weight") or name.endswith(".attn.k_norm.weight"):
            if rng is None:
                out[name] = torch.empty((padded,), device="meta")
            else:
                extra = 1.0 + 0.1 * torch.randn(padded - hidden, generator=rng)
                out[name] = torch.cat([t, extra]).contiguous()
        elif name.endswith(".attn.proj.weight"):
            if rng is None:
                out[name] = torch.empty((hidden, padded), device="meta")
            else:
                extra = torch.randn(hidden, padded - hidden, generator=rng) / math.sqrt(padded)
                out[name] = torch.cat([t, extra], dim=1).contiguous()
        else:
            out[name] = t if rng is None else t.contiguous()
    return out


def from_published(tensors: dict, vcfg) -> dict:
    """Published layout -> InternVL state dict (drops the 7 dummy heads; their qkv rows must be
    zero, so dropping them changes nothing: zero q, k, v give a zero head output, and the q_norm /
    k_norm statistic of the padded width divided by the real width equals InternVL's mean over
    the real width)."""
    hidden, heads, head_dim, padded = vision_geometry(vcfg)
    out = {}
    for name, t in tensors.items():
        if ".attn.qkv.weight" in name:
            assert tuple(t.shape) == (3 * padded, hidden), (name, t.shape)
            blocks = t.chunk(3)
            for blk in blocks:
                assert torch.count_nonzero(blk[hidden:]) == 0, f"{name}: non-zero dummy head rows"
            out[name] = torch.cat([blk[:hidden] for blk in blocks]).contiguous()
        elif name.endswith(".attn.q_norm.weight") or name.endswith(".attn.k_norm.weight"):
            assert tuple(t.shape) == (padded,), (name, t.shape)
            out[name] = t[:hidden].contiguous()
        elif name.endswith(".attn.proj.weight"):
            assert tuple(t.shape) == (hidden, padded), (name, t.shape)
            out[name] = t[:, :hidden].contiguous()
        else:
            out[name] = t
    return out


def init_parameters(model, seed: int):
    """Every parameter set explicitly, in named_parameters() order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("lm_head.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 3.0 / math.sqrt(p.shape[1]))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("class_embedding"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("position_embedding"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif leaf in ("ls1", "ls2"):
                p.copy_(0.1 + 0.9 * torch.rand(p.shape, generator=g))
            elif p.ndim >= 2:  # Linear / Conv2d weights
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif leaf == "weight":  # RMSNorm / LayerNorm weights (incl. q_norm, k_norm)
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif leaf == "bias":
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            else:
                raise AssertionError(f"unhandled parameter {name}")
    return g


# --------------------------------------------------------------------------- helpers


def sha256_f32(t: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32)).tobytes()).hexdigest()


def f32_list(t: torch.Tensor) -> list:
    return [float(x) for x in t.detach().cpu().numpy().astype(np.float32).ravel()]


def f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def stats(t: torch.Tensor) -> dict:
    """float64 sums with numpy (its pairwise summation does not depend on the thread count)."""
    a = f64(t)
    return {"shape": list(t.shape), "sum": float(a.sum()), "abs_sum": float(np.abs(a).sum())}


def top_gap(logits: torch.Tensor) -> float:
    v = torch.topk(logits.double(), 2).values
    return float(v[0] - v[1])


class TileTagTokenizer:
    """Wraps the tokenizer given to InternVL's chat(): before tokenizing the query it rewrites
    each image block InternVL builds ("<Image>" + n*256 context tokens + "</Image>", with
    IMG_START/END_TOKEN = "<Image>"/"</Image>") into NVLM-D's 1-D tile-tagged layout
    "<Image>" + "<tile_1>" + 256 ctx + ... + "<tile_global_thumbnail>" + 256 ctx + "</Image>"
    (Megatron: tags[: n - 1] + [thumbnail tag], the tag before each tile's embeddings). Every
    other call passes through. Records what was tokenized."""

    def __init__(self, tok, num_image_token: int):
        self._tok = tok
        self._n = num_image_token
        self.queries = []
        self.plain_queries = []

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def tag(self, query: str) -> str:
        start, end = IMAGE_TAG
        out, pos = [], 0
        while True:
            i = query.find(start, pos)
            if i < 0:
                out.append(query[pos:])
                break
            j = query.index(end, i)
            body = query[i + len(start): j]
            assert body and body == IMG_CONTEXT_TOKEN * (len(body) // len(IMG_CONTEXT_TOKEN)), body[:80]
            count = len(body) // len(IMG_CONTEXT_TOKEN)
            assert count % self._n == 0
            tiles = count // self._n
            tags = [f"<tile_{k}>" for k in range(1, tiles)] + ["<tile_global_thumbnail>"]
            out.append(query[pos:i] + start + "".join(t + IMG_CONTEXT_TOKEN * self._n for t in tags) + end)
            pos = j + len(end)
        return "".join(out)

    def __call__(self, text, *args, **kwargs):
        self.plain_queries.append(text)
        tagged = self.tag(text)
        self.queries.append(tagged)
        return self._tok(tagged, *args, **kwargs)


class Recorder:
    """Forward hook on the LLM (last-position logits of every forward), pass-through wrapper of
    language_model.generate (the generated ids), forward pre-hook on mlp1 (its input)."""

    def __init__(self, model):
        self.model = model
        self.step_logits = []
        self.generated = []
        self.mlp1_inputs = []
        self.vit_outputs = []
        model.language_model.register_forward_hook(self._lm_hook)
        model.mlp1.register_forward_pre_hook(self._mlp1_hook)
        model.vision_model.register_forward_hook(self._vit_hook)
        orig = model.language_model.generate

        def generate(*a, **k):
            out = orig(*a, **k)
            self.generated.append(out.detach().clone())
            return out

        model.language_model.generate = generate

    def _lm_hook(self, mod, args, output):
        self.step_logits.append(output.logits[0, -1].detach().clone())

    def _mlp1_hook(self, mod, args):
        self.mlp1_inputs.append(args[0].detach().clone())

    def _vit_hook(self, mod, args, output):
        self.vit_outputs.append(output.last_hidden_state.detach().clone())

    def reset(self):
        self.step_logits.clear()
        self.generated.clear()
        self.mlp1_inputs.clear()
        self.vit_outputs.clear()


# --------------------------------------------------------------------------- preprocessing


def load_image_official(up: Upstream, path: Path, record: dict | None = None):
    """The NVLM-D / InternVL load_image(): RGB, dynamic_preprocess(max_num=6, thumbnail),
    build_transform(448) (BICUBIC resize, ToTensor, ImageNet normalize), stacked."""
    from PIL import Image

    ds = up.dataset
    seen = []
    orig = ds.find_closest_aspect_ratio

    def wrapped(*a, **k):
        r = orig(*a, **k)
        seen.append({"args": [a[0], [list(x) for x in a[1]], a[2], a[3], a[4]], "result": list(r)})
        return r

    ds.find_closest_aspect_ratio = wrapped
    try:
        image = Image.open(path).convert("RGB")
        tiles = ds.dynamic_preprocess(image, min_num=1, max_num=6, image_size=448, use_thumbnail=True)
    finally:
        ds.find_closest_aspect_ratio = orig
    transform = ds.build_transform(is_train=False, input_size=448)
    pixel_values = torch.stack([transform(t) for t in tiles])
    if record is not None:
        record["image_size"] = list(image.size)
        record["aspect_ratio_call"] = seen[0]
        record["tile_sizes"] = [list(t.size) for t in tiles]
    return image, pixel_values


def megatron_pixel_values(up: Upstream, image):
    imgs = up.mg_image_processing.get_visual_transform(
        image, 448, 448, use_tiling=True, max_num_tiles=6, use_thumbnail=True,
        vision_model_type="internvit")
    return torch.stack(imgs)


TILING_SIZES = [
    (448, 448), (512, 512), (633, 633), (634, 634), (1000, 1000), (451, 300), (600, 400),
    (640, 427), (1100, 240), (120, 90), (896, 448), (448, 896), (1344, 448), (900, 450),
    (800, 600), (1920, 1080), (1080, 1920), (2688, 448), (3000, 100), (100, 3000), (500, 100),
    (300, 1000), (1, 1), (1023, 767),
]


def tiling_table(up: Upstream):
    from PIL import Image

    ds = up.dataset
    rows = []
    for w, h in TILING_SIZES:
        seen = []
        orig = ds.find_closest_aspect_ratio

        def wrapped(*a, **k):
            r = orig(*a, **k)
            seen.append(list(r))
            return r

        ds.find_closest_aspect_ratio = wrapped
        try:
            tiles = ds.dynamic_preprocess(Image.new("RGB", (w, h)), min_num=1, max_num=6,
                                          image_size=448, use_thumbnail=True)
        finally:
            ds.find_closest_aspect_ratio = orig
        cols, rws = seen[0]
        rows.append({"width": w, "height": h, "grid_cols_rows": [cols, rws], "tiles": cols * rws,
                     "num_patches": len(tiles), "thumbnail": len(tiles) > cols * rws})
    return rows


# --------------------------------------------------------------------------- main run


def run(upstream: Path, out: Path):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(SEED)
    up = Upstream(upstream)
    megatron_facts = up.check_megatron_constants()
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    ckpt = out / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    for f in ckpt.iterdir():
        f.unlink()

    # tokenizer: build, save, reload fresh (slow, as the model card's use_fast=False, and fast)
    build_tokenizer(ckpt)
    tok_slow = AutoTokenizer.from_pretrained(str(ckpt), use_fast=False)
    tok_fast = AutoTokenizer.from_pretrained(str(ckpt), use_fast=True)
    ids = {t: tok_slow.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    llm = dict(TINY_LLM, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"])
    assert llm["vocab_size"] >= len(tok_slow)

    cfg_json = config_dict(TINY_VISION, llm, "float32")
    (ckpt / "config.json").write_text(json.dumps(cfg_json, indent=2) + "\n")
    (ckpt / "generation_config.json").write_text(json.dumps({
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"]}, indent=2) + "\n")

    # build + init with the official classes, write the published layout
    config = up.InternVLChatConfig.from_pretrained(str(ckpt))
    model = build_model(up, config)
    g = init_parameters(model, SEED)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    published = to_published(state, config.vision_config, rng=g)
    save_file(published, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    del model

    # reload fresh: official config class, official model class, strict load
    config = up.InternVLChatConfig.from_pretrained(str(ckpt))
    model = build_model(up, config)
    loaded = from_published(load_file(str(ckpt / "model.safetensors")), config.vision_config)
    missing, unexpected = model.load_state_dict(loaded, strict=True)
    assert not missing and not unexpected
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert model.num_image_token == 256, model.num_image_token
    assert model.template == TEMPLATE_NAME and model.system_message == SYSTEM_MESSAGE

    # position embedding: InternVL bicubic-resizes it to the patch grid; at 448 px it is 32x32
    emb = model.vision_model.embeddings
    pe = emb.position_embedding[:, 1:, :]
    assert torch.equal(emb._get_pos_embed(pe, 32, 32), pe), "bicubic resize at the native grid is not identity"

    rec = Recorder(model)
    # chat() gets the fast tokenizer: the slow Qwen2Tokenizer cannot decode the ids between
    # len(tokenizer) and vocab_size (no token; it raises), which the random model may emit.
    # Both encode every prompt here identically (checked).
    tok = TileTagTokenizer(tok_fast, model.num_image_token)
    def encode_both(text):
        a = tok_fast(text)["input_ids"]
        assert a == tok_slow(text)["input_ids"], "slow/fast tokenizer disagree"
        return a

    gen_cfg = lambda: dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False)  # noqa: E731

    _orig_cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # chat() moves inputs with .cuda()

    ref = {
        "model": HF_REPO,
        "sources": {
            "internvl": {"repo": INTERNVL_REPO, "commit": INTERNVL_COMMIT},
            "megatron": {"repo": MEGATRON_REPO, "commit": MEGATRON_COMMIT},
        },
        "settings": {
            "image_size": 448, "patch_size": 14, "downsample_ratio": 0.5, "ps_version": "v2",
            "select_layer": -1, "num_image_token": model.num_image_token, "max_num_tiles": 6,
            "use_thumbnail": True, "img_context_token": IMG_CONTEXT_TOKEN,
            "image_tags": list(IMAGE_TAG), "template": TEMPLATE_NAME,
            "system_message": SYSTEM_MESSAGE, "num_dummy_heads": NUM_DUMMY_HEADS,
            "max_new_tokens": MAX_NEW_TOKENS, "do_sample": False,
            "eos_token": "<|im_end|>", "eos_token_id": ids["<|im_end|>"],
            "imagenet_mean": list(up.dataset.IMAGENET_MEAN), "imagenet_std": list(up.dataset.IMAGENET_STD),
        },
        "megatron": megatron_facts,
    }
    diag = {"omp_num_threads": torch.get_num_threads(), "cases": {}}

    def capture(label: str, prompt_ids_expected=None):
        logits = list(rec.step_logits)
        gen = rec.generated[-1][0].tolist()
        gaps = []
        for step, lg in enumerate(logits[: len(gen)]):
            assert int(torch.argmax(lg)) == gen[step], (label, step)
            gaps.append(top_gap(lg))
        diag["cases"][label] = {"min_top1_top2_gap": min(gaps), "gaps": gaps}
        return logits, gen

    # --- text-only
    rec.reset()
    resp = model.chat(tok, None, TEXT_ONLY, gen_cfg(), IMG_START_TOKEN=IMAGE_TAG[0],
                      IMG_END_TOKEN=IMAGE_TAG[1], IMG_CONTEXT_TOKEN=IMG_CONTEXT_TOKEN)
    logits, gen = capture("text_only")
    q = tok.queries[-1]
    ref["text_only"] = {
        "question": TEXT_ONLY, "prompt_text": q, "input_ids": encode_both(q),
        "first_logits": f32_list(logits[0]), "generated_ids": gen, "response": resp,
    }

    # --- per image
    images_ref = {}
    pv_by_name = {}
    for name in IMAGES:
        path = IMAGES_DIR / name
        r: dict = {"path": f"../moondream2/images/{name}"}
        image, pv = load_image_official(up, path, r)
        mg = megatron_pixel_values(up, image)
        r["megatron_pixel_values_equal"] = bool(torch.equal(mg, pv))
        assert r["megatron_pixel_values_equal"], name
        cols, rws = r["aspect_ratio_call"]["result"]
        r["grid_cols_rows"] = [cols, rws]
        r["num_tiles"] = cols * rws
        r["num_patches"] = pv.shape[0]
        r["thumbnail"] = pv.shape[0] > cols * rws
        r["tile_tags"] = [f"<tile_{k}>" for k in range(1, pv.shape[0])] + ["<tile_global_thumbnail>"]
        r["pixel_values"] = {"shape": list(pv.shape), "dtype": "float32", "sha256": sha256_f32(pv),
                             "sum": float(f64(pv).sum()),
                             "per_patch_sum": [float(x) for x in f64(pv).sum(axis=(1, 2, 3))]}
        pv_by_name[name] = pv

        # vision features (extract_feature = ViT -> drop cls -> pixel shuffle v2 -> mlp1)
        rec.reset()
        with torch.no_grad():
            feats = model.extract_feature(pv)
        r["vit_last_hidden_state"] = stats(rec.vit_outputs[-1])
        r["pixel_shuffled"] = stats(rec.mlp1_inputs[-1])
        r["features"] = stats(feats)
        r["features"]["sha256"] = sha256_f32(feats)
        if name in FEATURE_FILES:
            fn = f"features-{Path(name).stem}.npy"
            np.save(out / fn, feats.detach().numpy().astype(np.float32))
            r["features"]["file"] = fn

        # one-image question through chat()
        rec.reset()
        resp = model.chat(tok, pv, QUESTION, gen_cfg(), IMG_START_TOKEN=IMAGE_TAG[0],
                          IMG_END_TOKEN=IMAGE_TAG[1], IMG_CONTEXT_TOKEN=IMG_CONTEXT_TOKEN)
        logits, gen = capture(f"{name}:question")
        q = tok.queries[-1]
        ids_q = tok_fast(q)["input_ids"]
        assert ids_q == encode_both(q), "slow/fast tokenizer disagree"
        assert ids_q.count(ids[IMG_CONTEXT_TOKEN]) == 256 * pv.shape[0]
        r["question"] = {
            "question": QUESTION, "prompt_text": q, "input_ids": ids_q,
            "num_context_tokens": ids_q.count(ids[IMG_CONTEXT_TOKEN]),
            "first_logits": f32_list(logits[0]), "generated_ids": gen, "response": resp,
            "stopped_by": "eos" if ids["<|im_end|>"] in gen else "max_new_tokens",
        }
        images_ref[name] = r

    # --- two-turn chat (astronaut)
    pv = pv_by_name["astronaut.png"]
    rec.reset()
    resp1, history = model.chat(tok, pv, QUESTION, gen_cfg(), history=None, return_history=True,
                                IMG_START_TOKEN=IMAGE_TAG[0], IMG_END_TOKEN=IMAGE_TAG[1],
                                IMG_CONTEXT_TOKEN=IMG_CONTEXT_TOKEN)
    capture("astronaut.png:turn1")
    history_in = [list(h) for h in history]
    rec.reset()
    resp2, history = model.chat(tok, pv, FOLLOW_UP, gen_cfg(), history=history, return_history=True,
                                IMG_START_TOKEN=IMAGE_TAG[0], IMG_END_TOKEN=IMAGE_TAG[1],
                                IMG_CONTEXT_TOKEN=IMG_CONTEXT_TOKEN)
    logits, gen = capture("astronaut.png:turn2")
    q = tok.queries[-1]
    ref["two_turn"] = {
        "image": "astronaut.png", "turn1_question": QUESTION, "turn1_response": resp1,
        "history_given": history_in, "turn2_question": FOLLOW_UP, "prompt_text": q,
        "input_ids": encode_both(q), "first_logits": f32_list(logits[0]),
        "generated_ids": gen, "response": resp2, "history_after": [list(h) for h in history],
    }

    # --- two images in one question
    pvs = [pv_by_name[n] for n in MULTI_IMAGES]
    pv2 = torch.cat(pvs)
    rec.reset()
    resp = model.chat(tok, pv2, MULTI_QUESTION, gen_cfg(), num_patches_list=[p.shape[0] for p in pvs],
                      IMG_START_TOKEN=IMAGE_TAG[0], IMG_END_TOKEN=IMAGE_TAG[1],
                      IMG_CONTEXT_TOKEN=IMG_CONTEXT_TOKEN)
    logits, gen = capture("two_images")
    q = tok.queries[-1]
    ref["two_images"] = {
        "images": list(MULTI_IMAGES), "num_patches_list": [p.shape[0] for p in pvs],
        "question": MULTI_QUESTION, "prompt_text": q, "input_ids": encode_both(q),
        "first_logits": f32_list(logits[0]), "generated_ids": gen, "response": resp,
    }
    torch.Tensor.cuda = _orig_cuda

    # --- prompt cross-checks (text and ids only)
    tmpl = up.conversation.get_conv_template(TEMPLATE_NAME)
    tmpl.append_message(tmpl.roles[0], "<image>\n" + QUESTION)
    tmpl.append_message(tmpl.roles[1], None)
    conv_text = tmpl.get_prompt()
    mg_text = tok_fast.apply_chat_template(
        [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": "<image>\n" + QUESTION}],
        tokenize=False, add_generation_prompt=True, chat_template=megatron_facts["qwen2p0_custom_template"])
    assert conv_text == mg_text, (conv_text, mg_text)
    ref["prompt_checks"] = {
        "conversation_template_text": conv_text,
        "equals_megatron_qwen2p0_with_system": conv_text == mg_text,
        "variants_not_run": {},
    }
    for label, system in (("no_system", None), ("megatron_eval_system", "Answer the questions.")):
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": "<image>\n" + QUESTION}]
        text = tok_fast.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                            chat_template=megatron_facts["qwen2p0_custom_template"])
        text = tok.tag(text.replace("<image>", IMAGE_TAG[0] + IMG_CONTEXT_TOKEN * 256 + IMAGE_TAG[1]))
        ref["prompt_checks"]["variants_not_run"][label] = {
            "system": system, "prompt_text_one_tile": text, "input_ids": encode_both(text)}

    # tag tokenization as NVLM-D's tokenizer does it (pieces, not single tokens)
    ref["tag_tokenization"] = {
        s: tok_slow.convert_ids_to_tokens(tok_slow(s)["input_ids"])
        for s in ["<Image>", "</Image>", "<tile_1>", "<tile_6>", "<tile_global_thumbnail>",
                  "<Image><tile_1>", IMG_CONTEXT_TOKEN + "</Image>", IMG_CONTEXT_TOKEN + "<tile_2>"]
    }

    ref["tokenizer"] = {
        "class_slow": type(tok_slow).__name__, "class_fast": type(tok_fast).__name__,
        "len": len(tok_slow), "bpe_size": BPE_VOCAB, "special_token_ids": ids,
        "bos_token": tok_slow.bos_token, "eos_token": tok_slow.eos_token, "pad_token": tok_slow.pad_token,
        "vocab_size_in_config": llm["vocab_size"],
    }
    ref["images"] = images_ref
    ref["tiling_table"] = tiling_table(up)

    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    (out / "diagnostics.json").write_text(json.dumps(diag, indent=1) + "\n")
    print("min gap", min(c["min_top1_top2_gap"] for c in diag["cases"].values()))
    for name, r in images_ref.items():
        print(name, r["grid_cols_rows"], r["num_patches"], repr(r["question"]["response"]))
    print("two_turn", repr(ref["two_turn"]["response"]))
    print("two_images", repr(ref["two_images"]["response"]))
    print("text_only", repr(ref["text_only"]["response"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run(args.upstream.resolve(), args.out.resolve())


if __name__ == "__main__":
    main()
