"""Make the Molmo (7B-D and 7B-O) reference test data from the official implementation.

This is vlmzoo's own driver script. It contains no upstream code: it imports the official
package (allenai/molmo, commit 793fa38, exported unchanged to a scratch folder outside the
repository) and runs it on tiny random configurations of both released architectures.

    python make_reference.py --upstream /work/scratch/molmo-ref            # both variants
    python make_reference.py --upstream /work/scratch/molmo-ref --variant D --out /tmp/x

--upstream is the folder holding the exported ``olmo/`` package and ``launch_scripts/utils.py``.
See README.md beside this file for the environment, the patches and the stubs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.abc
import importlib.machinery
import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch

UPSTREAM_REPO = "allenai/molmo"
UPSTREAM_COMMIT = "793fa387edfd6fd0f5b21eb8e0a7620a1f3799e1"
HF_REPOS = {"D": "allenai/Molmo-7B-D-0924", "O": "allenai/Molmo-7B-O-0924"}
SEED = 0
MAX_NEW_TOKENS = 24

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE.parent / "moondream2" / "images"  # reused, not copied
IMAGES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "panorama.png", "small.png"]
FEATURE_FILES = ("astronaut.png", "panorama.png")  # full vision-backbone outputs saved as .npy
POINTING_IMAGES = ("astronaut.png", "coffee.png")

QUESTION = "What is in this picture?"
CAPTION_PROMPT = "Describe this image."  # GENERAL_PROMPTS_V1["long_caption"][0]
POINT_QUESTION = "Point to the cup."

# --------------------------------------------------------------------------- configurations
#
# Each variant: the Hugging Face config.json fields that olmo/hf_molmo.py reads (same names),
# at full size (the released checkpoints, values from launch_scripts/utils.py LLMS:
# QWEN2_7B for D, OLMO_1024_PREVIEW for O) and tiny (same structural flags, shrunk).

FULL_SIZE = {
    "D": {  # Qwen2-7B LLM (LLMS["qwen2_7b"])
        "hidden_size": 3584,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "qkv_bias": True,
        "clip_qkv": None,
        "num_hidden_layers": 28,
        "intermediate_size": 37888,  # 18944 * 2: ff_proj's output, halved by SwiGLU
        "attention_layer_norm": False,
        "layer_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "vocab_size": 152064,
        "embedding_size": 152064,
        "norm_after": False,
        "rope_theta": 1000000.0,
    },
    "O": {  # OLMo-7B-1024 preview LLM (LLMS["olmo_1024_preview"])
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": None,  # n_kv_heads=None: plain multi-head attention
        "qkv_bias": False,
        "clip_qkv": None,
        "num_hidden_layers": 32,
        "intermediate_size": 22016,
        "attention_layer_norm": True,  # q_norm / k_norm (RMS, over the full q / k width)
        "layer_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "vocab_size": 100278,
        "embedding_size": 100352,
        "norm_after": True,  # norms applied to the attention / MLP outputs, not their inputs
        "rope_theta": 500000.0,
    },
}

TINY = {
    "D": {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "qkv_bias": True,
        "clip_qkv": None,
        "num_hidden_layers": 2,
        "intermediate_size": 256,
        "attention_layer_norm": False,
        "layer_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "vocab_size": 512,  # tokenizer has 483 entries, padded to 512 like Qwen2's 151646 -> 152064
        "embedding_size": 512,
        "norm_after": False,
        "rope_theta": 1000000.0,
    },
    "O": {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": None,
        "qkv_bias": False,
        "clip_qkv": None,
        "num_hidden_layers": 2,
        "intermediate_size": 256,
        "attention_layer_norm": True,
        "layer_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "vocab_size": 500,  # = the tokenizer's length, as dolma2's 100278
        "embedding_size": 512,  # next multiple of 128, as 100352
        "norm_after": True,
        "rope_theta": 500000.0,
    },
}

# The tokenizer each LLM config names (launch_scripts/utils.py LLMS). hf_molmo.py itself names
# 'allenai/OLMoE-1B-7B-0924' for 7B-D, which is the MolmoE tokenizer, not Qwen2's.
TOKENIZER_IDS = {"D": "Qwen/Qwen2-7B", "O": "allenai/dolma2-tokenizer"}

# Vision backbone: olmo/hf_molmo.py fixes these in code (CLIP ViT-L/14 at 336, 23 layers); the
# published config.json has no vision settings. The tiny checkpoints shrink widths and depth
# (10 layers so vit_layers [-2, -9] are layers 8 and 1) and keep 336 px, patch 14, 577 positions.
VISION_FULL = dict(
    image_model_type="openai",
    image_default_input_size=(336, 336),
    image_patch_size=14,
    image_pos_patch_size=14,
    image_emb_dim=1024,
    image_num_heads=16,
    image_num_key_value_heads=16,
    image_num_layers=23,
    image_head_dim=64,
    image_mlp_dim=4096,
    image_mlp_activations="quick_gelu",
    image_dropout_rate=0.0,
    image_num_pos=577,
    image_norm_eps=1e-5,
    attention_dropout=0.0,
    residual_dropout=0.0,
    initializer_range=0.02,
)
VISION_TINY = dict(
    VISION_FULL,
    image_emb_dim=32,
    image_num_heads=2,
    image_num_key_value_heads=2,
    image_num_layers=10,
    image_head_dim=16,
    image_mlp_dim=128,
)

# Text the tiny byte-level BPEs are trained on (written for this script).
TOKENIZER_TEXT = """\
User: What is in this picture? Assistant: The picture shows a person standing in front of a
large building. User: Describe this image. Assistant: A cat with orange and black fur is lying
on a table and looking at the camera. Its eyes are green and its ears are pointed.
User: Point to the cup. Assistant: <point x="61.5" y="40.2" alt="cup">cup</point>
User: Point to the cups. Assistant: <points x1="20.5" y1="30.0" x2="70.1" y2="35.9" alt="cups">cups</points>
User: How many cups are there? Assistant: Counting the <points x1="12.0" y1="50.5" x2="80.0" y2="51.5" alt="cups">cups</points> shows a total of 2.
The morning was cold and clear, and the light came in low over the hills. A woman in a red
coat walked her dog along the river, stopping now and then to look at the boats that were
tied up near the old stone bridge. On the far bank a man was painting a picture of the
water, the trees and the houses with their white walls and grey roofs. In the small cafe on
the corner, people sat at wooden tables with cups of coffee and tea. A waiter carried a tray
with two cups, a plate of bread and a bowl of fruit. There was a cat asleep on a chair by the
window. The picture shows an astronaut in a white suit holding a helmet, with a flag behind
her. Another picture shows a rocket on a launch pad, with a tall tower next to it and clouds
of smoke at the bottom. A third picture shows a cup of coffee on a saucer, with a spoon
beside it, on a table covered with a blue cloth. This isn't in the image. There are none.
A good photograph has a clear subject, good light and a simple background. When you look at
a picture, you can ask many questions: who is in it, where was it taken, what time of day it
was, what the weather was like, and what the people in it are doing. 0 1 2 3 4 5 6 7 8 9 10
"""

# Base tokenizers (what the hub repos the LLM configs name would provide): special tokens last.
BASE_TOKENIZER = {
    # Qwen2-like: no BOS token, <|endoftext|> is EOS/PAD, plus the two chat tokens.
    "D": {"bpe_size": 480, "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
          "config": {"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}},
    # dolma2-like: <|endoftext|> is BOS and EOS, <|pad|> is the last id.
    "O": {"bpe_size": 498, "special": ["<|endoftext|>", "<|pad|>"],
          "config": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                     "pad_token": "<|pad|>"}},
}

# Hand-written model outputs in each format the official code writes (DataFormatter.points_to_text,
# format_points) or parses (olmo/util.py extract_points*, olmo/eval/evaluators.py
# is_valid_format); coordinates are percentages of the image width / height.
POINT_STRINGS = [
    '<point x="61.5" y="40.2" alt="cup">cup</point>',
    '<points x1="20.5" y1="30.0" x2="70.1" y2="35.9" alt="cups">cups</points>',
    '<points x1="10.0" y1="20.0" x2="30.5" y2="40.5" x3="99.9" y3="0.1" alt="a cup, on the left">cups</points>',
    'Counting the <points x1="12.0" y1="50.5" x2="80.0" y2="51.5" alt="cups">cups</points> shows a total of 2.',
    'The <point x="50.0" y="25.0" alt="astronaut">astronaut</point> holds a <point x="70.25" y="80.5" alt="helmet">helmet</point>.',
    '<point x="50" y="25" alt="cup">cup</point>',
    '<point x=" 5.5" y=" 7.25" alt="cup">cup</point>',
    '<point x="120.0" y="50.0" alt="cup">cup</point>',
    '<point p=123,456 alt="cup">cup</point>',
    '<points 1=123,456 2=789,012 alt="cups">cups</points>',
    'Click(12.5, 40.0)',
    '(12.5, 40.0)',
    '(12.5,40.0)\n(60.0, 70.5)',
    '12.5, 40.0 and 60.0, 70.5',
    'There are none.',
    "This isn't in the image.",
]


# ------------------------------------------------------------------------------- imports


class _Placeholder:
    """Inert stand-in for names of modules only imported, never used, on the paths run here."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Placeholder()

    def __getattr__(self, name):
        return _Placeholder()


