"""Make the SEED (SEED-2 tokenizer) and SEED-LLaMA (8B, 14B) reference test data.

This is vlmzoo's own driver script. It contains no upstream code: it imports the official
code (AILab-CVC/SEED, commit 93b3cf4, exported unchanged to a scratch folder outside the
repository: ``models/``, ``configs/``) and runs it on tiny random configurations.

    python make_reference.py --upstream /work/scratch/seed-ref/src --work /work/scratch/seed-ref/work
    python make_reference.py ... --out /tmp/seed-again        # e.g. a second run to compare

Everything is written to --out (default: this folder). See README.md beside this file for the
environment, the patches and the stubs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import types
from pathlib import Path

UPSTREAM_REPO = "AILab-CVC/SEED"
UPSTREAM_COMMIT = "93b3cf408196735ec4820ad2eb4d9dc4a670003d"

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE.parent / "moondream2" / "images"  # reused by path, not copied
IMAGES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "panorama.png", "small.png"]
MAX_NEW_TOKENS = 24
LOGIT_ROWS = ("question/astronaut.png", "question/coffee.png", "caption/astronaut.png", "multi_turn/astronaut.png",
              "text_to_image", "text_to_image_force_boi")  # full first-answer logits saved for these

# prompt pieces of scripts/seed_llama_inference_{8B,14B}.py and gradio_demo/seed_llama_flask.py
BOI_TOKEN = "<img>"
EOI_TOKEN = "</img>"
IMG_TOKEN = "<img_{:05d}>"
IMG_FLAG = "<image>"
NUM_IMG_TOKENS = 32
NUM_IMG_CODES = 8192
FORMATS = {  # s_token, e_token, sep and how the scripts glue them (see prompt_script)
    "8b": {"s_token": "USER:", "e_token": "ASSISTANT:", "sep": "\n"},
    "14b": {"s_token": "[INST] ", "e_token": " [/INST]", "sep": "\n"},
}
QUESTION = "What is this animal?"  # scripts/seed_llama_inference_*.py
CAPTION = "Describe this image in detail."  # ours: the repo has no caption instruction
FOLLOW_UP = "What color is it?"  # ours, second user turn
T2I_PROMPT = "Can you generate an image of a dog on the green grass?"  # scripts
EDIT_PROMPT = "Can you make the cat wear sunglasses?"  # scripts

# ----------------------------------------------------------------------------- tiny sizes
#
# EVA ViT-g (models/seed_qformer/eva_vit.py create_eva_vit_g): embed 1408, depth 39, heads 16,
# mlp_ratio 4.3637, patch 14, 224 px, qkv_bias (q_bias + v_bias), LayerNorm eps 1e-6.
VIT_TINY = {"embed_dim": 32, "depth": 2, "num_heads": 4}  # mlp_ratio, patch, size: official
# Q-Former = bert-base-uncased with cross-attention every 2nd layer (blip2.py init_Qformer).
# The Blocks of the de-tokenizer use num_heads=12 (hard-coded), so hidden % 12 == 0.
BERT_TINY = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 36,
    "initializer_range": 0.02,
    "intermediate_size": 72,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 64,
    "model_type": "bert",
    "num_attention_heads": 3,
    "num_hidden_layers": 4,
    "pad_token_id": 0,
    "type_vocab_size": 2,
}
IMAGE_FEATURES_DIM_TINY = 32  # official 1024 (unCLIP ViT-H image-embedding width)
# SEED-LLaMA LLMs: the published config.json fields at tiny widths (full values in
# make_tensor_list.py). vocab_size is filled in from the tokenizer.
LLM_TINY = {
    "8b": {  # seed-llama-8b-pretrain config.json (Vicuna-7B v1.1 derived)
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 0,
        "eos_token_id": 1,
        "hidden_act": "silu",
        "hidden_size": 24,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 2048,
        "max_sequence_length": 2048,
        "model_type": "llama",
        "num_attention_heads": 3,
        "num_hidden_layers": 2,
        "pad_token_id": -1,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": False,
    },
    "14b": {  # AILab-CVC/SEED seed_llama_14b_sft/config.json (LLaMA2-chat-13B derived)
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 24,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 2048,
        "model_type": "llama",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "pad_token_id": 0,
        "pretraining_tp": 2,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": False,
    },
}
GENERATION_CONFIG = {  # the published generation_config.json of each
    "8b": {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0},
    "14b": {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "temperature": 0.9, "top_p": 0.6},
}
LLM_DIRS = {"8b": "seed_llama_8b_sft", "14b": "seed_llama_14b_sft"}
LLM_YAMLS = {"8b": "configs/llm/seed_llama_8b.yaml", "14b": "configs/llm/seed_llama_14b.yaml"}
DIFFUSION_DIR = "stable-diffusion-2-1-unclip"
TOKENIZER_DIR = "seed_tokenizer"

# A small English text for the tiny SentencePiece and CLIP BPE vocabularies.
CORPUS = """\
USER: What is this animal? ASSISTANT: This is a cat sitting on a wooden table.
[INST] Describe this image in detail. [/INST] The image shows a dog on the green grass.
Can you generate an image of a dog on the green grass? Sure, here is the image.
Can you make the cat wear sunglasses? I have added sunglasses to the cat in the image.
What color is it? It is red and white. There are two people and a rocket in the sky.
A man in a space suit stands next to a flag. A cup of coffee sits on a small plate.
The photo shows a wide view of a city at night with lights and tall buildings.
How many dogs are in the image? There are four dogs playing in the park.
Who are they? They are cartoon characters standing in front of a house.
Transform this image into cartoon style. Draw a painting of sunflowers in Van Gogh style.
Here are images and text to inform you what will happen next. The story continues.
A chat between a curious user and an artificial intelligence assistant. 0123456789
The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore.
An eagle flies over the mountains; a bird sits on a branch; the sun sets in the west.
"""


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="exported AILab-CVC/SEED tree (has models/, configs/)")
    p.add_argument("--work", required=True, help="scratch folder for caches (torch hub, hf home)")
    p.add_argument("--out", default=str(HERE), help="output folder (default: beside this script)")
    return p.parse_args()


# ----------------------------------------------------------------------------- environment

def setup_environment(upstream: Path, work: Path):
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(work / "hf_home")
    os.environ["TORCH_HOME"] = str(work / "torch_home")  # timm's cache: TORCH_HOME/hub/checkpoints
    os.environ["PROJECT_ROOT"] = str(upstream)  # configs/*.yaml interpolate ${oc.env:PROJECT_ROOT}
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # Stub 1: torchvision._meta_registrations (the PyPI torchvision 0.28 wheel is a CUDA build
    # whose fake-kernel registrations fail against the CPU torch; only pure transforms are used).
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    # Stub 2: xformers.ops (models/llama_xformer.py imports it; it is a CUDA kernel library whose
    # memory_efficient_attention computes exact softmax(q k^T / sqrt(d)) v; see README).
    import torch

    class LowerTriangularMask:  # xformers' causal mask: query i sees keys 0..i (top-left aligned)
        pass

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None):
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # [B, M, H, K] -> [B, H, M, K]
        s = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5 if scale is None else scale)
        if isinstance(attn_bias, LowerTriangularMask):
            m, n = s.shape[-2:]
            keep = torch.ones(m, n, dtype=torch.bool, device=s.device).tril()
            s = s.masked_fill(~keep, float("-inf"))
        elif attn_bias is not None:
            raise NotImplementedError(type(attn_bias))
        return (s.softmax(-1) @ v).transpose(1, 2)

    xf = types.ModuleType("xformers")
    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = memory_efficient_attention
    ops.LowerTriangularMask = LowerTriangularMask
    xf.ops = ops
    import importlib.machinery
    xf.__spec__ = importlib.machinery.ModuleSpec("xformers", None)  # no package metadata:
    ops.__spec__ = importlib.machinery.ModuleSpec("xformers.ops", None)  # diffusers sees no xformers
    sys.modules["xformers"] = xf
    sys.modules["xformers.ops"] = ops
    sys.path.insert(0, str(upstream))  # `models` and `configs` as the scripts see them


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(p: Path) -> str:
    return sha256_bytes(p.read_bytes())


def f32_sha(t) -> str:
    import numpy as np
    return sha256_bytes(np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype=np.float32).tobytes())


def floats(t):
    """Exact float32 values as shortest round-trip decimals."""
    import numpy as np
    return [float(repr_f) for repr_f in np.asarray(t.detach().cpu().float().numpy(), dtype=np.float32).ravel().tolist()]


def stats(t):
    x = t.detach().cpu().double()
    return {"shape": list(t.shape), "sum": float(x.sum()), "abs_sum": float(x.abs().sum()),
            "sha256_f32": f32_sha(t)}


def error_where(e):
    """The exception and the innermost frames of the upstream code and of the library."""
    import traceback
    frames = traceback.extract_tb(e.__traceback__)
    up = [f for f in frames if f.filename.startswith(os.environ["PROJECT_ROOT"] + "/models/")]
    last = frames[-1]
    where = {"error": f"{type(e).__name__}: {e}",
             "raised_in": f"{Path(last.filename).name}:{last.lineno} ({last.name})"}
    if up:
        where["upstream_frame"] = f"{Path(up[-1].filename).relative_to(Path(os.environ['PROJECT_ROOT']))}:{up[-1].lineno} ({up[-1].name}): {up[-1].line}"
    return where


@contextlib.contextmanager
def chdir(p: Path):
    old = os.getcwd()
    os.chdir(p)
    try:
        yield
    finally:
        os.chdir(old)


# ----------------------------------------------------------------------------- initialisation

def init_params(model, seed, special=None, head=None):
    """Deterministic non-trivial init, every parameter set explicitly (in named_modules order).

    Linear / Conv weights N(0, 1/fan_in) (x3 for modules named in `head`), biases N(0, 0.02^2),
    norm weights 1 + 0.1 N, norm biases 0.02 N, embeddings N(0, 1); bare parameters by
    `special(name, shape) -> std, mean` (default N(0, 0.5^2)).
    """
    import torch
    import torch.nn as nn
    g = torch.Generator().manual_seed(seed)
    head = head or ()
    done = set()
    with torch.no_grad():
        for mname, mod in model.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                full = f"{mname}.{pname}" if mname else pname
                if id(p) in done:
                    continue
                done.add(id(p))
                r = torch.randn(p.shape, generator=g, dtype=torch.float32)
                is_norm = isinstance(mod, (nn.LayerNorm, nn.GroupNorm)) or "RMSNorm" in type(mod).__name__
                if special is not None and special(full, p.shape) is not None:
                    std, mean = special(full, p.shape)
                    v = r * std + mean
                elif is_norm:
                    v = 1 + 0.1 * r if pname == "weight" else 0.02 * r
                elif isinstance(mod, nn.Embedding):
                    v = r
                elif isinstance(mod, (nn.Linear, nn.Conv2d)) and pname == "weight":
                    fan_in = p[0].numel()
                    v = r / fan_in ** 0.5 * (3.0 if any(full.startswith(h) for h in head) else 1.0)
                elif pname == "bias":
                    v = 0.02 * r
                else:
                    v = 0.5 * r
                p.copy_(v.to(p.dtype))


# ----------------------------------------------------------------------------- tiny files

def write_bert(out: Path):
    """A tiny stand-in for the hub's bert-base-uncased (config, vocab, weights)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM
    d = out / "bert-base-uncased"
    d.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,?!'")
    words += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["the", "a", "image", "cat", "dog", "photo"]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}, indent=2) + "\n")
    cfg = dict(BERT_TINY, vocab_size=len(words))
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    model = BertForMaskedLM(BertConfig(**cfg))
    init_params(model, seed=11)
    torch.save(model.state_dict(), d / "pytorch_model.bin")


