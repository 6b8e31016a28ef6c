"""Make the MiniGPT-4 / MiniGPT-v2 reference test data from the official implementation.

This is vlmzoo's own driver script. It contains no upstream code: it imports the official package
(Vision-CAIR/MiniGPT-4, commit d94738a, exported unchanged to a scratch folder outside the
repository) and runs it on tiny random models of the three released architectures:

- ``minigpt4_vicuna``: MiniGPT-4 (Vicuna V0 7B / 13B): EVA ViT-g -> ln_vision -> BLIP-2 Q-Former
  (32 queries) -> llama_proj -> Vicuna.   eval_configs/minigpt4_eval.yaml
- ``minigpt4_llama2``: MiniGPT-4 (Llama-2-chat 7B): EVA ViT-g -> ln_vision -> 4 adjacent patch
  tokens concatenated -> llama_proj -> Llama-2-chat.   eval_configs/minigpt4_llama2_eval.yaml
- ``minigptv2``: MiniGPT-v2 (Llama-2-chat 7B, 448 px, LoRA r 64 on q_proj / v_proj), same
  visual path as minigpt4_llama2.   eval_configs/minigptv2_eval.yaml

    python make_reference.py --upstream /work/scratch/minigpt4-ref            # all variants
    python make_reference.py --upstream /work/scratch/minigpt4-ref --variant minigptv2 --out /tmp/x
    python make_reference.py --check-tokenizer          # in vlmzoo's venv: AutoTokenizer vs reference

--upstream is the folder holding the exported ``minigpt4/`` package, ``eval_configs/`` and
``demo_v2.py``. See README.md beside this file for the environment, the patches and the stubs.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import io
import json
import math
import os
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch

UPSTREAM_REPO = "Vision-CAIR/MiniGPT-4"
UPSTREAM_COMMIT = "d94738a7626ec43eba6c2cddf3cd2043f1a9689a"
SEED = 0
MAX_NEW_TOKENS = 24

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE.parent / "moondream2" / "images"  # reused, not copied
IMAGES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "panorama.png", "small.png"]
FEATURE_FILES = ("astronaut.png", "panorama.png")  # projected image embeddings saved as .npy
DETAIL_IMAGES = ("astronaut.png", "coffee.png")  # multi-turn and the extra MiniGPT-v2 tasks

QUESTION = "What is in this picture?"
FOLLOW_UP = "Describe it in more detail."

# MiniGPT-v2 task prompts: demo_v2.py gradio_taskselect / examples and the dataset classes.
V2_CHAT_TASKS = {  # task name -> user text typed after the image (Chat.ask)
    "vqa": "[vqa] " + QUESTION,  # demo_v2 '[vqa] ' prefix
    "caption": "[caption] please describe this image?",  # coco_caption.py COCOCapEvalData
    "grounding": "[grounding] describe this image in detail",  # demo_v2 task shortcut
    "refer": "[refer] the cup",  # demo_v2 '[refer] ' + phrase
    "detection": "[detection] cup",  # demo_v2 '[detection] ' + phrase
    "identify": "[identify] what is this {<4><50><30><65>}",  # demo_v2 example, box typed in
    "no_tag": QUESTION,  # demo_v2 'No Tag'
}
V2_ALL_IMAGE_TASKS = ("vqa", "caption")  # run on every image; the others on DETAIL_IMAGES
# eval_scripts: model.generate(images, prepare_texts(questions, conv_temp), do_sample=False)
V2_EVAL_BATCH = [
    ("astronaut.png",
     "[vqa] Based on the image, respond to this question with a short answer: " + QUESTION),
    ("coffee.png", "[refer] give me the location of the cup"),  # eval_ref.py RefCOCOEvalData
]

# --------------------------------------------------------------------------- configurations
#
# create_eva_vit_g() hard-codes the EVA ViT-g shape and MiniGPT4.init_Qformer() reads
# bert-base-uncased's config from the hub: the tiny runs replace exactly these values.

VIT_FULL = {"embed_dim": 1408, "depth": 39, "num_heads": 16, "mlp_ratio": 4.3637}  # 1408 // 88 heads
VIT_TINY = {"embed_dim": 32, "depth": 3, "num_heads": 2, "mlp_ratio": 4.3637}  # mlp int(32*4.3637)=139
VIT_FIXED = {"patch_size": 14, "use_mean_pooling": False, "qkv_bias": True, "norm_eps": 1e-6}
# The released eva_vit_g.pth is 1.89 GiB of float16: 40 EVA-CLIP-g blocks (+ a small head), not
# the 39 that create_eva_vit_g builds (1.84 GiB); its strict=False load drops blocks.39. The tiny
# file likewise carries one unused last block.
EXTRA_VIT_BLOCKS = 1

BERT_BASE_UNCASED = {  # huggingface.co/bert-base-uncased config.json (hub not reachable here)
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
    "position_embedding_type": "absolute",
}
BERT_TINY = dict(BERT_BASE_UNCASED, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                 intermediate_size=64)
NUM_QUERY_TOKEN = 32  # minigpt4_vicuna0.yaml; kept at full size
T5_PROJ_OUT = {"full": 4096, "tiny": 48}  # blip2 file's t5_proj: 768 -> FlanT5-XXL d_model (unused)

SP_VOCAB = 512  # tiny sentencepiece model: <unk> <s> </s>, 256 byte pieces, 253 learned pieces

LLM_FULL = {
    "vicuna7b": dict(vocab_size=32001, hidden_size=4096, intermediate_size=11008,
                     num_hidden_layers=32, num_attention_heads=32, max_position_embeddings=2048,
                     rms_norm_eps=1e-6),
    "vicuna13b": dict(vocab_size=32001, hidden_size=5120, intermediate_size=13824,
                      num_hidden_layers=40, num_attention_heads=40, max_position_embeddings=2048,
                      rms_norm_eps=1e-6),
    "llama2_7b_chat": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                           num_hidden_layers=32, num_attention_heads=32,
                           max_position_embeddings=4096, rms_norm_eps=1e-5),
}
LLM_TINY = {
    # Vicuna V0: config vocab_size 32001 = tokenizer 32000 + one row no token maps to
    "vicuna": dict(vocab_size=SP_VOCAB + 1, hidden_size=64, intermediate_size=176,
                   num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=2048,
                   rms_norm_eps=1e-6),
    "llama2": dict(vocab_size=SP_VOCAB, hidden_size=64, intermediate_size=176,
                   num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=4096,
                   rms_norm_eps=1e-5),
}
LLM_COMMON = dict(hidden_act="silu", initializer_range=0.02, bos_token_id=1, eos_token_id=2,
                  pad_token_id=0, tie_word_embeddings=False)

VARIANTS = {
    "minigpt4_vicuna": {
        "eval_config": "eval_configs/minigpt4_eval.yaml",
        "model_type": "pretrain_vicuna0",
        "llm": "vicuna", "llm_dir": "vicuna",
        "ckpt": "pretrained_minigpt4.pth",  # 13B; the 7B file is pretrained_minigpt4_7b.pth
        "qformer_file": "blip2_pretrained_flant5xxl.pth",
        "conv": "CONV_VISION_Vicuna0", "demo": "demo.py", "seed": 11,
        "full_llms": ("vicuna7b", "vicuna13b"),
    },
    "minigpt4_llama2": {
        "eval_config": "eval_configs/minigpt4_llama2_eval.yaml",
        "model_type": "pretrain_llama2",
        "llm": "llama2", "llm_dir": "Llama-2-7b-chat-hf",
        "ckpt": "pretrained_minigpt4_llama2_7b.pth",
        "qformer_file": None,
        "conv": "CONV_VISION_LLama2", "demo": "demo.py", "seed": 12,
        "full_llms": ("llama2_7b_chat",),
    },
    "minigptv2": {
        "eval_config": "eval_configs/minigptv2_eval.yaml",
        "model_type": "pretrain",
        "llm": "llama2", "llm_dir": "Llama-2-7b-chat-hf",
        "ckpt": "minigptv2_checkpoint.pth",
        "qformer_file": None,
        "conv": "CONV_VISION_minigptv2", "demo": "demo_v2.py", "seed": 17,
        "full_llms": ("llama2_7b_chat",),
    },
}
COMPONENT_SEEDS = {"vit": 1, "qformer": 2, "llm_vicuna": 3, "llm_llama2": 4}

TOKENIZER_CORPUS = """\
Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to you. Please answer my questions.
###Human: <Img><ImageHere></Img> What is in this picture?###Assistant: A man in a white space suit holds a flag.###
###Human: Describe it in more detail.###Assistant: The astronaut stands on the moon next to a lander.###
###Human: <Img><ImageHere></Img> Describe this image in detail.###Assistant: There is a cat on a red sofa.###
<s>[INST] <Img><ImageHere></Img> What is in this picture? [/INST] A cup of coffee on a wooden table. </s>
<s>[INST] <Img><ImageHere></Img> [vqa] Based on the image, respond to this question with a short answer: what color is the cup? [/INST] white</s>
<s>[INST] <Img><ImageHere></Img> [caption] please describe this image? [/INST] a rocket on a launch pad</s>
<s>[INST] <Img><ImageHere></Img> [grounding] describe this image in detail [/INST] <p>a man</p> {<12><34><56><78>} stands next to <p>a flag</p> {<60><10><90><80>}</s>
<s>[INST] <Img><ImageHere></Img> [refer] give me the location of the cup [/INST] {<25><40><75><90>}</s>
<s>[INST] <Img><ImageHere></Img> [detection] cup [/INST] <p>cup</p> {<1><2><3><4>}<delim>{<50><60><70><80>}</s>
<s>[INST] <Img><ImageHere></Img> [identify] what is this {<4><50><30><65>} [/INST] a plate of chicken nuggets</s>
The quick brown fox jumps over the lazy dog. A small cat sleeps in the sun; the dog barks at it!
Where is the cup? It is on the left, near the window, beside two books and a green plant.
What is in this picture? Describe this image. Describe it in more detail. Please answer my questions.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 25 50 75 100 2023, and symbols # ## ### $ % & * ( ) - + = / \\ : ; , . ? !
The image shows a person, a building, a car, a tree, a road, some people and the sky with clouds.
Assistant: Human: answer question picture image photo camera color white black red blue green.
"""


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- stubs / import

STUBBED_MODULES = (
    # imported at module level by dataset / runner / task / eval code that minigpt4/__init__.py
    # imports, never called on the paths run here
    "matplotlib", "webdataset", "skimage", "iopath", "decord", "wandb", "visual_genome",
    "scipy", "pandas", "nltk", "mmf", "cv2", "gradio",
)


class _PlaceholderMeta(type):
    def __getattr__(cls, name):  # class-level attribute access (decord.bridge.set_bridge(...))
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (_Placeholder,), {"__module__": cls.__module__})


class _Placeholder(metaclass=_PlaceholderMeta):
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
        cls = _PlaceholderMeta(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in STUBBED_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


class Official(types.SimpleNamespace):
    pass


_OFFICIAL = None


def import_official(upstream: Path) -> Official:
    """Import the exported official package (stubs for import-only dependencies)."""
    global _OFFICIAL
    if _OFFICIAL is not None:
        return _OFFICIAL
    upstream = upstream.resolve()
    sys.meta_path.insert(0, _StubFinder())
    # torchvision 0.28.0 from PyPI is a CUDA build whose C extension cannot load against the CPU
    # torch; its _meta_registrations then fails registering fake kernels (nms, roi_align).
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    sys.path.insert(0, str(upstream))
    import transformers

    import minigpt4  # noqa: F401  (registers models, processors, builders, tasks)
    from minigpt4.common import eval_utils
    from minigpt4.common.config import Config
    from minigpt4.common.registry import registry
    from minigpt4.conversation import conversation
    from minigpt4.models import base_model, eva_vit, minigpt_base, minigpt_v2, modeling_llama
    from minigpt4.models import minigpt4 as minigpt4_model
    from minigpt4.models import Qformer

    _OFFICIAL = Official(
        root=upstream, transformers=transformers, Config=Config, registry=registry,
        conversation=conversation, eval_utils=eval_utils, base_model=base_model,
        eva_vit=eva_vit, minigpt_base=minigpt_base, minigpt_v2=minigpt_v2,
        minigpt4_model=minigpt4_model, modeling_llama=modeling_llama, Qformer=Qformer,
    )
    install_tiny_patches(_OFFICIAL, tiny=True)
    return _OFFICIAL


# --------------------------------------------------------------------------- patches

class _Patches:
    vit_shape = dict(VIT_TINY)
    bert = dict(BERT_TINY)
    vit_calls: list = []


def install_tiny_patches(up: Official, tiny: bool) -> None:
    """Patch 1: tiny EVA ViT shape; patch 2: tiny BERT config; patch 3: fp32 LLM load."""
    _Patches.vit_shape = dict(VIT_TINY if tiny else VIT_FULL)
    _Patches.bert = dict(BERT_TINY if tiny else BERT_BASE_UNCASED)
    if getattr(up, "_patched", False):
        return
    up._patched = True

    original_vit = up.eva_vit.VisionTransformer

    def vision_transformer(**kwargs):
        # create_eva_vit_g passes the EVA ViT-g shape; check it, then shrink only the shape.
        fixed = dict(embed_dim=1408, depth=39, num_heads=1408 // 88, mlp_ratio=4.3637,
                     patch_size=14, use_mean_pooling=False, qkv_bias=True)
        for k, v in fixed.items():
            assert kwargs[k] == v, (k, kwargs[k])
        norm = kwargs["norm_layer"]
        assert norm.func is torch.nn.LayerNorm and norm.keywords == {"eps": 1e-6}
        _Patches.vit_calls.append({k: v for k, v in kwargs.items() if k != "norm_layer"})
        kwargs.update(_Patches.vit_shape)
        return original_vit(**kwargs)

    up.eva_vit.VisionTransformer = vision_transformer
    up.original_VisionTransformer = original_vit

    bert_cls = up.minigpt4_model.BertConfig

    class TinyBertConfig(bert_cls):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):
            assert name == "bert-base-uncased" and not args and not kwargs
            return bert_cls(**_Patches.bert)

    up.minigpt4_model.BertConfig = TinyBertConfig

    llama_cls = up.base_model.LlamaForCausalLM
    assert llama_cls is up.modeling_llama.LlamaForCausalLM

    class FP32Load:
        """init_llm loads the LLM with torch_dtype=torch.float16; load it in float32 instead."""

        load_calls: list = []

        @staticmethod
        def from_pretrained(path, **kwargs):
            FP32Load.load_calls.append({k: str(v) for k, v in kwargs.items()})
            assert kwargs.get("torch_dtype") == torch.float16, kwargs
            kwargs["torch_dtype"] = torch.float32
            return llama_cls.from_pretrained(path, **kwargs)

    up.base_model.LlamaForCausalLM = FP32Load
    up.FP32Load = FP32Load


# --------------------------------------------------------------------------- helpers

def tensor_stats(t: torch.Tensor) -> dict:
    a = t.detach().to(torch.float32).cpu().numpy()
    return {
        "shape": list(a.shape),
        "sum": float(a.astype(np.float64).sum()),
        "abs_sum": float(np.abs(a.astype(np.float64)).sum()),
    }


def sha256_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def sha256_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def exact_list(t: torch.Tensor) -> list:
    return [float(v) for v in t.detach().to(torch.float32).cpu().numpy().reshape(-1)]


def init_module(module: torch.nn.Module, gen: torch.Generator, head_names=()) -> None:
    """Non-trivial random init: weights N(0, 1/fan_in), norms 1 + 0.1 N, embeddings N(0, 1), heads
    N(0, 9/fan_in), biases N(0, 0.02^2); every parameter is set, in named_modules() order."""
    done = set()

    def normal(p, std, mean=0.0):
        p.data.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean)
        done.add(id(p))

    for mname, mod in module.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(mod, torch.nn.Linear) and pname == "weight":
                std = (3.0 if mname in head_names else 1.0) / math.sqrt(p.shape[1])
                normal(p, std)
            elif isinstance(mod, torch.nn.Conv2d) and pname == "weight":
                normal(p, 1.0 / math.sqrt(p[0].numel()))
            elif isinstance(mod, torch.nn.Embedding):
                normal(p, 1.0)
            elif pname == "weight" and p.dim() == 1:  # LayerNorm, LlamaRMSNorm
                normal(p, 0.1, mean=1.0)
            elif pname == "bias" or pname in ("q_bias", "v_bias"):
                normal(p, 0.02)
            elif pname in ("cls_token", "query_tokens"):
                normal(p, 1.0)
            elif pname == "pos_embed":
                normal(p, 0.5)
            else:
                raise AssertionError(f"no init rule for {full} {tuple(p.shape)}")
    for name, p in module.named_parameters():
        assert id(p) in done, name


def lavis_checkpoint(state_dict: dict, saved_params: list, config: dict) -> dict:
    """The layout runner_base._save_checkpoint writes (same code in LAVIS, which wrote the BLIP-2
    file): {"model", "optimizer", "config", "scaler", "epoch"}. Only "model" is ever read."""
    opt = torch.optim.AdamW(saved_params, lr=1e-4, weight_decay=0.05)
    return {"model": state_dict, "optimizer": opt.state_dict(), "config": config, "scaler": None,
            "epoch": 0}


def trainable_state_dict(model: torch.nn.Module) -> dict:
    """runner_base._save_checkpoint's selection: the state_dict minus parameters that do not
    require grad (buffers are kept)."""
    grad = {k: v.requires_grad for k, v in model.named_parameters()}
    sd = model.state_dict()
    return {k: v.detach().clone() for k, v in sd.items() if not (k in grad and not grad[k])}


# --------------------------------------------------------------------------- tokenizer

def train_sentencepiece(work: Path) -> Path:
    import sentencepiece as spm

    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    corpus.write_text(TOKENIZER_CORPUS * 3)
    prefix = work / "tiny_llama"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), model_type="bpe", vocab_size=SP_VOCAB,
        byte_fallback=True, split_digits=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity",
        allow_whitespace_only_pieces=True, split_by_unicode_script=True,
        split_by_whitespace=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, num_threads=1, shuffle_input_sentence=False, max_sentence_length=4192,
        unk_surface=" \u2047 ", minloglevel=2,
    )
    return prefix.with_suffix(".model")


def write_tokenizer(up: Official, sp_model: Path, dest: Path) -> None:
    tok = up.transformers.LlamaTokenizer(vocab_file=str(sp_model))
    tok.save_pretrained(str(dest))


# --------------------------------------------------------------------------- writing the files

def write_vit(up: Official, path: Path, gen: torch.Generator) -> dict:
    """eva_vit_g.pth: a bare state_dict (create_eva_vit_g torch.loads it and loads it with
    strict=False after interpolate_pos_embed), float16 like the released file, 224 px, with one
    block more than the model builds (EXTRA_VIT_BLOCKS; ignored by the strict=False load)."""
    shape = dict(VIT_TINY, depth=VIT_TINY["depth"] + EXTRA_VIT_BLOCKS)
    vit = up.original_VisionTransformer(
        img_size=224, patch_size=14, use_mean_pooling=False, qkv_bias=True, drop_path_rate=0,
        norm_layer=__import__("functools").partial(torch.nn.LayerNorm, eps=1e-6), **shape)
    init_module(vit, gen)
    sd = {k: v.detach().to(torch.float16).clone() for k, v in vit.state_dict().items()}
    torch.save(sd, path)
    return sd


def write_qformer(up: Official, path: Path, gen: torch.Generator) -> dict:
    """blip2_pretrained_flant5xxl.pth: {"model": ...} with query_tokens, ln_vision, the Q-Former
    (MiniGPT4.init_Qformer's module: text embeddings, LM head and text FFNs removed, as LAVIS
    Blip2T5 removes them before training) and t5_proj (unused by MiniGPT-4), float32."""
    qformer, query_tokens = up.minigpt4_model.MiniGPT4.init_Qformer(
        NUM_QUERY_TOKEN, VIT_TINY["embed_dim"], True)
    holder = torch.nn.Module()
    holder.query_tokens = query_tokens
    holder.ln_vision = up.base_model.LayerNorm(VIT_TINY["embed_dim"])
    holder.Qformer = qformer
    holder.t5_proj = torch.nn.Linear(BERT_TINY["hidden_size"], T5_PROJ_OUT["tiny"])
    init_module(holder, gen)
    sd = {k: v.detach().clone() for k, v in holder.state_dict().items()}
    config = {"model": {"arch": "pretrain_flant5xxl", "num_query_token": NUM_QUERY_TOKEN,
                        "note": "vlmzoo tiny stand-in for LAVIS blip2_pretrained_flant5xxl.pth"}}
    torch.save(lavis_checkpoint(sd, [p for p in holder.parameters()], config), path)
    return sd


def write_llm(up: Official, which: str, dest: Path, sp_model: Path, gen: torch.Generator) -> dict:
    """An HF LLaMA folder as init_llm reads it (LlamaTokenizer.from_pretrained(use_fast=False),
    LlamaForCausalLM.from_pretrained), weights float16 like the released Vicuna / Llama-2 ones."""
    tr = up.transformers
    cfg = tr.LlamaConfig(**LLM_TINY[which], **LLM_COMMON)
    model = tr.LlamaForCausalLM(cfg)
    init_module(model, gen, head_names=("lm_head",))
    model = model.to(torch.float16)
    model.save_pretrained(str(dest), safe_serialization=True)
    write_tokenizer(up, sp_model, dest)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def eval_options(variant: str, ckpt_dir: Path, with_ckpt: bool) -> list:
    v = VARIANTS[variant]
    opts = [f"model.llama_model={ckpt_dir / v['llm_dir']}", "model.low_resource=False",
            f"model.ckpt={ckpt_dir / v['ckpt'] if with_ckpt else ''}"]
    if v["qformer_file"]:
        opts.append(f"model.q_former_model={ckpt_dir / v['qformer_file']}")
    return opts


def build_official(up: Official, variant: str, ckpt_dir: Path, with_ckpt: bool):
    """demo.py / demo_v2.py: Config(args) -> registry model class -> from_config(model_cfg)."""
    v = VARIANTS[variant]
    args = argparse.Namespace(cfg_path=str(up.root / v["eval_config"]),
                              options=eval_options(variant, ckpt_dir, with_ckpt))
    cfg = up.Config(args)
    model_cls = up.registry.get_model_class(cfg.model_cfg.arch)
    with contextlib.redirect_stdout(io.StringIO()):
        model = model_cls.from_config(cfg.model_cfg)
    return cfg, model


@contextlib.contextmanager
def torch_home(ckpt_dir: Path, work: Path):
    """create_eva_vit_g looks for eva_vit_g.pth in $TORCH_HOME/hub/checkpoints/ (timm's cache)
    and would fetch it from the network if it were missing: the variant's tiny file is put there
    first, so nothing is ever fetched."""
    hub = work / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt_dir / "eva_vit_g.pth", hub / "eva_vit_g.pth")
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(work / "torch_home")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old


def llm_of(model):
    """The LlamaForCausalLM instance (inside the peft wrapper for MiniGPT-v2)."""
    lm = model.llama_model
    if hasattr(lm.base_model, "model"):  # same test as MiniGPTBase.embed_tokens
        return lm.base_model.model
    return lm


def write_vlmzoo_settings(variant: str, ckpt_dir: Path) -> None:
    """minigpt4.json: vlmzoo's optional settings file (the official code never reads it). The
    released sizes are hard-coded in the official code (create_eva_vit_g, bert-base-uncased's
    config); the tiny ones that patches 1 and 2 put in their place are written here, so that
    vlmzoo builds the same tiny modules. Attention heads cannot be read off tensor shapes."""
    settings = {"vit": dict(VIT_TINY)}
    if VARIANTS[variant]["qformer_file"]:
        settings["qformer"] = {k: BERT_TINY[k] for k in ("hidden_size", "num_hidden_layers",
                                                        "num_attention_heads", "intermediate_size")}
    (ckpt_dir / "minigpt4.json").write_text(json.dumps(settings, indent=1) + "\n")


def write_variant(up: Official, variant: str, ckpt_dir: Path, work: Path, shared: dict) -> dict:
    v = VARIANTS[variant]
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    for name in ("eva_vit_g.pth", "blip2_pretrained_flant5xxl.pth"):
        if name == "eva_vit_g.pth" or v["qformer_file"] == name:
            shutil.copyfile(shared[name], ckpt_dir / name)
    shutil.copytree(shared["llm_" + v["llm"]], ckpt_dir / v["llm_dir"])
    write_vlmzoo_settings(variant, ckpt_dir)
    # Build the official model without a MiniGPT checkpoint, give the parameters that training
    # would have saved (those requiring grad) random values, and save them as _save_checkpoint.
    with torch_home(ckpt_dir, work):
        cfg, model = build_official(up, variant, ckpt_dir, with_ckpt=False)
    gen = torch.Generator().manual_seed(v["seed"])
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    holder_names = sorted(n for n, _ in trainable)
    for n, p in trainable:
        if n.endswith("lora_A.weight") or n.endswith("lora_B.weight") or n == "llama_proj.weight":
            p.data.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
        elif n == "llama_proj.bias":
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        else:
            raise AssertionError(f"unexpected trainable parameter {n}")
    sd = trainable_state_dict(model)
    config = {"model": {"arch": cfg.model_cfg.arch, "model_type": v["model_type"],
                        "note": "vlmzoo tiny stand-in; runner_base._save_checkpoint layout"}}
    torch.save(lavis_checkpoint(sd, [p for _, p in trainable], config), ckpt_dir / v["ckpt"])
    return {"trainable_parameters": holder_names, "checkpoint_keys": list(sd.keys()),
            "values": {k: t.clone() for k, t in sd.items()}}


# --------------------------------------------------------------------------- recording

class Recorder:
    def __init__(self):
        self.reset()

    def reset(self):
        self.tok_calls = []
        self.step_logits = []
        self.scores = []
        self.generate_out = None
        self.context = None
        self.stats = {}
        self.pixels = None


class ScoreRecorder:
    """Appended to generate()'s LogitsProcessorList: records the processed scores (values pass
    through unchanged)."""

    def __init__(self, rec: Recorder):
        self.rec = rec

    def __call__(self, input_ids, scores):
        self.rec.scores.append(scores.detach().clone())
        return scores


def install_recorders(up: Official, model, chat, rec: Recorder) -> None:
    tok = model.llama_tokenizer
    base = type(tok)

    def call(self, text, *args, **kwargs):
        out = base.__call__(self, text, *args, **kwargs)
        if isinstance(text, str):
            rec.tok_calls.append({"text": text,
                                  "add_special_tokens": kwargs.get("add_special_tokens", True),
                                  "ids": out["input_ids"].reshape(-1).tolist()})
        return out

    tok.__class__ = type("Recording" + base.__name__, (base,), {"__call__": call})

    llm = llm_of(model)

    def logits_hook(mod, args, out):
        rec.step_logits.append(out.logits[:, -1, :].detach().clone())

    llm.register_forward_hook(logits_hook)
    orig_glp = llm._get_logits_processor

    def get_logits_processor(*args, **kwargs):
        lst = orig_glp(*args, **kwargs)
        lst.append(ScoreRecorder(rec))
        return lst

    llm._get_logits_processor = get_logits_processor

    orig_generate = model.llama_model.generate

    def generate(*args, **kwargs):
        out = orig_generate(*args, **kwargs)
        rec.generate_out = out.detach().clone()
        rec.generate_kwargs = {k: (list(v.shape) if torch.is_tensor(v) else v)
                               for k, v in kwargs.items() if k != "stopping_criteria"}
        return out

    model.llama_model.generate = generate

    orig_ctx = model.get_context_emb

    def get_context_emb(prompt, img_list):
        rec.tok_calls = []
        embs = orig_ctx(prompt, img_list)
        rec.context = {"prompt": prompt, "calls": list(rec.tok_calls), "embs": embs.detach().clone(),
                       "n_images": len(img_list), "image_lengths": [int(e.shape[1]) for e in img_list]}
        return embs

    model.get_context_emb = get_context_emb

    def stat_hook(name):
        def hook(mod, args, out):
            t = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
            rec.stats[name] = t.detach().clone()
        return hook

    model.visual_encoder.register_forward_hook(stat_hook("visual_encoder"))
    model.ln_vision.register_forward_hook(stat_hook("ln_vision"))
    if getattr(model, "has_qformer", False):
        model.Qformer.bert.register_forward_hook(stat_hook("qformer"))
    model.llama_proj.register_forward_hook(stat_hook("llama_proj"))

    if chat is not None:
        proc = chat.vis_processor

        def processor(image):
            out = proc(image)
            rec.pixels = out.detach().clone()
            return out

        chat.vis_processor = processor


def greedy_chat(up: Official, chat) -> None:
    """Chat.answer_prepare hard-codes do_sample=True (top_p 0.9): the reference runs are greedy,
    so model_generate gets do_sample=False; every other generate() argument is the official one."""
    cls_generate = type(chat).model_generate

    def model_generate(*args, **kwargs):
        assert kwargs.get("do_sample") is True
        kwargs["do_sample"] = False
        return cls_generate(chat, *args, **kwargs)

    chat.model_generate = model_generate


def pixel_record(px: torch.Tensor) -> dict:
    a = px.detach().to(torch.float32).cpu().numpy()
    return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": sha256_array(a),
            "sum": float(a.astype(np.float64).sum()), "abs_sum": float(np.abs(a.astype(np.float64)).sum()),
            "first_values": [float(x) for x in a.reshape(-1)[:8]],
            "channel_means": [float(a[0, c].astype(np.float64).mean()) for c in range(a.shape[1])]}


def context_record(ctx: dict) -> dict:
    segs = []
    pieces = ctx["prompt"].split("<ImageHere>")
    assert len(ctx["calls"]) == len(pieces)
    pos = 0
    layout = []
    for i, (seg, call) in enumerate(zip(pieces, ctx["calls"])):
        assert call["text"] == seg and call["add_special_tokens"] == (i == 0)
        segs.append({"text": seg, "add_special_tokens": i == 0, "ids": call["ids"]})
        layout.append({"kind": "text", "start": pos, "length": len(call["ids"])})
        pos += len(call["ids"])
        if i < len(ctx["image_lengths"]):
            layout.append({"kind": "image", "index": i, "start": pos, "length": ctx["image_lengths"][i]})
            pos += ctx["image_lengths"][i]
    assert pos == ctx["embs"].shape[1]
    return {"prompt": ctx["prompt"], "segments": segs, "layout": layout,
            "embeds": tensor_stats(ctx["embs"])}


def gaps(scores: list, tokens: list) -> tuple:
    out = []
    for s, t in zip(scores, tokens):
        row = s[0].to(torch.float64)
        top = torch.topk(row, 2)
        assert int(top.indices[0]) == int(t), ("greedy token is not the argmax of the processed scores",
                                                int(top.indices[0]), int(t), [float(x) for x in top.values], float(row[int(t)]))
        out.append(float(top.values[0] - top.values[1]))
    return out


def stop_reason(tokens: list, stops: list, eos: int, max_new: int) -> str:
    for s in stops:
        if len(tokens) >= len(s) and tokens[-len(s):] == s:
            return "stop_words" if s != [eos] else "eos(stop_words)"
    if tokens and tokens[-1] == eos:
        return "eos"
    return "max_new_tokens" if len(tokens) == max_new else "other"


def run_chat_turn(up, chat, model, rec, conv, img_list, user_text, stops, eos) -> dict:
    chat.ask(user_text, conv)
    rec.step_logits, rec.scores, rec.context = [], [], None
    text, tokens = chat.answer(conv=conv, img_list=img_list, num_beams=1, temperature=1.0,
                               max_new_tokens=MAX_NEW_TOKENS, max_length=2000)
    tokens = [int(t) for t in tokens]
    gen = rec.generate_out[0].tolist()
    assert gen == tokens, (gen, tokens)
    # transformers 4.30 generate(inputs_embeds=...) starts input_ids with one bos_token_id, which
    # stays at the front of the output: output = [bos] + new tokens
    assert tokens[0] == model.llama_tokenizer.bos_token_id
    new = tokens[1:]
    g = gaps(rec.scores, new)
    raw_first = rec.step_logits[0][0]
    rec_out = {
        "user_text": user_text,
        "context": context_record(rec.context),
        "first_logits": exact_list(raw_first),
        "first_processed_scores_differ_at": sorted(
            int(i) for i in torch.nonzero(rec.scores[0][0] != raw_first).reshape(-1)),
        "output": tokens,
        "new_tokens": new,
        "decoded_skip_special": model.llama_tokenizer.decode(tokens, skip_special_tokens=True),
        "answer": text,
        "stopped_by": stop_reason(new, stops, eos, MAX_NEW_TOKENS),
        "messages_after": [[r, m] for r, m in conv.messages],
    }
    return rec_out, min(g)


def run_variant(up: Official, variant: str, ckpt_dir: Path, work: Path, written: dict,
                out_dir: Path) -> tuple:
    v = VARIANTS[variant]
    torch.manual_seed(SEED)
    with torch_home(ckpt_dir, work):
        cfg, model = build_official(up, variant, ckpt_dir, with_ckpt=True)
    # minigpt4/models/__init__.py load_model(..., device="cpu"): model.float() on CPU (the ViT is
    # built with vit_precision fp16: Linear/Conv weights .half(), exact here as eva_vit_g.pth is
    # float16). eval(): demo_v2.py calls it; for MiniGPT-4 every dropout is already inactive.
    model = model.float().eval()
    load = check_loaded(up, variant, model, ckpt_dir, written)

    vis_cfg = cfg.datasets_cfg.cc_sbu_align.vis_processor.train
    vis_processor = up.registry.get_processor_class(vis_cfg.name).from_config(vis_cfg)
    tok = model.llama_tokenizer
    eos = int(tok.eos_token_id)
    conversation = up.conversation
    if v["demo"] == "demo.py":
        # demo.py: stop_words_ids = [[835], [2277, 29937]] (LLaMA ids of '###' and '##', '#')
        stops = [[tok.sp_model.piece_to_id("###")],
                 [tok.sp_model.piece_to_id("##"), tok.sp_model.piece_to_id("#")]]
        assert all(i != tok.unk_token_id for s in stops for i in s)
        stop_tensors = [torch.tensor(s) for s in stops]
        crit = up.transformers.StoppingCriteriaList(
            [conversation.StoppingCriteriaSub(stops=stop_tensors)])
        chat = conversation.Chat(model, vis_processor, device="cpu", stopping_criteria=crit)
    else:
        chat = conversation.Chat(model, vis_processor, device="cpu")  # default stop: [[2]]
        stops = [[2]]
    greedy_chat(up, chat)
    rec = Recorder()
    install_recorders(up, model, chat, rec)
    conv_template = getattr(conversation, v["conv"])

    ref = {
        "variant": variant,
        "upstream": {"repository": UPSTREAM_REPO, "commit": UPSTREAM_COMMIT,
                     "eval_config": v["eval_config"], "model_type": v["model_type"],
                     "demo": v["demo"], "conversation": v["conv"]},
        "versions": versions(up),
        "dtype": "float32",
        "seed": SEED,
        "max_new_tokens": MAX_NEW_TOKENS,
        "model_cfg": model_cfg_record(cfg, ckpt_dir),
        "vis_processor": {"name": vis_cfg.name, "image_size": int(vis_cfg.image_size),
                          "mean": [0.48145466, 0.4578275, 0.40821073],
                          "std": [0.26862954, 0.26130258, 0.27577711]},
        "tokenizer": tokenizer_record(tok, model),
        "stop_words_ids": stops,
        "conversation_template": {"system": conv_template.system, "roles": list(conv_template.roles),
                                  "sep": conv_template.sep, "sep_style": conv_template.sep_style.name,
                                  "offset": conv_template.offset},
        "chat_answer_defaults": {"max_new_tokens": "300 (demo.py) / 500 (demo_v2.py); 24 here",
                                 "num_beams": 1, "min_length": 1, "top_p": 0.9,
                                 "repetition_penalty": 1.05, "length_penalty": 1,
                                 "temperature": "1.0 (demo.py slider) / 0.6 (demo_v2.py slider)",
                                 "max_length": 2000, "do_sample": "True in answer_prepare; False here"},
        "load_check": load,
        "images": {},
    }
    diag = {}
    for name in IMAGES:
        path = IMAGES_DIR / name
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        img = {"width": w, "height": h}
        rec.reset()
        conv = conv_template.copy()
        img_list = []
        chat.upload_img(str(path), conv, img_list)
        chat.encode_img(img_list)
        img["pixels"] = pixel_record(rec.pixels)
        img["visual_encoder"] = tensor_stats(rec.stats["visual_encoder"])
        img["ln_vision"] = tensor_stats(rec.stats["ln_vision"])
        if "qformer" in rec.stats:
            img["qformer"] = tensor_stats(rec.stats["qformer"])
        feats = img_list[0]
        img["image_embeds"] = tensor_stats(feats)
        assert torch.equal(feats, rec.stats["llama_proj"])
        if name in FEATURE_FILES:
            fname = f"image-embeds-{Path(name).stem}.npy"
            np.save(out_dir / fname, feats[0].detach().to(torch.float32).numpy())
            img["image_embeds_file"] = fname
        diag[name] = {}
        if variant == "minigptv2":
            tasks = [t for t in V2_CHAT_TASKS if t in V2_ALL_IMAGE_TASKS or name in DETAIL_IMAGES]
            for i, task in enumerate(tasks):
                if i == 0:
                    c, il = conv, img_list
                else:  # a new conversation: demo_v2 resets the state for each new image upload
                    c, il = conv_template.copy(), []
                    chat.upload_img(str(path), c, il)
                    chat.encode_img(il)
                    assert torch.equal(il[0], feats)
                turn, gap = run_chat_turn(up, chat, model, rec, c, il, V2_CHAT_TASKS[task], stops, eos)
                img[task] = turn
                diag[name][task] = {"min_greedy_margin": gap}
        else:
            turn, gap = run_chat_turn(up, chat, model, rec, conv, img_list, QUESTION, stops, eos)
            img["question"] = turn
            diag[name]["question"] = {"min_greedy_margin": gap}
            if name in DETAIL_IMAGES:
                turn2, gap2 = run_chat_turn(up, chat, model, rec, conv, img_list, FOLLOW_UP, stops, eos)
                img["multi_turn"] = turn2
                diag[name]["multi_turn"] = {"min_greedy_margin": gap2}
        ref["images"][name] = img

    ref["answer_postprocessing"] = chat_postprocessing(up, chat, model)
    if variant == "minigptv2":
        ev, ev_gap = run_eval_generate(up, model, vis_processor, rec)
        ref["eval_generate"] = ev
        diag["eval_generate"] = {"min_greedy_margin": ev_gap}
        ref["eval_generate_postprocessing"] = eval_postprocessing(up, model, vis_processor, rec)
        ref["box_parsing"] = box_parsing(up)
        ref["pos_embed_interpolation"] = {
            "file_shape": list(written["vit_sd"]["pos_embed"].shape),
            "model_shape": list(model.visual_encoder.pos_embed.shape),
            "model_pos_embed": tensor_stats(model.visual_encoder.pos_embed),
            "model_pos_embed_sha256": sha256_array(
                model.visual_encoder.pos_embed.detach().numpy().astype(np.float32)),
            "note": "create_eva_vit_g -> interpolate_pos_embed: 16x16 grid -> 32x32, bicubic, "
                    "align_corners=False, in float32; class token row kept",
        }
    return ref, diag


def versions(up) -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for p in ("torch", "torchvision", "transformers", "tokenizers", "sentencepiece", "peft",
              "timm", "omegaconf", "numpy", "pillow", "safetensors", "accelerate"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def model_cfg_record(cfg, ckpt_dir: Path) -> dict:
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(cfg.model_cfg, resolve=True)
    for k in ("llama_model", "ckpt", "q_former_model"):
        if k in d and isinstance(d[k], str) and d[k].startswith(str(ckpt_dir)):
            d[k] = os.path.relpath(d[k], ckpt_dir)
    return d


def tokenizer_record(tok, model) -> dict:
    specials = {"unk": tok.unk_token_id, "bos": tok.bos_token_id, "eos": tok.eos_token_id,
                "pad_token": tok.pad_token, "pad": tok.pad_token_id}
    pieces = {p: tok.sp_model.piece_to_id(p) for p in ("###", "##", "#", "\u2581###", "\u2581")}
    return {"class": type(tok).__mro__[1].__name__, "len": len(tok), "sp_vocab": tok.sp_model.get_piece_size(),
            "llm_vocab_size": int(llm_of(model).config.vocab_size), "special_ids": specials,
            "pieces": pieces, "add_bos_token": tok.add_bos_token, "add_eos_token": tok.add_eos_token}


def check_loaded(up, variant, model, ckpt_dir, written) -> dict:
    """Every loaded tensor equals what was written (float16 files compared after .float())."""
    v = VARIANTS[variant]
    out = {"checked": []}
    vit_sd = written["vit_sd"]
    vsd = model.visual_encoder.state_dict()
    for k, t in vsd.items():
        if k == "pos_embed" and t.shape != vit_sd[k].shape:
            continue  # MiniGPT-v2 448 px: interpolated at load
        assert torch.equal(t, vit_sd[k].float()), k
    out["checked"].append("visual_encoder <- eva_vit_g.pth")
    out["eva_vit_g_keys_not_loaded"] = sorted(set(vit_sd) - set(vsd))
    if v["qformer_file"]:
        q = written["qformer_sd"]
        msd = model.state_dict()
        for k, t in q.items():
            if k.startswith("t5_proj"):
                assert k not in msd
                continue
            assert torch.equal(msd[k], t.float()), k
        out["checked"].append("query_tokens, ln_vision, Qformer <- blip2_pretrained_flant5xxl.pth")
    else:
        ln = model.ln_vision
        assert torch.equal(ln.weight, torch.ones_like(ln.weight)) and torch.equal(ln.bias, torch.zeros_like(ln.bias))
        out["ln_vision"] = ("not in any file: frozen and never loaded, stays nn.LayerNorm's init "
                            "(weight 1, bias 0, eps 1e-5)")
    llm = llm_of(model)
    llm_sd = written["llm_" + v["llm"]]
    lsd = llm.state_dict()
    ckpt_vals = written[variant]["values"]
    merged = []
    for k, t in llm_sd.items():
        if k == "lm_head.weight" and k not in lsd:
            # peft 0.2.0 prepare_model_for_int8_training wraps lm_head in CastOutputToFloat
            # (an nn.Sequential): the module's key becomes lm_head.0.weight
            assert "lm_head.0.weight" in lsd
            k2 = "lm_head.0.weight"
        else:
            k2 = k
        a_key = "llama_model.base_model.model." + k.replace(".weight", ".lora_A.weight")
        if k.endswith(".weight") and a_key in ckpt_vals:
            # peft 0.2.0 lora.Linear: LoraConfig.merge_weights defaults to False, so eval() does not
            # merge; forward = x W^T + lora_B(lora_A(dropout(x))) * lora_alpha / r
            mod = llm.get_submodule(k[: -len(".weight")])
            assert not mod.merged and not mod.merge_weights and mod.scaling == 16 / 64
            assert not mod.lora_dropout.training
            merged.append(k)
        assert torch.equal(lsd[k2], t.float()), k
    out["checked"].append(f"llama_model <- {v['llm_dir']}/model.safetensors")
    if merged:
        out["lora"] = {"modules": merged, "r": 64, "lora_alpha": 16, "scaling": 16 / 64,
                       "merged": False, "dropout": "0.05, inactive after eval()",
                       "forward": "x @ W.T + ((x @ lora_A.weight.T) @ lora_B.weight.T) * 0.25"}
    msd = model.state_dict()
    for k, t in written[variant]["values"].items():
        assert torch.equal(msd[k], t.float()), k  # lora_A / lora_B stay as loaded after the merge
    out["checked"].append(f"{sorted(set(k.split('.')[0] for k in written[variant]['values']))} <- {v['ckpt']}")
    out["checkpoint_model_keys"] = written[variant]["checkpoint_keys"]
    out["trainable_parameters_at_save"] = written[variant]["trainable_parameters"]
    out["llm_load_kwargs"] = up.FP32Load.load_calls[-1]
    out["vit_create_kwargs"] = {k: (str(val) if not isinstance(val, (int, float, bool)) else val)
                                for k, val in _Patches.vit_calls[-1].items()}
    return out


# --------------------------------------------------------------------------- post-processing

def crafted_sequences(tok) -> list:
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    bos, eos, unk = tok.bos_token_id, tok.eos_token_id, tok.unk_token_id
    return [
        ("plain", enc("a cat on a mat")),
        ("stop_###", enc("a cat") + [tok.sp_model.piece_to_id("###")] + enc("Human: hi")),
        ("assistant_prefix", enc("Assistant: the dog")),
        ("eos_end", enc("a red cup") + [eos]),
        ("leading_unk_bos", [unk, bos] + enc("white")),
        ("inst_tags", enc("[INST] question [/INST] answer")),
        ("box", enc("{<12><34><56><78>}") + [eos]),
    ]


def chat_postprocessing(up, chat, model) -> list:
    """Chat.answer on fixed token sequences (model_generate replaced by a stand-in returning them):
    decode(skip_special_tokens=True), split('###')[0], split('Assistant:')[-1].strip()."""
    tok = model.llama_tokenizer
    out = []
    saved = chat.model_generate
    try:
        for label, ids in crafted_sequences(tok):
            chat.model_generate = lambda *a, _ids=ids, **k: torch.tensor([_ids])
            conv = getattr(up.conversation, "CONV_VISION_minigptv2").copy()
            conv.append_message(conv.roles[0], "<Img><ImageHere></Img> hi")
            with contextlib.redirect_stdout(io.StringIO()):
                text, toks = chat.answer(conv, [torch.zeros(1, 1, llm_of(model).config.hidden_size)])
            out.append({"label": label, "ids": ids, "answer": text})
    finally:
        chat.model_generate = saved
    return out


def run_eval_generate(up, model, vis_processor, rec) -> tuple:
    """eval_scripts/eval_vqa.py, eval_ref.py: prepare_texts(questions, conv_temp) with
    CONV_VISION_minigptv2 and system "", then model.generate(images, texts, do_sample=False)."""
    from PIL import Image

    conv_temp = up.conversation.CONV_VISION_minigptv2.copy()
    conv_temp.system = ""
    images, questions = [], []
    for name, q in V2_EVAL_BATCH:
        with Image.open(IMAGES_DIR / name) as im:
            images.append(vis_processor(im.convert("RGB")))
        questions.append(q)
    texts = up.eval_utils.prepare_texts(questions, conv_temp)
    rec.step_logits, rec.scores = [], []
    contexts = []
    orig = model.get_context_emb

    def ctx(prompt, img_list):
        embs = orig(prompt, img_list)
        contexts.append(context_record(rec.context))
        return embs

    model.get_context_emb = ctx
    try:
        answers = model.generate(torch.stack(images), texts, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    finally:
        model.get_context_emb = orig
    outs = rec.generate_out.tolist()
    res = {"questions": questions, "texts": texts, "images": [n for n, _ in V2_EVAL_BATCH],
           "contexts": contexts, "generate_kwargs": rec.generate_kwargs,
           "padded_length": max(c["layout"][-1]["start"] + c["layout"][-1]["length"] for c in contexts),
           "left_padding": [], "rows": []}
    margins = []
    for i, (o, a) in enumerate(zip(outs, answers)):
        L = contexts[i]["layout"][-1]["start"] + contexts[i]["layout"][-1]["length"]
        res["left_padding"].append(res["padded_length"] - L)
        assert o[0] == model.llama_tokenizer.bos_token_id  # generate(inputs_embeds=...) in 4.30
        new = o[1:]
        eos_at = new.index(2) if 2 in new else None
        row_scores = [s[i:i + 1] for s in rec.scores]
        live = new if eos_at is None else new[:eos_at + 1]
        margins.append(min(gaps(row_scores[:len(live)], live)))
        res["rows"].append({"output": o, "new_tokens": new, "answer": a,
                            "first_logits": exact_list(rec.step_logits[0][i])})
    return res, min(margins)


def eval_postprocessing(up, model, vis_processor, rec) -> list:
    """MiniGPTBase.generate's text clean-up on fixed token rows (llama_model.generate replaced by a
    stand-in returning them): drop a leading 0, decode(skip_special_tokens=True),
    split('</s>')[0], replace('<s>', ''), split('[/INST]')[-1].strip()."""
    tok = model.llama_tokenizer
    rows = [ids for _, ids in crafted_sequences(tok)]
    width = max(len(r) for r in rows)
    pad = int(llm_of(model).generation_config.pad_token_id)
    batch = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    saved = model.llama_model.generate
    model.llama_model.generate = lambda *a, **k: batch
    try:
        img = torch.zeros(len(rows), 3, 448, 448)
        answers = model.generate(img, ["<Img><ImageHere></Img>"] * len(rows), max_new_tokens=4)
    finally:
        model.llama_model.generate = saved
    return [{"label": lab, "ids": b, "answer": a}
            for (lab, _), b, a in zip(crafted_sequences(tok), batch.tolist(), answers)]


# --------------------------------------------------------------------------- boxes

class RecordingCV2:
    """Stand-in for cv2 inside demo_v2's visualize_all_bbox_together: records the rectangles it
    draws (fixed text metrics; they only move the labels)."""

    FONT_HERSHEY_COMPLEX = 3
    LINE_AA = 16

    def __init__(self):
        self.rectangles = []

    def getTextSize(self, text, font, scale, thickness):
        return (9 * len(text), 11), 4

    def rectangle(self, img, pt1, pt2, color, thickness):
        self.rectangles.append([int(pt1[0]), int(pt1[1]), int(pt2[0]), int(pt2[1])])
        return img

    def putText(self, img, *args, **kwargs):
        return img


def demo_v2_functions(up) -> dict:
    """Execute demo_v2.py's box helpers (function definitions and the constants they read) from
    the exported file; the rest of the script (model loading, gradio UI) is not run."""
    import html
    from collections import defaultdict

    from PIL import Image
    import torchvision.transforms as T

    src = (up.root / "demo_v2.py").read_text()
    tree = ast.parse(src)
    want_f = {"extract_substrings", "is_overlapping", "computeIoU", "mask2bbox",
              "visualize_all_bbox_together"}
    want_a = {"bounding_box_size", "colors", "used_colors"}
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in want_f:
            body.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in want_a for t in node.targets):
            body.append(node)
    mod = ast.Module(body=body, type_ignores=[])
    cv2 = RecordingCV2()
    ns = {"re": re, "np": np, "Image": Image, "torch": torch, "T": T, "os": os, "html": html,
          "defaultdict": defaultdict, "cv2": cv2}
    exec(compile(mod, str(up.root / "demo_v2.py"), "exec"), ns)
    got = {n.name if isinstance(n, ast.FunctionDef) else n.targets[0].id for n in body}
    assert got == want_f | want_a, got
    ns["_cv2"] = cv2
    return ns


BOX_STRINGS = [
    "{<12><34><56><78>}",
    "<p>a man</p> {<12><34><56><78>}",
    "<p>cup</p> {<1><2><3><4>}<delim>{<50><60><70><80>}",
    "<p>man</p> {<0><0><100><100>} and <p>dog</p> {<5><5><95><95>}",
    "<p>cup</p> {<1><2><3><4>} <p>cup</p> {<5><6><7><8>}",
    "<p>cup</p> {<10><20><30><40>}<p>dog</p> {<5><6",
    "{<-5><10><20><30>}",
    "the cup is at 10 20 30 40",
    "{<12><34><56>}",
    "{<12><34><56><78>}{<1><2><3><4>}",
    "<p>cup</p>{<1><2><3><4>}",
    "a cat on a mat",
    "{ <12> <34> <56> <78> }",
    "<unk>{<12><34><56><78>}",
]


def box_parsing(up) -> dict:
    from PIL import Image

    ns = demo_v2_functions(up)
    cv2 = ns["_cv2"]
    name = "coffee.png"
    with Image.open(IMAGES_DIR / name) as im:
        image = im.convert("RGB")
    W, H = image.size
    rows = []
    for s in BOX_STRINGS:
        cv2.rectangles = []
        vis, colored = ns["visualize_all_bbox_together"](image, s)
        substrings = ns["extract_substrings"](s)
        rows.append({
            "generation": s,
            "extract_substrings": substrings,
            "drawn": vis is not None,
            "rectangles_on_resized": list(cv2.rectangles),
            "resized_size": [500, int(500 / W * H)],
            "generation_colored": colored,
            "eval_ref": eval_ref_parse(s, W, H),
        })
    masks = []
    for box in ([120, 80, 300, 240], [0, 0, 600, 400], [590, 390, 600, 400]):
        m = np.zeros((H, W, 3), dtype=np.uint8)
        m[box[1]:box[3], box[0]:box[2]] = 255
        masks.append({"mask_box_xyxy": box, "mask2bbox": ns["mask2bbox"](Image.fromarray(m))})
    masks.append({"mask_box_xyxy": None, "mask2bbox": ns["mask2bbox"](Image.fromarray(np.zeros((H, W, 3), np.uint8)))})
    return {
        "image": name, "width": W, "height": H, "bounding_box_size": ns["bounding_box_size"],
        "visualize_all_bbox_together": rows,
        "mask2bbox": masks,
        "notes": ("visualize_all_bbox_together (demo_v2.py, run from the exported file with a cv2 "
                  "stand-in recording cv2.rectangle) first resizes the image to width 500 and "
                  "height int(500 / W * H); boxes are int(v / 100 * size) on that resized image. "
                  "eval_ref is this driver's transcription of eval_scripts/eval_ref.py (inline "
                  "script code): answer.replace('<unk>','').replace(' ','').strip(), accepted if "
                  "re.match(r'\\{<\\d{1,3}><\\d{1,3}><\\d{1,3}><\\d{1,3}>\\}', answer), then the "
                  "first four re.findall(r'\\d+') integers / res (100) * original width / height"),
    }


def eval_ref_parse(s: str, W: int, H: int) -> dict:
    answer = s.replace("<unk>", "").replace(" ", "").strip()
    ok = re.match(r"\{<\d{1,3}><\d{1,3}><\d{1,3}><\d{1,3}>\}", answer) is not None
    ints = [int(n) for n in re.findall(r"\d+", answer)]
    box = None
    if len(ints) >= 4:
        box = [ints[0] / 100.0 * W, ints[1] / 100.0 * H, ints[2] / 100.0 * W, ints[3] / 100.0 * H]
    return {"cleaned": answer, "accepted": ok, "box_pixels": box}


# --------------------------------------------------------------------------- tokenizer check

def check_tokenizer(out_root: Path) -> dict:
    """Run in vlmzoo's environment (transformers 5): does AutoTokenizer (no remote code) encode each
    prompt segment as the official LlamaTokenizer of transformers 4.30 did (default arguments, and
    legacy=True), and do AutoTokenizer.decode and sentencepiece's own decode reproduce the
    official decode(output, skip_special_tokens=True)?"""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    result = {}
    for variant, v in VARIANTS.items():
        ref = json.loads((out_root / variant / "reference.json").read_text())
        folder = out_root / variant / "checkpoint" / v["llm_dir"]
        toks = {"default": AutoTokenizer.from_pretrained(str(folder)),
                "legacy=True": AutoTokenizer.from_pretrained(str(folder), legacy=True)}
        sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        specials = {ref["tokenizer"]["special_ids"][k] for k in ("unk", "bos", "eos")}
        turns = []
        for name, img in ref["images"].items():
            for key, turn in img.items():
                if isinstance(turn, dict) and "context" in turn:
                    turns.append((f"{name}/{key}", turn))
        res = {"segments": sum(len(t["context"]["segments"]) for _, t in turns), "answers": len(turns)}
        for label, tok in toks.items():
            bad_enc, bad_dec = [], []
            for where, turn in turns:
                for seg in turn["context"]["segments"]:
                    ids = tok(seg["text"], add_special_tokens=seg["add_special_tokens"])["input_ids"]
                    if ids != seg["ids"]:
                        bad_enc.append(where)
                if tok.decode(turn["output"], skip_special_tokens=True) != turn["decoded_skip_special"]:
                    bad_dec.append(where)
            res[f"AutoTokenizer {label}"] = {"class": type(tok).__name__,
                                             "encode_mismatches": len(bad_enc),
                                             "decode_mismatches": len(bad_dec)}
        bad = [w for w, t in turns
               if sp.decode([i for i in t["output"] if i not in specials]) != t["decoded_skip_special"]]
        res["sentencepiece decode (specials dropped)"] = {"decode_mismatches": len(bad)}
        result[variant] = res
    return result


# --------------------------------------------------------------------------- main

def dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


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

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=Path)
    ap.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--work", type=Path, default=None, help="scratch files (default <upstream>/work)")
    ap.add_argument("--check-tokenizer", action="store_true")
    args = ap.parse_args()
    if args.check_tokenizer:
        print(json.dumps(check_tokenizer(args.out), indent=1, ensure_ascii=False))
        return
    torch.set_num_threads(1)
    up = import_official(args.upstream)
    work = (args.work or args.upstream / "work").resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]

    # shared components: one EVA ViT-g file, one BLIP-2 Q-Former file, two LLMs (the real
    # MiniGPT-4 (Llama 2) and MiniGPT-v2 both use Llama-2-7b-chat-hf)
    sp_model = train_sentencepiece(work / "sp")
    shared, written = {}, {}
    shared["eva_vit_g.pth"] = work / "eva_vit_g.pth"
    written["vit_sd"] = write_vit(up, shared["eva_vit_g.pth"], torch.Generator().manual_seed(COMPONENT_SEEDS["vit"]))
    shared["blip2_pretrained_flant5xxl.pth"] = work / "blip2_pretrained_flant5xxl.pth"
    written["qformer_sd"] = write_qformer(up, shared["blip2_pretrained_flant5xxl.pth"],
                                          torch.Generator().manual_seed(COMPONENT_SEEDS["qformer"]))
    for which in ("vicuna", "llama2"):
        shared["llm_" + which] = work / f"llm_{which}"
        written["llm_" + which] = write_llm(up, which, shared["llm_" + which], sp_model,
                                            torch.Generator().manual_seed(COMPONENT_SEEDS["llm_" + which]))

    for variant in variants:
        out_dir = args.out / variant
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir = out_dir / "checkpoint"
        written[variant] = write_variant(up, variant, ckpt_dir, work, shared)
        ref, diag = run_variant(up, variant, ckpt_dir, work, written, out_dir)
        ref["files"] = {str(p.relative_to(out_dir)): sha256_file(p)
                        for p in sorted(ckpt_dir.rglob("*")) if p.is_file()}
        ref["tiny_shapes"] = {"vit": VIT_TINY, "vit_fixed": VIT_FIXED, "qformer_bert": BERT_TINY,
                              "num_query_token": NUM_QUERY_TOKEN, "t5_proj_out": T5_PROJ_OUT["tiny"],
                              "llm": dict(LLM_TINY[VARIANTS[variant]["llm"]], **LLM_COMMON)}
        dump(out_dir / "reference.json", ref)
        dump(out_dir / "diagnostics.json", diag)
        command = ("OMP_NUM_THREADS=1 /work/scratch/minigpt4-ref/venv/bin/python tests/data/minigpt4/make_reference.py "
                   "--upstream /work/scratch/minigpt4-ref")
        llm_dir = ckpt_dir / VARIANTS[variant]["llm_dir"]
        for folder, what in ((ckpt_dir, f"MiniGPT {variant}: the files its eval config loads"),
                             (llm_dir, f"MiniGPT {variant}: the language model folder ({llm_dir.name})")):
            write_provenance(folder, what, UPSTREAM_REPO, UPSTREAM_COMMIT, command, "tests/data/minigpt4/README.md")
        log(variant, "done:", out_dir)


if __name__ == "__main__":
    main()