class _StubModule(types.ModuleType):
    def __init__(self, name):
        super().__init__(name)
        self.__path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


# Third-party modules the official package imports at module level only for cloud storage,
# dataset download / training metrics (olmo/util.py, olmo/data/__init__.py's dataset classes,
# olmo/eval/*): replaced by inert stubs. None of their names is called on the paths run here.
STUBBED_MODULES = ("boto3", "botocore", "cached_path", "datasets", "pandas", "requests", "urllib3",
                   "google", "torchmetrics", "scipy", "editdistance", "wandb", "tensorflow")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in STUBBED_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


def import_official(upstream: Path) -> types.SimpleNamespace:
    """Import the official package exported (unchanged) from the upstream commit."""
    sys.path.insert(0, str(upstream))
    sys.meta_path.insert(0, _StubFinder())
    # olmo/util.py subclasses cached_path's SchemeClient and reads its recoverable_errors.
    import cached_path.schemes as cps

    class SchemeClient:
        recoverable_errors = ()

        def __init__(self, *args, **kwargs):
            pass

    cps.SchemeClient = SchemeClient
    cps.add_scheme_client = lambda *args, **kwargs: None
    # torchvision 0.28.0 from PyPI is a CUDA build whose C extension cannot load against the
    # CPU torch 2.13.0; its _meta_registrations module (fake kernels for nms / roi_align) then
    # fails at import. Only torchvision.transforms.Resize on float tensors is used (pure torch).
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations")
    os.environ.setdefault("MOLMO_DATA_DIR", str(upstream / "work" / "molmo_data"))

    import olmo  # noqa: F401
    import olmo.config as config
    import olmo.data as data
    import olmo.data.collator as collator
    import olmo.data.data_formatter as data_formatter
    import olmo.data.model_preprocessor as model_preprocessor
    import olmo.eval.evaluators as evaluators
    import olmo.hf_molmo as hf_molmo
    import olmo.model as model
    import olmo.tokenizer as tokenizer
    import olmo.util as util

    sys.path.insert(0, str(upstream / "launch_scripts"))
    import utils as launch_utils  # launch_scripts/utils.py: LLMS, VISION_BACKBONES

    return types.SimpleNamespace(
        config=config, data=data, collator=collator, data_formatter=data_formatter,
        model_preprocessor=model_preprocessor, evaluators=evaluators, hf_molmo=hf_molmo,
        model=model, tokenizer=tokenizer, util=util, launch_utils=launch_utils)