class _TinyViTPatch:
    """Patch: the EVA ViT-g sizes hard-coded in create_eva_vit_g are replaced by VIT_TINY.

    eva_vit.VisionTransformer is swapped, while the official create_eva_vit_g runs, for a
    subclass that overrides embed_dim / depth / num_heads and nothing else.
    """

    def __enter__(self):
        from models.seed_qformer import eva_vit
        self.mod = eva_vit
        self.orig = eva_vit.VisionTransformer

        class TinyVisionTransformer(self.orig):
            def __init__(self_, **kw):
                kw.update(VIT_TINY)
                super().__init__(**kw)

        eva_vit.VisionTransformer = TinyVisionTransformer
        return self

    def __exit__(self, *a):
        self.mod.VisionTransformer = self.orig


class _TinyImageFeaturesPatch:
    """Patch: Blip2QformerQuantizer's image_features_dim default 1024 -> IMAGE_FEATURES_DIM_TINY
    (from_pretrained does not pass it; it sets distill_image_proj's output width)."""

    def __enter__(self):
        from models.seed_qformer.qformer_quantizer import Blip2QformerQuantizer
        self.cls = Blip2QformerQuantizer
        self.orig = Blip2QformerQuantizer.__init__

        @functools.wraps(self.orig)
        def init(self_, *a, **kw):
            kw["image_features_dim"] = IMAGE_FEATURES_DIM_TINY
            return self.orig(self_, *a, **kw)

        Blip2QformerQuantizer.__init__ = init
        return self

    def __exit__(self, *a):
        self.cls.__init__ = self.orig