def check_flags_against_launch_scripts(up) -> dict:
    """The full-size values above against launch_scripts/utils.py's LLM configs."""
    llms = up.launch_utils.LLMS
    names = {"D": "qwen2_7b", "O": "olmo_1024_preview"}
    mapping = {
        "hidden_size": "d_model", "num_attention_heads": "n_heads",
        "num_key_value_heads": "n_kv_heads", "qkv_bias": "qkv_bias", "clip_qkv": "clip_qkv",
        "num_hidden_layers": "n_layers", "intermediate_size": "mlp_hidden_size",
        "attention_layer_norm": "attention_layer_norm", "layer_norm_eps": "layer_norm_eps",
        "vocab_size": "vocab_size", "embedding_size": "embedding_size",
        "norm_after": "norm_after", "rope_theta": "rope_theta",
    }
    out = {}
    for v, name in names.items():
        llm = llms[name]
        for hf_key, field in mapping.items():
            assert getattr(llm, field) == FULL_SIZE[v][hf_key], (v, hf_key, getattr(llm, field))
        assert llm.tokenizer.identifier == TOKENIZER_IDS[v]
        # max_position_embeddings is unset there (None): RoPE then uses max_sequence_length.
        assert llm.max_position_embeddings is None and llm.max_sequence_length == 4096
        out[v] = {"launch_scripts_llm": name,
                  **{f: getattr(llm, f) for f in mapping.values()},
                  "max_sequence_length": llm.max_sequence_length,
                  "include_bias": llm.include_bias,
                  "bias_for_layer_norm": llm.bias_for_layer_norm,
                  "layer_norm_type": str(llm.layer_norm_type),
                  "weight_tying": llm.weight_tying,
                  "tokenizer": llm.tokenizer.identifier}
    assert up.launch_utils.DEFAULT_VISION_BACKBONE == up.config.VisionBackboneConfig(**VISION_FULL)
    return out


# ------------------------------------------------------------------------ model config


def model_config(up, hf: dict, vision: dict, tokenizer_id: str):
    """ModelConfig from config.json fields, with olmo/hf_molmo.py's mapping and fixed values."""
    c = up.config
    return c.ModelConfig(
        d_model=hf["hidden_size"],
        n_heads=hf["num_attention_heads"],
        n_kv_heads=hf["num_key_value_heads"],
        qkv_bias=hf["qkv_bias"],
        clip_qkv=hf["clip_qkv"],
        n_layers=hf["num_hidden_layers"],
        mlp_hidden_size=hf["intermediate_size"],
        activation_type=c.ActivationType.swiglu,
        block_type="sequential",
        attention_layer_norm=hf["attention_layer_norm"],
        residual_dropout=0,
        response_residual_dropout=0,
        embedding_dropout=0,
        layer_norm_type=c.LayerNormType.rms,
        layer_norm_with_affine=True,
        layer_norm_eps=hf["layer_norm_eps"],
        attention_layer_norm_with_affine=True,
        max_position_embeddings=hf["max_position_embeddings"],
        include_bias=False,
        bias_for_layer_norm=False,
        scale_logits=False,
        vocab_size=hf["vocab_size"],
        embedding_size=hf["embedding_size"],
        additional_vocab_size=128,
        new_embedding_init_range=0.02,
        weight_tying=False,
        norm_after=hf["norm_after"],
        max_crops=12,
        crop_mode="overlap-and-resize-c2",
        use_col_tokens=True,
        prompt_type="uber_model",
        message_formatting="role",
        system_prompt_kind="demo_or_style",
        multi_annotation_weighting="root_subsegments",
        image_padding_embed="pad_and_partial_pad",
        fix_image_padding=False,
        rope=True,
        rope_theta=hf["rope_theta"],
        vit_layers=[-2, -9],
        image_pooling_2d=c.ImagePooling2DType.attention_meanq,
        normalize_input_embeds=False,
        tokenizer=c.TokenizerConfig(identifier=tokenizer_id),
        vision_backbone=c.VisionBackboneConfig(**vision),
    )