def eva_cache_path() -> Path:
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "eva_vit_g.pth"


def quantizer_special(name, shape):
    if name.startswith("visual_encoder."):
        if name.endswith(("q_bias", "v_bias")):
            return 0.02, 0.0
        if name.endswith("cls_token"):
            return 1.0, 0.0
        if name.endswith("pos_embed"):
            return 0.5, 0.0
    if name == "query_tokens":
        return 1.0, 0.0
    if name in ("pos_embed", "pos_embed_image"):
        return 0.5, 0.0
    if name == "quantize.embedding.weight":
        return 0.5, 0.0
    return None


def write_quantizer(out: Path):
    """seed_quantizer.pt (all keys but visual_encoder.*) and eva_vit_g.pth (LAVIS layout)."""
    import torch
    from models.seed_qformer import eva_vit
    from models.seed_qformer.qformer_quantizer import Blip2QformerQuantizer
    # 1. the tiny EVA ViT alone, through the official constructor, written where the official
    #    create_eva_vit_g looks for LAVIS's eva_vit_g.pth
    with _TinyViTPatch():
        vit = eva_vit.VisionTransformer(img_size=224, patch_size=14, use_mean_pooling=False, mlp_ratio=4.3637,
                                        qkv_bias=True, drop_path_rate=0,
                                        norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6))
    init_params(vit, seed=21, special=lambda n, s: quantizer_special("visual_encoder." + n, s))
    eva = out / "eva_vit_g.pth"
    torch.save(vit.state_dict(), eva)
    eva_cache_path().parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(eva, eva_cache_path())
    # 2. the whole quantizer through the official class (fp32), random init of everything else
    with chdir(out), _TinyViTPatch(), _TinyImageFeaturesPatch():
        model = Blip2QformerQuantizer(vit_precision="fp32")
    vit_state = model.visual_encoder.state_dict()
    init_params(model, seed=22, special=quantizer_special)
    model.visual_encoder.load_state_dict(vit_state)  # keep the eva_vit_g.pth values
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("visual_encoder.")}
    tdir = out / TOKENIZER_DIR
    tdir.mkdir(parents=True, exist_ok=True)
    torch.save(state, tdir / "seed_quantizer.pt")
    return {"seed_quantizer_keys": len(state), "eva_vit_g_keys": len(vit_state),
            "model_keys": len(model.state_dict())}


def write_sentencepiece(work: Path, out: Path):
    """Tiny LLaMA-style SentencePiece BPE model, then the SEED tokenizer folder."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    corpus.write_text(CORPUS * 4)
    prefix = work / "tiny_llama_sp"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), model_type="bpe", vocab_size=512,
        character_coverage=1.0, byte_fallback=True, split_digits=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, hard_vocab_limit=False,
        max_sentencepiece_length=16, minloglevel=2)
    tdir = out / TOKENIZER_DIR
    tdir.mkdir(parents=True, exist_ok=True)
    tok = LlamaTokenizer(vocab_file=str(prefix) + ".model")
    base = len(tok)
    tok.add_tokens([IMG_TOKEN.format(i) for i in range(NUM_IMG_CODES)])
    tok.add_special_tokens({"additional_special_tokens": [BOI_TOKEN, EOI_TOKEN]})
    tok.save_pretrained(str(tdir))
    return {"base_len": base, "len": len(tok)}


def write_llms(out: Path, vocab_size: int):
    import torch
    from transformers import GenerationConfig, LlamaConfig
    from models.llama_xformer import LlamaForCausalLM
    info = {}
    for v, cfg in LLM_TINY.items():
        cfg = dict(cfg, vocab_size=vocab_size)
        config = LlamaConfig(**cfg)
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        init_params(model, seed={"8b": 31, "14b": 32}[v], head=("lm_head",))
        d = out / LLM_DIRS[v]
        model.save_pretrained(str(d))
        GenerationConfig(**GENERATION_CONFIG[v]).save_pretrained(str(d))
        info[v] = {"tensors": len(model.state_dict()), "parameters": sum(p.numel() for p in model.parameters())}
    return info


def write_clip_bpe(d: Path):
    """Tiny CLIP BPE vocabulary: 256 bytes, 256 bytes+</w>, merges from CORPUS, the two specials."""
    from transformers.models.clip.tokenization_clip import bytes_to_unicode
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars]
    words = {}
    for w in CORPUS.lower().replace("\n", " ").split():
        w = "".join(ch for ch in w if ch.isalnum())
        if w:
            words[w] = words.get(w, 0) + 1
    # a few greedy BPE merges over the corpus words
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words}
    merges = []
    for _ in range(40):
        pairs = {}
        for w, s in seqs.items():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + words[w]
        if not pairs:
            break
        (a, b), _n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab.append(a + b)
        for w, s in seqs.items():
            i, t = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    t.append(a + b)
                    i += 2
                else:
                    t.append(s[i])
                    i += 1
            seqs[w] = t
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(vocab)


def write_diffusion(work: Path, out: Path):
    """A tiny stable-diffusion-2-1-unclip (StableUnCLIPImg2ImgPipeline) folder."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)
    bpe = work / "clip_bpe"
    n_vocab = write_clip_bpe(bpe)
    tokenizer = CLIPTokenizer(str(bpe / "vocab.json"), str(bpe / "merges.txt"), pad_token="!", model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=n_vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=1))
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=224,
        patch_size=14, projection_dim=IMAGE_FEATURES_DIM_TINY, hidden_act="gelu"))
    feature_extractor = CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224},
                                           do_center_crop=True, do_normalize=True, do_resize=True,
                                           image_mean=[0.48145466, 0.4578275, 0.40821073],
                                           image_std=[0.26862954, 0.26130258, 0.27577711], resample=3)
    image_normalizer = StableUnCLIPImageNormalizer(embedding_dim=IMAGE_FEATURES_DIM_TINY)
    # stable-diffusion-2-1-unclip/image_noising_scheduler: DDPM, squaredcos_cap_v2, 1000 steps
    image_noising_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    # stable-diffusion-2-1-unclip/scheduler/scheduler_config.json (values as published)
    scheduler = PNDMScheduler(beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085,
                              num_train_timesteps=1000, prediction_type="v_prediction", set_alpha_to_one=False,
                              skip_prk_steps=True, steps_offset=1, trained_betas=None)
    unet = UNet2DConditionModel(
        sample_size=96, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 2), cross_attention_dim=16, use_linear_projection=True, upcast_attention=True,
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * IMAGE_FEATURES_DIM_TINY,
        norm_num_groups=8, flip_sin_to_cos=True, freq_shift=0, act_fn="silu")
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        act_fn="silu", latent_channels=4, norm_num_groups=4, sample_size=192, scaling_factor=0.18215)
    init_params(text_encoder, seed=41)
    init_params(image_encoder, seed=42)
    init_params(unet, seed=43, special=lambda n, s: (0.1 / (s[1:].numel() ** 0.5), 0.0) if n == "conv_out.weight" else None)
    init_params(vae, seed=44)
    g = torch.Generator().manual_seed(45)
    with torch.no_grad():
        image_normalizer.mean.copy_(0.1 * torch.randn(image_normalizer.mean.shape, generator=g))
        image_normalizer.std.copy_(1 + 0.1 * torch.randn(image_normalizer.std.shape, generator=g).abs())
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=feature_extractor, image_encoder=image_encoder, image_normalizer=image_normalizer,
        image_noising_scheduler=image_noising_scheduler, tokenizer=tokenizer, text_encoder=text_encoder, unet=unet,
        scheduler=scheduler, vae=vae)
    pipe.save_pretrained(str(out / DIFFUSION_DIR))


# ----------------------------------------------------------------------------- prompts

def image_tokens(codes):
    return BOI_TOKEN + "".join(IMG_TOKEN.format(int(c)) for c in codes) + EOI_TOKEN


def prompt_script(v, bos, img_tokens, text):
    """scripts/seed_llama_inference_8B.py / _14B.py input_tokens."""
    f = FORMATS[v]
    if v == "8b":
        return bos + f["s_token"] + " " + img_tokens + text + f["sep"] + f["e_token"]
    return bos + f["s_token"] + img_tokens + text + f["e_token"] + f["sep"]


def prompt_conversation(v, bos, messages, images_tokens):
    """gradio_demo/conversation.py get_prompt() (conv_seed_vicuna / conv_seed_llama2), then
    seed_llama_flask.py: bos + text pieces with each <image> replaced by its image tokens."""
    sys.path.insert(0, str(Path(os.environ["PROJECT_ROOT"]) / "gradio_demo"))
    import conversation as conv_mod
    conv = (conv_mod.conv_seed_vicuna if v == "8b" else conv_mod.conv_seed_llama2).copy()
    conv.messages = [{"role": conv.roles[i % 2], "message": {"text": t, "images": [], "images_ids": []}}
                     for i, t in enumerate(messages)]
    text = conv.get_prompt()["text"]
    pieces = text.split(IMG_FLAG)
    assert len(pieces) == len(images_tokens) + 1
    s = ""
    for i, it in enumerate(images_tokens):
        s += pieces[i] + it
    return text, bos + s + pieces[-1]


# ----------------------------------------------------------------------------- main