def hf_config_json(variant: str, hf: dict, vision: dict | None) -> dict:
    out = {
        "architectures": ["MolmoForCausalLM"],
        "model_type": "molmo",
        **hf,
        "torch_dtype": "float32",
    }
    if vision is not None:
        # Not in the published config.json (hf_molmo.py fixes the ViT-L/14-336 values in code):
        # the tiny vision sizes, VisionBackboneConfig field names. A port reads this object when
        # present and otherwise uses the fixed full-size values.
        out["vision_backbone"] = {k: list(v) if isinstance(v, tuple) else v
                                  for k, v in vision.items()}
    return out


def validate_with_hf_molmo(up, hf: dict, vision: dict, state_dict_shapes: dict, expected) -> None:
    """Run the official olmo/hf_molmo.py load_hf_model on a stand-in for the HF model.

    Its AutoModelForCausalLM (a hub download) is replaced by an object carrying `config`
    (these config.json fields) and `state_dict()` ("model." + names, meta tensors); its Molmo
    is wrapped to keep the instance it builds (the function has no return statement). The
    ModelConfig it builds must equal ours (tokenizer aside) and its strict load_state_dict
    must accept every name and shape. hf_molmo.py fixes the full-size vision backbone, so this
    runs at full size only, on the meta device.
    """
    hm = up.hf_molmo
    built = []

    class FakeHfModel:
        config = types.SimpleNamespace(**hf)

        @staticmethod
        def state_dict():
            return {"model." + k: torch.empty(s, device="meta")
                    for k, s in state_dict_shapes.items()}

    class FakeAuto:
        @staticmethod
        def from_pretrained(repo_id, **kwargs):
            assert repo_id == "allenai/Molmo-7B-D-0924"
            return FakeHfModel()

    orig_auto, orig_molmo = hm.AutoModelForCausalLM, hm.Molmo

    class RecordingMolmo(orig_molmo):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    hm.AutoModelForCausalLM, hm.Molmo = FakeAuto, RecordingMolmo
    try:
        with torch.device("meta"):
            # load_hf_model accepts only this repo id; nothing else in it depends on it.
            hm.load_hf_model("allenai/Molmo-7B-D-0924")
    finally:
        hm.AutoModelForCausalLM, hm.Molmo = orig_auto, orig_molmo
    assert len(built) == 1
    got = dataclasses.asdict(built[0].config)
    want = dataclasses.asdict(expected)
    got.pop("tokenizer")
    want.pop("tokenizer")
    assert got == want, {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert vision == VISION_FULL


def build_molmo(up, cfg, device=None):
    if device is None:
        return up.model.Molmo(cfg)
    with torch.device(device):
        return up.model.Molmo(cfg)


def state_dict_shapes(model) -> dict:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- tokenizer


def write_base_tokenizer(variant: str, path: Path) -> None:
    """A tiny byte-level BPE, laid out as the LLM's hub tokenizer (special tokens last)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    spec = BASE_TOKENIZER[variant]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec["bpe_size"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TOKENIZER_TEXT.splitlines(keepends=True), trainer=trainer)
    assert tok.get_vocab_size() == spec["bpe_size"], tok.get_vocab_size()
    tok.add_special_tokens(spec["special"])
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", **spec["config"],
            "clean_up_tokenization_spaces": False, "model_max_length": 4096}
    (path / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2) + "\n")


BASE_TOKENIZER_DIRS: dict = {}  # identifier -> local folder, filled per variant


def patch_tokenizer_loading(up) -> None:
    """Patch 1: olmo.tokenizer.AutoTokenizer -> a shim loading the tiny base tokenizers.

    The official build_tokenizer() calls AutoTokenizer.from_pretrained(identifier, ...) (a hub
    download) twice, the second time with additional_special_tokens; the shim maps the
    identifier to the local base tokenizer folder and passes that keyword through.
    """
    from transformers import AutoTokenizer

    class OfflineAutoTokenizer:
        @staticmethod
        def from_pretrained(identifier, additional_special_tokens=None, **kwargs):
            path = BASE_TOKENIZER_DIRS[identifier]
            if additional_special_tokens is None:
                return AutoTokenizer.from_pretrained(str(path))
            return AutoTokenizer.from_pretrained(
                str(path), additional_special_tokens=additional_special_tokens)

    up.tokenizer.AutoTokenizer = OfflineAutoTokenizer


def write_final_tokenizer(wrapper, ckpt_dir: Path) -> None:
    """The tokenizer the official build_tokenizer() returns (extra tokens added), saved."""
    wrapper.tokenizer.save_pretrained(str(ckpt_dir))
    p = ckpt_dir / "tokenizer_config.json"
    tcfg = json.loads(p.read_text())
    for k in ("is_local", "local_files_only", "backend"):  # transformers 5 bookkeeping
        tcfg.pop(k, None)
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # tokenizer.json holds everything
    p.write_text(json.dumps(tcfg, indent=2) + "\n")
    for f in ckpt_dir.iterdir():
        os.chmod(f, 0o644)


# ------------------------------------------------------------------------ parameters


def init_parameters(up, model) -> None:
    """Every parameter explicitly, in named_parameters() order, from one seed.

    transformer.ff_out.weight (the LM head): normal, std 3/sqrt(fan_in)
    other nn.Linear weights:                 normal, std 1/sqrt(fan_in)
    nn.Linear biases:                        normal, std 0.02
    RMS / Layer norm weights (incl. q/k):    1 + 0.1 * normal
    LayerNorm biases:                        normal, std 0.02
    transformer.wte.embedding/new_embedding: normal, std 1.0
    image_vit.class_embedding:               normal, std 1.0
    image_vit.positional_embedding:          normal, std 0.5
    vision_backbone.pad_embed:               normal, std 0.5

    (The official init, std 0.02 and zeros, would leave attention near uniform, the padding
    embeddings at zero and greedy choices near ties; this keeps activations near unit scale,
    and the wider LM head spreads the logits so greedy choices stay clear of ties.)
    """
    torch.manual_seed(SEED)
    linear_w, linear_b, norm_w, norm_b = set(), set(), set(), set()
    for mname, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            linear_w.add(f"{mname}.weight")
            linear_b.add(f"{mname}.bias")
        elif isinstance(module, (torch.nn.LayerNorm, up.model.LayerNormBase)):
            norm_w.add(f"{mname}.weight")
            norm_b.add(f"{mname}.bias")
    seen = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            seen += 1
            if name in ("transformer.wte.embedding", "transformer.wte.new_embedding",
                        "vision_backbone.image_vit.class_embedding"):
                p.normal_(0.0, 1.0)
            elif name in ("vision_backbone.image_vit.positional_embedding",
                          "vision_backbone.pad_embed"):
                p.normal_(0.0, 0.5)
            elif name == "transformer.ff_out.weight":
                p.normal_(0.0, 3.0 / math.sqrt(p.shape[1]))
            elif name in linear_w:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            elif name in norm_w:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, dtype=p.dtype))
            elif name in linear_b or name in norm_b:
                p.normal_(0.0, 0.02)
            else:
                raise AssertionError(f"no init rule for {name}")
    assert seen == len(model.state_dict()), "every state_dict entry is a parameter"


def write_checkpoint(up, cfg, hf: dict, vision: dict, ckpt_dir: Path, variant: str) -> None:
    from safetensors.torch import save_file

    model = build_molmo(up, cfg)
    init_parameters(up, model)
    tensors = {"model." + k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    for k, v in tensors.items():
        assert v.dtype == torch.float32, k
    save_file(tensors, str(ckpt_dir / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(ckpt_dir / "model.safetensors", 0o644)
    (ckpt_dir / "config.json").write_text(
        json.dumps(hf_config_json(variant, hf, vision), indent=2) + "\n")


def load_checkpoint(up, cfg, ckpt_dir: Path):
    """Fresh model, weights read back from the written checkpoint (strict), in eval mode."""
    from safetensors.torch import load_file

    model = build_molmo(up, cfg)
    tensors = load_file(str(ckpt_dir / "model.safetensors"))
    assert all(k.startswith("model.") for k in tensors)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items()}, strict=True)
    return model.eval()


# ---------------------------------------------------------------------------- running


class FixedRng:
    """The rng argument the formatter draws from: template 0, and the no-style-prefix branch.

    DataFormatter picks a prompt template with rng.randint(0, n) and, for the demo styles
    (long_caption, pointing, point_count, user_qa), adds the "<style>:" prefix only when
    rng.random() <= 0.1. These are what the official code would draw with the given values.
    """

    def __init__(self, random_value=0.5):
        self.random_value = random_value

    def randint(self, low, high=None):
        return 0

    def random(self):
        return self.random_value


class LogitsRecorder:
    """Forward hook on the Molmo (recording only): the last-position logits of each call."""

    def __init__(self, model):
        self.calls = []
        model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls.append(output.logits[:, -1, :].detach().clone())


class TilingRecorder:
    """Wraps model_preprocessor.select_tiling (recording only) to see the tiling chosen."""

    def __init__(self, mp):
        self.calls = []
        self.mp = mp
        self.orig = orig = mp.select_tiling

        def select_tiling(h, w, patch_size, max_num_crops):
            out = orig(h, w, patch_size, max_num_crops)
            self.calls.append({"args": [int(h), int(w), int(patch_size), int(max_num_crops)],
                               "tiling": [int(x) for x in out]})
            return out

        mp.select_tiling = select_tiling

    def restore(self):
        self.mp.select_tiling = self.orig


def sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def margin(logits: torch.Tensor) -> float:
    top = torch.topk(logits.reshape(-1).double(), 2).values
    return float(top[0] - top[1])


def floats(t) -> list:
    return [float(v) for v in np.asarray(t, dtype=np.float32).reshape(-1)]


def token_layout(ids: np.ndarray, special: dict) -> dict:
    """The image blocks of a token sequence: rows x columns between <im_start> and <im_end>."""
    start, end = special["<im_start>"], special["<im_end>"]
    patch, col = special["<im_patch>"], special["<im_col>"]
    blocks = []
    i = 0
    ids = list(int(x) for x in ids)
    while i < len(ids):
        if ids[i] == start:
            j = ids.index(end, i)
            body = ids[i + 1:j]
            rows = body.count(col)
            row_len = body.index(col)
            assert len(body) == rows * (row_len + 1)
            assert all(body[r * (row_len + 1) + row_len] == col for r in range(rows))
            assert body.count(patch) == rows * row_len
            blocks.append({"start": i, "end": j, "rows": rows, "patches_per_row": row_len})
            i = j + 1
        else:
            i += 1
    return {"blocks": blocks, "n_image_tokens": sum(b["end"] - b["start"] + 1 for b in blocks)}


def run_example(up, model, preprocessor, collate, wrapper, rec: LogitsRecorder, example: dict,
                rng: FixedRng):
    """Preprocess one example and greedy-decode it, as olmo/eval/inf_evaluator.py does."""
    out = preprocessor(dict(example), rng=rng)
    batch = collate([out])
    rec.calls = []
    with torch.inference_mode():
        gen = model.generate(
            input_ids=batch["input_ids"],
            images=batch.get("images"),
            image_masks=batch.get("image_masks"),
            image_input_idx=batch.get("image_input_idx"),
            max_steps=MAX_NEW_TOKENS,
        )
    raw = [int(t) for t in gen.token_ids[0, 0].tolist()]
    eos = wrapper.eos_token_id
    ids = raw[: raw.index(eos)] if eos in raw else raw
    stopped = "eos" if eos in raw else "max_tokens"
    logits = list(rec.calls)
    assert len(logits) >= 1
    # every greedy choice is the argmax of the logits it was taken from
    for step, tok in enumerate(raw):
        assert int(torch.argmax(logits[step].reshape(-1))) == tok
    record = {
        "ids": ids,
        "generated": raw,
        "text": wrapper.decode(raw),
        "stopped_by": stopped,
    }
    diag = {"min_greedy_margin": min(margin(l) for l in logits[: len(raw)])}
    return out, batch, record, logits[0].reshape(-1), diag


def parse_points(up, text: str, width: int, height: int) -> dict:
    util, ev = up.util, up.evaluators

    def pts(ps):
        return [[float(v) for v in np.asarray(p, dtype=np.float64).reshape(-1)] for p in ps]

    return {
        "extract_points": pts(util.extract_points(text, width, height)),
        "extract_points_from_point_count": pts(
            util.extract_points_from_point_count(text, width, height)),
        "extract_bboxes": [[float(v) for v in b]
                           for b in util.extract_bboxes(text, width, height)],
        "is_valid_format": bool(ev.is_valid_format(text)),
    }


def tiling_table(up, mm) -> list:
    """Tiling, crop count and image-token count for a range of sizes (zero images)."""
    sizes = [
        (90, 120), (240, 1100), (300, 451), (336, 336), (337, 337), (400, 600), (427, 640),
        (512, 512), (640, 427), (100, 2000), (2000, 100), (560, 560), (561, 561), (784, 784),
        (1000, 1000), (2048, 2048), (300, 3000), (3000, 300), (700, 1400), (1400, 700),
        (113, 113), (112, 1000), (224, 224), (1, 1),
    ]
    rec = TilingRecorder(up.model_preprocessor)
    rows = []
    try:
        for h, w in sizes:
            rec.calls = []
            crops, tokens, patch_idx, mask = mm.image_to_patches_and_tokens(
                np.zeros((h, w, 3), dtype=np.uint8))
            (call,) = rec.calls
            rows.append({"height": h, "width": w, "select_tiling_args": call["args"],
                         "tiling": call["tiling"], "n_crops": int(crops.shape[0]),
                         "n_image_tokens": int(len(tokens)),
                         "n_valid_patches": int((patch_idx >= 0).sum())})
    finally:
        rec.restore()
    return rows


def write_provenance(folder: Path, what: str, repo: str, commit: str, command: str, readme: str) -> None:
    """A README in a checkpoint folder this driver wrote: what it is, from which upstream code, and
    how to make it again (``readme``, the fixture's own README, has the rest)."""
    (folder / "README.md").write_text(
        f"# {what}\n\n"
        f"Tiny random weights in the official layout, written by `make_reference.py` (vlmzoo's driver,\n"
        f"no upstream code) running the official code of GitHub `{repo}` at commit `{commit}` in a\n"
        f"scratch venv outside the repository. Not a release: test data only.\n\n"
        f"Made again with:\n\n```sh\n{command}\n```\n\n"
        f"The environment, the inputs, the patches and what the tests hold vlmzoo to: `{readme}`.\n",
        encoding="utf-8")

def make_variant(up, variant: str, out: Path, work: Path) -> None:
    vdir = out / variant
    ckpt_dir = vdir / "checkpoint"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    hf = TINY[variant]
    tok_id = TOKENIZER_IDS[variant]

    # --- tokenizer: official build_tokenizer over the tiny base tokenizer
    base_dir = work / f"base-tokenizer-{variant}"
    write_base_tokenizer(variant, base_dir)
    BASE_TOKENIZER_DIRS[tok_id] = base_dir
    cfg = model_config(up, hf, VISION_TINY, tok_id)
    wrapper = cfg.get_tokenizer()
    special = up.tokenizer.get_special_token_ids(wrapper)
    assert special["<im_start>"] == hf["vocab_size"], special
    write_final_tokenizer(wrapper, ckpt_dir)

    # --- checkpoint
    write_checkpoint(up, cfg, hf, VISION_TINY, ckpt_dir, variant)
    write_provenance(ckpt_dir, f"Molmo-7B-{variant}-0924, tiny: the hub repository's files",
                     UPSTREAM_REPO, UPSTREAM_COMMIT,
                     "/work/scratch/molmo-ref/venv/bin/python tests/data/molmo/make_reference.py "
                     "--upstream /work/scratch/molmo-ref", "tests/data/molmo/README.md")
    model = load_checkpoint(up, cfg, ckpt_dir)
    rec = LogitsRecorder(model)

    # --- preprocessing, as the official eval builds it
    preprocessor = up.data.build_mm_preprocessor(cfg, for_inference=True, shuffle_messages=False)
    mm = preprocessor.mm_preprocessor
    collate = up.collator.MMCollator(max_sequence_length=None, include_metadata=True, pad=None)
    formatter = preprocessor.formater

    from transformers import AutoTokenizer
    final_tok = AutoTokenizer.from_pretrained(str(ckpt_dir))  # what a port would load

    def enc(s):
        ids = wrapper.encode(s)
        assert final_tok.encode(s, add_special_tokens=False) == ids, s
        return ids

    def check_decode(record):
        assert final_tok.decode(record["ids"]) == record["text"], record

    prompts = {}

    def formatted(example, rng):
        msgs, _ = formatter(dict(example), False, True, rng)
        assert len(msgs) == 1
        return msgs[0]

    prompt_cases = {
        "query": ({"style": "demo", "question": QUESTION}, FixedRng()),
        "caption": ({"style": "long_caption"}, FixedRng()),
        "pointing": ({"style": "pointing", "question": POINT_QUESTION}, FixedRng()),
        # the other branches, recorded as text only (not run):
        "caption_with_style_prefix": ({"style": "long_caption"}, FixedRng(0.05)),
        "pointing_with_style_prefix": ({"style": "pointing", "question": POINT_QUESTION},
                                       FixedRng(0.05)),
        "pointing_label_template0": ({"style": "pointing", "label": "cup"}, FixedRng()),
        "point_count_label_template0": ({"style": "point_count", "label": "cup"}, FixedRng()),
        "vqa2_short_answer": ({"style": "vqa2", "question": QUESTION}, FixedRng()),
    }
    for key, (ex, rng) in prompt_cases.items():
        text = formatted(ex, rng)
        prompts[key] = {"example": ex, "rng_random": rng.random_value, "text": text,
                        "ids": enc(text)}
    assert prompts["query"]["text"] == f" User: {QUESTION} Assistant:"
    assert prompts["caption"]["text"] == f" User: {CAPTION_PROMPT} Assistant:"
    assert prompts["pointing"]["text"] == f" User: {POINT_QUESTION} Assistant:"

    ref = {
        "variant": variant,
        "hf_repository": HF_REPOS[variant],
        "upstream": {"repository": UPSTREAM_REPO, "commit": UPSTREAM_COMMIT},
        "versions": versions(),
        "dtype": "float32",
        "seed": SEED,
        "max_new_tokens": MAX_NEW_TOKENS,
        "tokenizer": {
            "identifier": tok_id,
            "len": len(wrapper.tokenizer),
            "base_len": len(AutoTokenizer.from_pretrained(str(base_dir))),
            "bos_token_id": wrapper.bos_token_id,
            "eos_token_id": wrapper.eos_token_id,
            "special_token_ids": special,
        },
        "prompts": prompts,
        "tiling_table": None,
        "images": {},
        "point_parsing": None,
        "points_to_text": None,
    }

    ref["tiling_table"] = tiling_table(up, mm)

    diagnostics = {}
    tiling_rec = TilingRecorder(up.model_preprocessor)
    pooled = {}
    hook = model.vision_backbone.image_pooling_2d.register_forward_hook(
        lambda m, a, o: pooled.__setitem__("x", o.detach().clone()))
    try:
        for name in IMAGES:
            path = IMAGES_DIR / name
            diag = diagnostics[name] = {}
            tiling_rec.calls = []
            example = {"image": str(path), "style": "demo", "question": QUESTION}
            pre, batch, q_rec, first, diag["query"] = run_example(
                up, model, preprocessor, collate, wrapper, rec, example, FixedRng())
            (tcall,) = [c for c in tiling_rec.calls]
            tiling_rec.calls = []
            w, h = pre["metadata"]["image_size"]
            images = pre["images"]
            masks = pre["image_masks"]
            idx = pre["image_input_idx"]
            ids = pre["input_tokens"]
            assert images.dtype == np.float32 and masks.dtype == np.float32
            text_ids = prompts["query"]["ids"]
            assert list(ids[-len(text_ids):]) == text_ids
            entry = {
                "width": int(w), "height": int(h),
                "select_tiling_args": tcall["args"],
                "tiling": tcall["tiling"],
                "n_crops": int(images.shape[0]),
                "crops_shape": list(images.shape),
                "crops_dtype": str(images.dtype),
                "crops_sha256": sha256(images),
                "crops_sum": float(images.sum(dtype=np.float64)),
                "image_masks_shape": list(masks.shape),
                "image_masks_sha256": sha256(masks),
                "image_masks_row_means": floats(masks.mean(axis=1, dtype=np.float64)),
                "image_input_idx_shape": list(idx.shape),
                "image_input_idx": idx.astype(np.int64).tolist(),
                "input_ids": [int(x) for x in ids],
                "layout": token_layout(ids, special),
                "position_ids_are_arange": bool(
                    np.array_equal(pre["position_ids"], np.arange(len(ids)))),
            }

            # vision backbone: pooled (before the projector) and projected image features
            with torch.inference_mode():
                feats = model.vision_backbone(
                    torch.from_numpy(images)[None], torch.from_numpy(masks)[None])
            feats = feats[0].float().numpy()
            pool = pooled["x"].float().numpy()
            entry["features_shape"] = list(feats.shape)
            entry["features_sum"] = float(feats.sum(dtype=np.float64))
            entry["features_abs_sum"] = float(np.abs(feats).sum(dtype=np.float64))
            entry["pooled_shape"] = list(pool.shape)
            entry["pooled_sum"] = float(pool.sum(dtype=np.float64))
            entry["pooled_abs_sum"] = float(np.abs(pool).sum(dtype=np.float64))
            if name in FEATURE_FILES:
                stem = name.rsplit(".", 1)[0]
                np.save(vdir / f"features-{stem}.npy", feats.astype(np.float32))
                entry["features_file"] = f"features-{stem}.npy"

            entry["query_first_logits"] = floats(first)
            entry["query"] = {"prompt_ids": text_ids, **q_rec}
            check_decode(q_rec)

            cap_ex = {"image": str(path), "style": "long_caption"}
            cpre, _, c_rec, c_first, diag["caption"] = run_example(
                up, model, preprocessor, collate, wrapper, rec, cap_ex, FixedRng())
            check_decode(c_rec)
            c_ids = prompts["caption"]["ids"]
            assert list(cpre["input_tokens"][-len(c_ids):]) == c_ids
            assert np.array_equal(cpre["input_tokens"][:-len(c_ids)], ids[:-len(text_ids)])
            entry["caption"] = {"prompt_ids": c_ids, **c_rec, "first_logits": floats(c_first)}

            if name in POINTING_IMAGES:
                p_ex = {"image": str(path), "style": "pointing", "question": POINT_QUESTION}
                ppre, _, p_rec, p_first, diag["pointing"] = run_example(
                    up, model, preprocessor, collate, wrapper, rec, p_ex, FixedRng())
                check_decode(p_rec)
                p_ids = prompts["pointing"]["ids"]
                assert list(ppre["input_tokens"][-len(p_ids):]) == p_ids
                entry["pointing"] = {"prompt_ids": p_ids, **p_rec, "first_logits": floats(p_first),
                                     "parsed": parse_points(up, p_rec["text"], w, h)}
            ref["images"][name] = entry
            print(variant, name, entry["tiling"], entry["n_crops"], len(ids),
                  q_rec["ids"][:6], repr(q_rec["text"][:40]), flush=True)
    finally:
        hook.remove()
        tiling_rec.restore()

    # pointing formats: what the official parsers return for hand-written outputs
    ref["point_parsing"] = {
        "image_size": [640, 427],
        "cases": [{"text": s, **parse_points(up, s, 640, 427)} for s in POINT_STRINGS],
    }
    fmt = up.data_formatter.DataFormatter()
    p2t = []
    for pts, scale in [([[61.54, 40.16]], 100), ([[70.1, 35.94], [20.5, 30.0]], 100),
                       ([[320.0, 100.0], [10.0, 400.0]], [6.4, 4.27])]:
        p2t.append({"points": pts, "scale": scale, "label": "cup", "alt": "cup",
                    "text": fmt.points_to_text(np.array(pts, dtype=np.float64), scale,
                                               "cup", "cup")})
    ref["points_to_text"] = p2t

    (vdir / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    (vdir / "diagnostics.json").write_text(json.dumps(diagnostics, indent=1) + "\n")


def versions() -> dict:
    import einops
    import omegaconf
    import PIL
    import safetensors
    import tokenizers
    import torchvision
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
            "einops": einops.__version__, "omegaconf": omegaconf.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path,
                    help="folder holding the exported official olmo/ package")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--variant", choices=["D", "O", "both"], default="both")
    args = ap.parse_args()

    up = import_official(args.upstream)
    check_flags_against_launch_scripts(up)
    patch_tokenizer_loading(up)
    work = args.upstream / "work"
    work.mkdir(parents=True, exist_ok=True)
    for variant in (["D", "O"] if args.variant == "both" else [args.variant]):
        make_variant(up, variant, args.out, work)


if __name__ == "__main__":
    main()