def main():
    args = parse_args()
    upstream, work, out = Path(args.upstream).resolve(), Path(args.work).resolve(), Path(args.out).resolve()
    setup_environment(upstream, work)
    import numpy as np
    import torch
    import hydra
    from omegaconf import OmegaConf
    from PIL import Image
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out.mkdir(parents=True, exist_ok=True)

    ref = {"source": {"repo": UPSTREAM_REPO, "commit": UPSTREAM_COMMIT}}
    diag = {"note": "not test data: margins behind discrete choices, environment checks"}

    # -- 1. tiny official-layout files
    write_bert(out)
    ref["quantizer_files"] = write_quantizer(out)
    ref["tokenizer_build"] = write_sentencepiece(work, out)
    ref["llm_build"] = write_llms(out, ref["tokenizer_build"]["len"])
    write_diffusion(work, out)
    shutil.copyfile(out / "eva_vit_g.pth", eva_cache_path())

    # -- 2. reload fresh through the official path (the scripts' hydra configs)
    tok_cfg = OmegaConf.load(upstream / "configs/tokenizer/seed_llama_tokenizer_hf.yaml")
    tr_cfg = OmegaConf.load(upstream / "configs/transform/clip_transform.yaml")

    def load_tokenizer(fp16=False):
        torch.manual_seed(0)  # ImageTokenizer draws its fixed latents from the global RNG
        with chdir(out), _TinyViTPatch(), _TinyImageFeaturesPatch():
            return hydra.utils.instantiate(
                tok_cfg, pretrained_model_name_or_path=str(out / TOKENIZER_DIR), device="cpu", fp16=fp16,
                load_diffusion=True, encoder_url=str(out / TOKENIZER_DIR / "seed_quantizer.pt"),
                diffusion_path=str(out / DIFFUSION_DIR))

    load_log = io.StringIO()
    with contextlib.redirect_stdout(load_log):
        tokenizer = load_tokenizer()
    ref["official_load_printout"] = [l for l in load_log.getvalue().splitlines() if "keys" in l]
    transform = hydra.utils.instantiate(tr_cfg)
    itok = tokenizer.image_tokenizer
    qmodel = itok.model
    latents16 = itok.latents.clone()
    np.save(out / "decode-latents-fp16.npy", latents16.numpy())

    ref["tokenizer"] = {
        "class": type(tokenizer).__name__, "len": len(tokenizer), "sp_len": tokenizer.sp_model.get_piece_size(),
        "bos": [tokenizer.bos_token, tokenizer.bos_token_id], "eos": [tokenizer.eos_token, tokenizer.eos_token_id],
        "unk": [tokenizer.unk_token, tokenizer.unk_token_id], "pad": [tokenizer.pad_token, tokenizer.pad_token_id],
        "boi_id": tokenizer(BOI_TOKEN, add_special_tokens=False).input_ids[0],
        "eoi_id": tokenizer(EOI_TOKEN, add_special_tokens=False).input_ids[0],
        "img_00000_id": tokenizer.convert_tokens_to_ids(IMG_TOKEN.format(0)),
        "img_08191_id": tokenizer.convert_tokens_to_ids(IMG_TOKEN.format(NUM_IMG_CODES - 1)),
        "num_image_tokens_property": tokenizer.num_image_tokens,
        "image_id_shift_official": 32000,
        "image_id_shift_tiny": tokenizer.convert_tokens_to_ids(IMG_TOKEN.format(0)),
        "len_image_tokenizer": len(itok),
        "samples": {},
    }
    shift = ref["tokenizer"]["image_id_shift_tiny"]
    for s in ["USER: <img><img_00001><img_08191></img>What is this animal?\nASSISTANT:",
              "[INST] hello [/INST]\n", " leading space", "Hello  world\n\n12345", "<s>USER:</s>", "<img>x</img> y",
              "unknown ☃ é 中"]:
        ids = tokenizer(s, add_special_tokens=False).input_ids
        ref["tokenizer"]["samples"][s] = {
            "ids": ids, "ids_with_special": tokenizer(s).input_ids,
            "tokens": tokenizer.convert_ids_to_tokens(ids),
            "decode": tokenizer.decode(ids), "decode_skip_special": tokenizer.decode(ids, skip_special_tokens=True)}

    # -- 3. image tokenizer on the photos
    caps = {}

    def hook(name):
        def f(_m, _i, o):
            caps[name] = o
        return f

    hooks = [qmodel.visual_encoder.register_forward_hook(hook("vit")),
             qmodel.ln_vision.register_forward_hook(hook("ln_vision")),
             qmodel.Qformer.bert.register_forward_hook(hook("qformer")),
             qmodel.encode_task_layer.register_forward_hook(hook("prequant")),
             qmodel.quantize.register_forward_hook(hook("quant"))]
    codebook = qmodel.quantize.embedding.weight.detach()
    ref["images"] = {}
    all_codes = {}
    min_margin = []
    for name in IMAGES:
        path = IMAGES_DIR / name
        pil = Image.open(path).convert("RGB")
        x = transform(pil)  # scripts / flask path: clip_transform.yaml (bilinear Resize((224, 224)))
        caps.clear()
        codes = tokenizer.encode_image(image_torch=x)
        # this encode's stages, kept before the bicubic path below runs the hooks again
        vit_out, ln_out = caps["vit"], caps["ln_vision"]
        q_last = caps["qformer"].last_hidden_state[0]
        pre = caps["prequant"][0]
        d = (pre ** 2).sum(1, keepdim=True) + (codebook ** 2).sum(1) - 2 * pre @ codebook.T
        top2 = d.topk(2, dim=1, largest=False).values
        margins = (top2[:, 1] - top2[:, 0])
        min_margin.append(float(margins.min()))
        with torch.no_grad():
            _, query_up = qmodel.get_codebook_indices(x.unsqueeze(0))
            gen_embed = qmodel.get_codebook_entry(codes)
        np.save(out / f"causal-embeddings-{name[:-4]}.npy", q_last.detach().numpy().astype(np.float32))
        xb = itok.processor(pil)  # tokenizer.encode_image(image_path=...) path: bicubic Resize
        codes_b = tokenizer.encode_image(image_path=str(path))
        all_codes[name] = codes[0].tolist()
        ref["images"][name] = {
            "size": list(pil.size),
            "pixels": {"shape": list(x.shape), "dtype": str(x.dtype), "sha256_f32": f32_sha(x), "sum": float(x.double().sum()),
                       "first8": floats(x.flatten()[:8])},
            "codes": codes[0].tolist(),
            "image_tokens": image_tokens(codes[0].tolist()),
            "vit_output": stats(vit_out), "ln_vision": stats(ln_out),
            "causal_embeddings": dict(stats(q_last), file=f"causal-embeddings-{name[:-4]}.npy"),
            "causal_embeddings_last_token": floats(q_last[-1]),
            "prequant": dict(stats(pre), first_row=floats(pre[0])),
            "vq_min_margin": float(margins.min()),
            "query_output_up": stats(query_up),
            "generation_embedding": floats(gen_embed[0]),
            "processor_path": {"pixels_sha256_f32": f32_sha(xb), "pixels_sum": float(xb.double().sum()),
                               "codes": codes_b[0].tolist()},
        }
    for h in hooks:
        h.remove()
    diag["vq_min_margin_per_image"] = dict(zip(IMAGES, min_margin))
    # causality: queries <= i do not see later queries -> perturbing query token 31 changes only row 31
    with torch.no_grad():
        x = transform(Image.open(IMAGES_DIR / "astronaut.png").convert("RGB")).unsqueeze(0)
        emb = qmodel.ln_vision(qmodel.visual_encoder(x))
        qt = qmodel.query_tokens.clone()
        o1 = qmodel.Qformer.bert(query_embeds=qt, encoder_hidden_states=emb,
                                 encoder_attention_mask=torch.ones(emb.shape[:-1], dtype=torch.long), return_dict=True)
        qt2 = qt.clone()
        qt2[0, 20] += torch.randn(qt.shape[-1], generator=torch.Generator().manual_seed(5))
        o2 = qmodel.Qformer.bert(query_embeds=qt2, encoder_hidden_states=emb,
                                 encoder_attention_mask=torch.ones(emb.shape[:-1], dtype=torch.long), return_dict=True)
        delta = (o1.last_hidden_state - o2.last_hidden_state).abs().amax(-1)[0]
    ref["qformer_causality_check"] = {
        "perturbed_query": 20, "rows_changed": [int(i) for i in torch.nonzero(delta > 0).flatten()],
        "max_change_rows_before": float(delta[:20].max()), "max_change_rows_from": float(delta[20:].max())}
    ref["codebook"] = {"shape": list(codebook.shape), "sha256_f32": f32_sha(codebook)}
    ref["fixed_codes_generation_embedding"] = {
        "codes": list(range(0, 8192, 256)),
        "embedding": floats(qmodel.get_codebook_entry(torch.tensor([list(range(0, 8192, 256))]))[0])}

    # -- 4. SEED-LLaMA
    def load_llm(v):
        cfg = OmegaConf.load(upstream / LLM_YAMLS[v])
        m = hydra.utils.instantiate(cfg, pretrained_model_name_or_path=str(out / LLM_DIRS[v]), torch_dtype=torch.float32)
        return m.eval()

    bos = tokenizer.bos_token
    boi_id, eoi_id = ref["tokenizer"]["boi_id"], ref["tokenizer"]["eoi_id"]

    def run_case(model, text, max_new=MAX_NEW_TOKENS, prefix_len_cut=0):
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            first = model(input_ids=ids).logits[0, -1].float()
            g = model.generate(input_ids=ids, max_new_tokens=max_new, do_sample=False, num_beams=1,
                               output_scores=True, return_dict_in_generate=True)
        gen = g.sequences[0][ids.shape[1] - prefix_len_cut:]
        scores = [s[0].float() for s in g.scores]
        gaps = [float(s.topk(2).values[0] - s.topk(2).values[1]) for s in scores]
        same_first = bool(torch.equal(scores[0], first))
        gen_list = gen.tolist()
        rec = {
            "text": text, "ids": ids[0].tolist(), "n_ids": ids.shape[1],
            "generated": gen_list,
            "decode_skip_special": tokenizer.decode(gen, skip_special_tokens=True),
            "decode": tokenizer.decode(gen, skip_special_tokens=False),
            "first_logits_top10": [[int(i), float(first[i])] for i in first.topk(10).indices],
            "first_logits_sum": float(first.double().sum()),
            "first_logits_argmax": int(first.argmax()),
            "first_logits_every_64th": floats(first[::64]),  # ids 0, 64, 128, ...
        }
        return rec, first, min(gaps), same_first

    def flask_postprocess(gen_ids):
        """seed_llama_flask.py generate(): image spans, error messages, returned text."""
        gen = torch.tensor(gen_ids)
        boi = torch.where(gen == boi_id)[0].tolist()
        eoi = torch.where(gen == eoi_id)[0].tolist()
        errors, spans = [], []
        if len(boi) != len(eoi):  # the flask messages, verbatim
            errors.append(f"Num of BOI (begain of image) tokens: {len(boi)} is not equal to EOI(end of image tokens): "
                          f"{len(eoi)}, some image Some images will fail to decode.")
        mask = torch.ones_like(gen, dtype=torch.bool)
        for k in range(min(len(boi), len(eoi))):
            img = gen[boi[k] + 1:eoi[k]] - shift
            if img.shape[-1] != NUM_IMG_TOKENS:
                errors.append(f"Len(image_ids) {img.shape[-1]} is not equal to {NUM_IMG_TOKENS}")
            elif (img < 0).any() or (img >= NUM_IMG_CODES).any():
                errors.append(f"Some image_id out of range: [0, {NUM_IMG_CODES})")
            spans.append(img.tolist())
            mask[boi[k] + 1:eoi[k]] = False
        text = tokenizer.decode(gen[mask], skip_special_tokens=False)
        text = text.replace(BOI_TOKEN + " " + EOI_TOKEN + " ", IMG_FLAG).replace(tokenizer.eos_token, "")
        # scripts' decode_image_text: text only if neither tag; else boi_list[0], eoi_list[0]
        if not boi and not eoi:
            script = {"text": tokenizer.decode(gen, skip_special_tokens=True)}
        elif not boi or not eoi:
            script = {"error": "IndexError (boi_list[0] / eoi_list[0] of an empty list)"}
        else:
            script = {"text_before_image": tokenizer.decode(gen[:boi[0]], skip_special_tokens=True),
                      "image_ids": (gen[boi[0] + 1:eoi[0]] - shift).tolist()}
        return {"boi": boi, "eoi": eoi, "image_spans": spans, "error_msg": errors, "text": text, "script": script}

    ref["llm"] = {}
    logits_rows = {}
    diag["greedy_min_gap"] = {}
    for v in ("8b", "14b"):
        model = load_llm(v)
        cases, rows = {}, []
        gaps = {}

        def add(key, rec_first_gap_same):
            rec, first, gap, same = rec_first_gap_same
            if key in LOGIT_ROWS:
                rec["first_logits_row"] = len(rows)
                rows.append(first.numpy().astype(np.float32))
            cases[key] = rec
            gaps[key] = gap
            if not same:
                diag.setdefault("first_logits_mismatch", []).append(f"{v}/{key}")

        for name in IMAGES:
            add(f"question/{name}", run_case(model, prompt_script(v, bos, image_tokens(all_codes[name]), QUESTION)))
        for name in ("astronaut.png", "coffee.png"):
            add(f"caption/{name}", run_case(model, prompt_script(v, bos, image_tokens(all_codes[name]), CAPTION)))
        # multi-turn: gradio Conversation + flask assembly; the first answer is the flask text of
        # the greedy answer to the same question prompt
        a1 = flask_postprocess(cases["question/astronaut.png"]["generated"])["text"]
        conv_text, text = prompt_conversation(v, bos, [IMG_FLAG + QUESTION, a1, FOLLOW_UP],
                                              [image_tokens(all_codes["astronaut.png"])])
        add("multi_turn/astronaut.png", run_case(model, text))
        cases["multi_turn/astronaut.png"]["conversation_text"] = conv_text
        cases["multi_turn/astronaut.png"]["first_answer"] = a1
        # the single-turn conversation prompt equals the script prompt (checked)
        _, single = prompt_conversation(v, bos, [IMG_FLAG + QUESTION], [image_tokens(all_codes["astronaut.png"])])
        cases["question/astronaut.png"]["conversation_prompt_equal"] = single == cases["question/astronaut.png"]["text"]
        add("text_to_image", run_case(model, prompt_script(v, bos, "", T2I_PROMPT)))
        add("edit/chelsea.png", run_case(model, prompt_script(v, bos, image_tokens(all_codes["chelsea.png"]), EDIT_PROMPT)))
        # flask force_boi: '<img>' appended, the returned ids start at it; 34 new tokens
        add("text_to_image_force_boi", run_case(model, prompt_script(v, bos, "", T2I_PROMPT) + BOI_TOKEN,
                                               max_new=NUM_IMG_TOKENS + 2, prefix_len_cut=1))
        for key in cases:
            cases[key]["flask"] = flask_postprocess(cases[key]["generated"])
        # vlmzoo's imagine on the official model: <img> appended as the demo's force_boi does, then
        # exactly 32 greedy tokens with every logit outside <img_00000>..<img_08191> set to -inf
        # (vlmzoo's rule, applied here as a logits processor: the official code has no such mode)
        from transformers import LogitsProcessor, LogitsProcessorList

        class CodesOnly(LogitsProcessor):
            def __call__(self, input_ids, scores):
                keep = torch.full_like(scores, float("-inf"))
                keep[:, shift:shift + NUM_IMG_CODES] = 0
                return scores + keep

        imagine = {}
        for key, img, text in (("text_to_image", "", T2I_PROMPT),
                               ("edit/chelsea.png", image_tokens(all_codes["chelsea.png"]), EDIT_PROMPT)):
            prompt = prompt_script(v, bos, img, text) + BOI_TOKEN
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            with torch.no_grad():
                g = model.generate(input_ids=ids, max_new_tokens=NUM_IMG_TOKENS, do_sample=False, num_beams=1,
                                   logits_processor=LogitsProcessorList([CodesOnly()]), output_scores=True,
                                   return_dict_in_generate=True)
            new = g.sequences[0, ids.shape[1]:].tolist()
            top2 = [s[0].float().topk(2).values for s in g.scores]
            gaps[f"imagine/{key}"] = min(float(t[0] - t[1]) for t in top2)
            imagine[key] = {"prompt": prompt, "ids": ids[0].tolist(), "generated": new,
                            "codes": [t - shift for t in new]}
        ref.setdefault("imagine", {})[v] = imagine
        ref["llm"][v] = {"dir": LLM_DIRS[v], "yaml": LLM_YAMLS[v], "class": type(model).__module__ + "." + type(model).__name__,
                         "dtype": str(next(model.parameters()).dtype), "cases": cases,
                         "first_logits_file": f"first-logits-{v}.npy", "vocab": model.config.vocab_size}
        np.save(out / f"first-logits-{v}.npy", np.stack(rows))
        diag["greedy_min_gap"][v] = gaps
        del model

    # -- 5. de-tokenizer (decode_image): codes -> unCLIP image embedding -> SD unCLIP
    from models import pipeline_stable_unclip_img2img as pmod
    pipe = itok.diffusion_model
    rec_noise = []
    orig_randn = pmod.randn_tensor

    def randn_rec(*a, **k):
        t = orig_randn(*a, **k)
        rec_noise.append(t.clone())
        return t

    unet_in = []

    def unet_pre(_m, a, kw):
        unet_in.append({"t": float(a[1]) if len(a) > 1 else float(kw["timestep"]),
                        "class_labels": kw.get("class_labels"), "ehs": kw.get("encoder_hidden_states"),
                        "sample": a[0]})

    vae_in = []
    orig_decode = pipe.vae.decode

    def vae_decode_rec(z, *a, **k):
        vae_in.append(z.clone())
        return orig_decode(z, *a, **k)

    decodes = {}

    def run_decode(key, codes, patched):
        rec_noise.clear(); unet_in.clear(); vae_in.clear()
        torch.manual_seed(1234)  # noise_image_embeddings draws from the global RNG
        h = pipe.unet.register_forward_pre_hook(unet_pre, with_kwargs=True)
        pmod.randn_tensor = randn_rec
        pipe.vae.decode = vae_decode_rec
        try:
            images = tokenizer.decode_image(torch.tensor([codes]))
        finally:
            h.remove()
            pmod.randn_tensor = orig_randn
            pipe.vae.decode = orig_decode
        img = images[0]
        arr = np.asarray(img.convert("RGB"))
        png = f"decoded-{key}.png" if key in ("astronaut", "fixed", "imagine-8b") else None  # size: three kept
        if png:
            img.save(out / png)
        first = unet_in[0]
        decodes[key] = {
            "codes": list(codes), "latents_patch_applied": patched,
            "image_size": list(img.size), "image_mode": img.mode, "rgb_sha256": sha256_bytes(arr.tobytes()),
            "rgb_mean": float(arr.mean()), "png": png,
            "image_embeds": floats(qmodel.get_codebook_entry(torch.tensor([codes]))[0]),
            "noise_image_embeddings_noise": floats(rec_noise[0][0]) if rec_noise else None,
            "unet_calls": len(unet_in), "timesteps": [u["t"] for u in unet_in],
            "class_labels_first_call": [floats(r) for r in first["class_labels"]],
            "encoder_hidden_states": stats(first["ehs"]),
            "vae_input": stats(vae_in[0]),
        }
        if key == "astronaut":
            np.save(out / f"decode-final-latents-{key}.npy", vae_in[0].numpy().astype(np.float32))
            decodes[key]["final_latents_file"] = f"decode-final-latents-{key}.npy"

    # the official float32 path as written: ImageTokenizer keeps float16 latents (fp16=False too)
    try:
        torch.manual_seed(1234)
        tokenizer.decode_image(torch.tensor([all_codes["astronaut.png"]]))
        ref["decode_unpatched_float32"] = "ran"
    except Exception as e:  # noqa: BLE001 - recorded, not hidden
        ref["decode_unpatched_float32"] = error_where(e)
    itok.latents = latents16.float()  # Patch: the fp16 latents as float32 (same values)
    run_decode("astronaut", all_codes["astronaut.png"], True)
    fixed = list(range(0, 8192, 256))
    run_decode("fixed", fixed, True)
    # greedy-generated codes (text_to_image_force_boi of the 8B): the image-token ids after <img>
    gen = ref["llm"]["8b"]["cases"]["text_to_image_force_boi"]["generated"]
    gen_codes = [t - shift for t in gen[1:] if shift <= t < shift + NUM_IMG_CODES][:NUM_IMG_TOKENS]
    ref["generated_codes_8b_force_boi"] = gen_codes
    if len(gen_codes) == NUM_IMG_TOKENS:
        run_decode("generated-8b", gen_codes, True)
    # vlmzoo's imagine end to end: the 8B's constrained text-to-image codes, decoded
    run_decode("imagine-8b", ref["imagine"]["8b"]["text_to_image"]["codes"], True)
    ref["decode"] = decodes
    ref["decode_settings"] = {"guidance_scale": 10, "num_inference_steps": 20, "noise_level": 0,
                              "negative_image_embeds": None, "seed_before_decode": 1234,
                              "latents_file": "decode-latents-fp16.npy", "latents_seed": "torch.manual_seed(0) before the tokenizer is built",
                              "scheduler": pipe.scheduler.__class__.__name__, "height_width": [192, 192]}

    # -- 6. the official default fp16=True on CPU (diagnostic only)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            tok16 = load_tokenizer(fp16=True)
    except Exception as e:  # noqa: BLE001
        tok16 = None
        diag["fp16_tokenizer_load"] = error_where(e)
    if tok16 is not None:
        try:
            c16 = {n: tok16.encode_image(image_torch=transform(Image.open(IMAGES_DIR / n).convert("RGB")))[0].tolist()
                   for n in IMAGES}
            diag["fp16_encode"] = {"ran": True, "codes_differ_at": {
                n: sum(a_ != b_ for a_, b_ in zip(c16[n], all_codes[n])) for n in IMAGES}}
        except Exception as e:  # noqa: BLE001
            diag["fp16_encode"] = {"ran": False, **error_where(e)}
        try:
            torch.manual_seed(1234)
            im16 = tok16.decode_image(torch.tensor([all_codes["astronaut.png"]]))[0]
            a16 = np.asarray(im16.convert("RGB")).astype(np.float64)
            a32 = np.asarray(Image.open(out / "decoded-astronaut.png").convert("RGB")).astype(np.float64)
            diag["fp16_decode"] = {"ran": True, "max_abs_diff_vs_fp32_png": float(np.abs(a16 - a32).max()),
                                   "mean_abs_diff": float(np.abs(a16 - a32).mean())}
        except Exception as e:  # noqa: BLE001
            diag["fp16_decode"] = {"ran": False, **error_where(e)}

    # -- 7. files
    ref["files"] = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in ("reference.json", "diagnostics.json", "README.md", "make_reference.py",
                                          "make_tensor_list.py") and not p.name.startswith("tensors-full-size"):
            ref["files"][str(p.relative_to(out))] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    (out / "reference.json").write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")
    (out / "diagnostics.json").write_text(json.dumps(diag, indent=1) + "\n")
    print("done:", out)


if __name__ == "__main__":
    main()
