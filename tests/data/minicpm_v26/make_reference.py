"""Make the MiniCPM-V-2.6 reference test data from the official implementation.

This is vlmzoo's own driver script. It contains no upstream code: it loads the official
remote code of the Hugging Face repository openbmb/MiniCPM-V-2_6 (configuration_minicpm.py,
modeling_minicpmv.py, resampler.py, modeling_navit_siglip.py, image_processing_minicpmv.py,
processing_minicpmv.py, tokenization_minicpmv_fast.py; copies taken unchanged from GitHub, see
README.md) from a scratch folder outside the repository, through transformers'
``trust_remote_code`` machinery, and runs it on a tiny random configuration of the released
architecture.

    python make_reference.py --upstream /work/scratch/minicpmv-ref/official \
        --work /work/scratch/minicpmv-ref/work [--out DIR]

--upstream is the folder holding the official files (the .py files and the published
config.json / preprocessor_config.json / tokenizer_config.json / special_tokens_map.json /
added_tokens.json). --work is a scratch folder (load folders, HF module cache). See README.md
beside this file for the environment, the patches and the stubs.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE.parent / "moondream2" / "images"  # reused, not copied
IMAGES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "panorama.png", "small.png"]
FEATURE_FILES = ("astronaut.png", "panorama.png")  # resampler outputs saved as .npy
BEAM_IMAGES = ("astronaut.png", "panorama.png")  # also run the chat() default (beam) settings

SEED = 0
MAX_NEW_TOKENS = 24
QUESTION = "What is in this picture?"

OFFICIAL_CODE = [
    "configuration_minicpm.py",
    "modeling_minicpmv.py",
    "resampler.py",
    "modeling_navit_siglip.py",
    "image_processing_minicpmv.py",
    "processing_minicpmv.py",
    "tokenization_minicpmv_fast.py",
]

# --------------------------------------------------------------------------- tiny config
#
# Changes to the published config.json (everything else is kept as published). The resampler
# has embed_dim // 128 heads (modeling_minicpmv.init_resampler), so the LLM width must be a
# multiple of 128: 128 gives one resampler head (the released model: 3584 -> 28 heads).
TINY_LLM = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,  # head dim 32
    "num_key_value_heads": 2,  # GQA 2:1 (released 28:4)
    "max_window_layers": 2,
    "torch_dtype": "float32",
}
# SigLIP: widths and depth shrunk; image_size 980 / patch 14 kept, so the position table is the
# real 70 x 70 = 4900 grid and the bucketize position-id logic runs as in the released model.
TINY_VISION = {
    "hidden_size": 32,
    "image_size": 980,
    "intermediate_size": 64,
    "model_type": "siglip",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "patch_size": 14,
}

# Tiny tokenizer: byte-level BPE with the Qwen2 pre-tokenizer (regex split, digits one by one),
# 488 BPE ids, then the 24 special tokens of the released tokenizer, in the released order.
BPE_SIZE = 488
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Released ids: <unk> 128244 (a vocab.json entry, marked special), then 151643.. in this order.
SPECIAL_TOKENS = [
    "<unk>",
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<image>", "</image>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>",
    "<point>", "</point>", "<slice>", "</slice>", "<image_id>", "</image_id>",
] + [f"<|reserved_special_token_{i}|>" for i in range(6)]

TOKENIZER_TEXT = """\
system
You are a helpful assistant.
user
What is in this picture? Describe this image. Compare the two pictures. What color is it?
And this one? Look at this! What is it? Hello, who are you? Thanks! Please answer briefly.
assistant
The picture shows an astronaut in a white suit standing in front of a flag. A cat with
orange and black fur is lying on a table and looking at the camera. A cup of coffee stands on
a saucer, with a spoon beside it. A rocket is on the launch pad, with smoke and clouds at the
bottom and a tall tower next to it. The first picture shows a person, the second one a cat.
It is white and orange. I am a helpful assistant, and I can answer questions about images.
The morning was cold and clear, and the light came in low over the hills. People sat at
wooden tables with cups of tea, talking about the weather and the news of the day.
0 1 2 3 4 5 6 7 8 9 10 11 12 2024 3.14 (1, 2) [x, y] <b>bold</b> "quoted" it's we're I'll
"""

# --------------------------------------------------------------------------- helpers


def sha256_f32(a) -> str:
    import numpy as np
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def f32_list(t) -> list:
    """float32 values as exact decimals (float32 -> float64 is exact)."""
    import numpy as np
    return [float(x) for x in np.asarray(t, dtype=np.float32).reshape(-1)]


def stats(a) -> dict:
    import numpy as np
    a = np.asarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "sum": float(a.astype(np.float64).sum()),
            "abs_sum": float(np.abs(a.astype(np.float64)).sum()), "sha256": sha256_f32(a)}


def top_gap(logits) -> float:
    import torch
    v = torch.topk(logits.float(), 2).values
    return float(v[0] - v[1])


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer_files(upstream: Path, ckpt: Path) -> dict:
    """Train the tiny BPE and write the tokenizer files in the released repository's layout."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=BPE_SIZE, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator([TOKENIZER_TEXT] * 4, trainer=trainer)
    assert tok.get_vocab_size() == BPE_SIZE, tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    assert list(ids.values()) == list(range(BPE_SIZE, BPE_SIZE + len(SPECIAL_TOKENS))), ids
    ckpt.mkdir(parents=True, exist_ok=True)
    tok.save(str(ckpt / "tokenizer.json"))
    tok.model.save(str(ckpt))  # vocab.json, merges.txt (the released repo ships both too)

    # tokenizer_config.json / special_tokens_map.json / added_tokens.json: the released files
    # with the ids of the tiny vocabulary.
    tc = json.loads((upstream / "tokenizer_config.json").read_text())
    tc["added_tokens_decoder"] = {
        str(ids[v["content"]]): v for v in tc["added_tokens_decoder"].values()}
    (ckpt / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")
    shutil.copyfile(upstream / "special_tokens_map.json", ckpt / "special_tokens_map.json")
    at = json.loads((upstream / "added_tokens.json").read_text())
    at = {k: ids[k] for k in sorted(at)}
    (ckpt / "added_tokens.json").write_text(json.dumps(at, indent=2) + "\n")
    return ids


# --------------------------------------------------------------------------- config files


def write_config_files(upstream: Path, ckpt: Path, ids: dict) -> dict:
    cfg = json.loads((upstream / "config.json").read_text())
    cfg.update(TINY_LLM)
    cfg["vocab_size"] = BPE_SIZE + len(SPECIAL_TOKENS)  # = len(tokenizer), as 151666
    cfg["bos_token_id"] = ids["<|endoftext|>"]  # released: 151643
    cfg["eos_token_id"] = ids["<|im_end|>"]  # released: 151645
    cfg["vision_config"] = dict(TINY_VISION)
    cfg["_name_or_path"] = "vlmzoo/tiny-random-MiniCPM-V-2_6"
    (ckpt / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    gen = json.loads((upstream / "generation_config.json").read_text())
    gen["bos_token_id"], gen["eos_token_id"] = cfg["bos_token_id"], cfg["eos_token_id"]
    (ckpt / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    # preprocessor_config.json: unchanged (all of its values apply to the tiny model too).
    shutil.copyfile(upstream / "preprocessor_config.json", ckpt / "preprocessor_config.json")
    return cfg


def make_load_dir(upstream: Path, ckpt: Path, load: Path) -> Path:
    """A HF-style folder for trust_remote_code: the checkpoint's files + the official code."""
    if load.exists():
        shutil.rmtree(load)
    load.mkdir(parents=True)
    for f in ckpt.iterdir():
        os.symlink(f.resolve(), load / f.name)
    for f in OFFICIAL_CODE:
        shutil.copyfile(upstream / f, load / f)
    return load


# --------------------------------------------------------------------------- environment


def setup_environment(work: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["HF_HOME"] = str(work / "hf_home")
    os.environ["HF_MODULES_CACHE"] = str(work / "hf_modules")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # Stub 1: modeling_minicpmv.py does `import torchvision` (never used). The PyPI torchvision
    # 0.28.0 wheel is a CUDA build whose C extension cannot load against the CPU torch 2.13.0;
    # its _meta_registrations module then fails at import. Pre-set it to an empty module.
    sys.modules.setdefault("torchvision._meta_registrations",
                           types.ModuleType("torchvision._meta_registrations"))
    # Patch 1: resampler.py gets `List` (used in an annotation at import time) from
    # `from torch.nn.functional import *`. torch.nn.functional had `from typing import List`
    # in the torch releases the code was written for (2.1); torch 2.13's no longer imports it.
    # Give the module that name back (typing.List), so the star import provides it again.
    import typing

    import torch.nn.functional as F
    if not hasattr(F, "List"):
        F.List = typing.List


# --------------------------------------------------------------------------- init


def init_parameters(model) -> dict:
    """Distinct, non-trivial values for every parameter (see README.md)."""
    import torch
    torch.manual_seed(SEED)
    rules = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("embed_tokens.weight"):
                rule, std, base = "normal(1)", 1.0, 0.0
            elif name == "llm.lm_head.weight":
                rule, std, base = "normal(3/sqrt(fan_in))", 3.0 / math.sqrt(p.shape[1]), 0.0
            elif name.endswith("position_embedding.weight"):
                rule, std, base = "normal(0.5)", 0.5, 0.0
            elif name == "resampler.query":
                rule, std, base = "normal(1)", 1.0, 0.0
            elif name == "resampler.proj":  # used as x @ proj: fan_in = shape[0]
                rule, std, base = "normal(1/sqrt(fan_in))", 1.0 / math.sqrt(p.shape[0]), 0.0
            elif any(k in name for k in ("layernorm", "layer_norm", "ln_q", "ln_kv", "ln_post",
                                         "llm.model.norm")):
                if leaf == "weight":
                    rule, std, base = "1+normal(0.1)", 0.1, 1.0
                else:
                    rule, std, base = "normal(0.02)", 0.02, 0.0
            elif leaf in ("bias", "in_proj_bias"):
                rule, std, base = "normal(0.02)", 0.02, 0.0
            elif leaf in ("weight", "in_proj_weight") and p.dim() in (2, 4):
                fan_in = p[0].numel()
                rule, std, base = "normal(1/sqrt(fan_in))", 1.0 / math.sqrt(fan_in), 0.0
            else:
                raise AssertionError(f"no init rule for {name} {tuple(p.shape)}")
            p.copy_(base + std * torch.randn(p.shape, dtype=torch.float32))
            rules[name] = rule
    return rules


# --------------------------------------------------------------------------- recorder


class Recorder:
    """Hooks that record values passing through the official model; they change nothing."""

    def __init__(self, model):
        import torch
        self.model = model
        self.reset()
        model.llm.register_forward_hook(self._llm_hook)
        model.llm.register_forward_pre_hook(self._llm_pre_hook, with_kwargs=True)
        model.vpm.register_forward_hook(self._vpm_hook)
        model.resampler.register_forward_hook(self._resampler_hook)
        model.vpm.embeddings.position_embedding.register_forward_pre_hook(self._pos_hook)
        orig_llm_generate = model.llm.generate
        orig_generate = model.generate

        def llm_generate(*args, **kwargs):
            self.llm_generate_kwargs.append({
                "inputs_embeds": kwargs["inputs_embeds"].detach().clone(),
                "attention_mask": kwargs.get("attention_mask"),
                "eos_token_id": kwargs.get("eos_token_id"),
                "pad_token_id": kwargs.get("pad_token_id"),
                "gen": {k: kwargs[k] for k in ("do_sample", "num_beams", "repetition_penalty",
                                                "max_new_tokens", "top_p", "top_k",
                                                "temperature", "min_new_tokens") if k in kwargs},
            })
            out = orig_llm_generate(*args, **kwargs)
            self.llm_outputs.append(out.detach().clone())
            return out

        def generate(*args, **kwargs):
            self.generate_kwargs.append(kwargs)
            return orig_generate(*args, **kwargs)

        model.llm.generate = llm_generate
        model.generate = generate
        self._torch = torch

    def reset(self):
        self.step_logits = []
        self.position_ids = []
        self.vpm_out = []
        self.resampler_out = []
        self.pos_ids = []
        self.llm_generate_kwargs = []
        self.llm_outputs = []
        self.generate_kwargs = []
        self.prompts = []
        self.final_texts = []

    def _llm_pre_hook(self, module, args, kwargs):
        pos = kwargs.get("position_ids")
        self.position_ids.append(None if pos is None else pos.detach().clone())

    def _llm_hook(self, module, args, output):
        self.step_logits.append(output.logits[:, -1, :].detach().clone())

    def _vpm_hook(self, module, args, output):
        self.vpm_out.append(output.last_hidden_state.detach().clone())

    def _resampler_hook(self, module, args, output):
        self.resampler_out.append(output.detach().clone())

    def _pos_hook(self, module, args):
        self.pos_ids.append(args[0].detach().clone())

    def wrap_processor(self, processor):
        """Record the chat-template text and the placeholder-expanded text (instance wrappers)."""
        tok = processor.tokenizer
        orig_template = tok.apply_chat_template
        orig_convert = processor._convert

        def apply_chat_template(*args, **kwargs):
            out = orig_template(*args, **kwargs)
            self.prompts.append(out)
            return out

        def _convert(input_str, *args, **kwargs):
            self.final_texts.append(input_str)
            return orig_convert(input_str, *args, **kwargs)

        tok.apply_chat_template = apply_chat_template
        processor._convert = _convert


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    upstream, work, out = args.upstream.resolve(), args.work.resolve(), args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    setup_environment(work)

    import numpy as np
    import torch
    import transformers
    from PIL import Image
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModel, AutoProcessor, AutoTokenizer

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.use_deterministic_algorithms(True)

    ckpt = out / "checkpoint"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    ids = build_tokenizer_files(upstream, ckpt)
    cfg_json = write_config_files(upstream, ckpt, ids)

    # ---- build, initialise and save the tiny checkpoint (official classes)
    build_dir = make_load_dir(upstream, ckpt, work / "build")
    config = AutoConfig.from_pretrained(build_dir, trust_remote_code=True)
    model = AutoModel.from_config(config, trust_remote_code=True, torch_dtype=torch.float32)
    init_rules = init_parameters(model)
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    assert set(sd) == {n for n, _ in model.named_parameters()}, "persistent tensors = parameters"
    save_file(sd, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    del model

    # ---- load it back fresh with the official code
    load_dir = make_load_dir(upstream, ckpt, work / "load")
    model, info = AutoModel.from_pretrained(load_dir, trust_remote_code=True,
                                            torch_dtype=torch.float32, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys",
                                     "error_msgs")), info
    model.eval()
    saved = load_file(str(ckpt / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    tokenizer = AutoTokenizer.from_pretrained(load_dir, trust_remote_code=True)
    assert len(tokenizer) == cfg_json["vocab_size"]
    rec = Recorder(model)
    # chat() builds its processor itself (AutoProcessor.from_pretrained(config._name_or_path))
    # on first use; build it the same way now so its methods can be wrapped for recording.
    assert model.config._name_or_path == str(load_dir)
    model.processor = AutoProcessor.from_pretrained(model.config._name_or_path,
                                                    trust_remote_code=True)
    processor = model.processor
    rec.wrap_processor(processor)
    ip = processor.image_processor

    images = {name: Image.open(IMAGES_DIR / name).convert("RGB") for name in IMAGES}
    terminators = [tokenizer.convert_tokens_to_ids(t) for t in model.terminators]
    diagnostics = {}

    def greedy_chat(image, msgs, **kw):
        rec.reset()
        answer = model.chat(image=image, msgs=msgs, tokenizer=tokenizer, sampling=False,
                            num_beams=1, repetition_penalty=1.0, max_new_tokens=MAX_NEW_TOKENS,
                            **kw)
        return answer

    def describe_images(img_names, tgt_sizes, pixel_values):
        """Per image: slicing (official methods), processed pixel values, tgt sizes."""
        outd = []
        k = 0
        for name in img_names:
            im = images[name]
            grid = ip.get_sliced_grid(im.size, ip.max_slice_nums)
            slices = ip.get_sliced_images(im)
            n = len(slices)
            entry = {
                "file": name, "size_wh": list(im.size),
                "grid_cols_rows": grid, "n_slices": n,
                "slice_sizes_wh": [list(s.size) for s in slices],
                "tgt_sizes_hw": tgt_sizes[k:k + n].tolist(),
                "pixel_values": [],
            }
            for j in range(n):
                pv = pixel_values[k + j].numpy()
                h, w = entry["tgt_sizes_hw"][j]
                assert pv.shape == (3, ip.patch_size, h * w * ip.patch_size), pv.shape
                entry["pixel_values"].append({"shape": list(pv.shape), "dtype": str(pv.dtype),
                                              "sha256": sha256_f32(pv),
                                              "sum": float(pv.astype(np.float64).sum()),
                                              "first8": f32_list(pv.reshape(-1)[:8])})
            outd.append(entry)
            k += n
        return outd

    def position_id_table(tgt_sizes):
        """SigLIP position ids per slice, as (row bucket, column bucket) lists."""
        pos = torch.cat(rec.pos_ids, 0)
        side = TINY_VISION["image_size"] // TINY_VISION["patch_size"]
        table = []
        for b, (h, w) in enumerate(tgt_sizes.tolist()):
            p = pos[b, : h * w].reshape(h, w)
            rows, cols = (p[:, 0] // side).tolist(), (p[0, :] % side).tolist()
            assert torch.equal(p, torch.tensor(rows)[:, None] * side + torch.tensor(cols)[None, :])
            assert bool((pos[b, h * w:] == 0).all())
            table.append({"tgt_hw": [h, w], "row_buckets": rows, "col_buckets": cols})
        return table

    def record_case(case_name, img_names, answer, save_features=None):
        g = rec.generate_kwargs[-1]
        lg = rec.llm_generate_kwargs[-1]
        input_ids = g["input_ids"]
        assert input_ids.shape[0] == 1
        ids0 = input_ids[0].tolist()
        am = g["attention_mask"][0]
        out_ids = rec.llm_outputs[-1][0].tolist()
        steps = rec.step_logits
        first = steps[0][0]
        gaps = [top_gap(s[0]) for s in steps[: len(out_ids)]]
        assert all(int(torch.argmax(s[0])) == t for s, t in zip(steps, out_ids)), "greedy"
        stopped = "eos" if out_ids and out_ids[-1] in terminators else "max_new_tokens"
        bounds = g["image_bound"][0].tolist()
        for s, e in bounds:
            assert ids0[s - 1] in (ids["<image>"], ids["<slice>"]), (s, ids0[s - 1])
            assert ids0[e] in (ids["</image>"], ids["</slice>"]) and e - s == 64
            assert all(t == ids["<unk>"] for t in ids0[s:e])
        c = {
            "prompt_text": rec.prompts[-1],
            "expanded_text": rec.final_texts[-1],
            "input_ids": ids0,
            "n_input_ids": len(ids0),
            "attention_mask_zero_positions": [i for i, m in enumerate(am.tolist()) if not m],
            "prefill_position_ids_are_arange": bool(torch.equal(
                rec.position_ids[0][0], torch.arange(len(ids0)))),
            "image_bound": bounds,
            "inputs_embeds": stats(lg["inputs_embeds"][0].numpy()),
            "llm_generate_args": {"eos_token_id": lg["eos_token_id"],
                                  "pad_token_id": lg["pad_token_id"], **lg["gen"]},
            "first_logits": f32_list(first.numpy()),
            "first_logits_argmax": int(torch.argmax(first)),
            "generated": out_ids,
            "stopped_by": stopped,
            "answer": answer,
        }
        if not c["prefill_position_ids_are_arange"]:
            c["prefill_position_ids"] = rec.position_ids[0][0].tolist()
        if img_names:
            c["images"] = describe_images(img_names, g["tgt_sizes"][0], g["pixel_values"][0])
            c["vision_batches"] = [list(v.shape) for v in rec.vpm_out]
            c["vpm_last_hidden_state"] = [stats(v.numpy()) for v in rec.vpm_out]
            feats = rec.resampler_out[0].numpy()
            c["features"] = stats(feats)
            c["siglip_position_ids"] = position_id_table(g["tgt_sizes"][0])
            if save_features:
                fname = f"features-{save_features}.npy"
                np.save(out / fname, feats.astype(np.float32))
                c["features_file"] = fname
        diagnostics[case_name] = {"min_top1_top2_gap": min(gaps), "step_gaps": gaps}
        return c

    def raw_generate(case, **kw):
        """The same processor outputs through MiniCPMV.generate (no chat()), greedy."""
        g = rec.generate_kwargs[-1]
        rec.reset()
        with torch.inference_mode():
            res = model.generate(input_ids=g["input_ids"], pixel_values=g["pixel_values"],
                                 tgt_sizes=g["tgt_sizes"], image_bound=g["image_bound"],
                                 attention_mask=g["attention_mask"], tokenizer=tokenizer,
                                 max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
        return res[0].tolist()

    reference = {
        "source": {"hf_repo": "openbmb/MiniCPM-V-2_6",
                   "code_files": {f: hashlib.sha256((upstream / f).read_bytes()).hexdigest()
                                  for f in OFFICIAL_CODE}},
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "pillow": Image.__version__},
        "llm_attn_implementation": model.llm.config._attn_implementation,
        "vision_attn_implementation": model.config.vision_config._attn_implementation,
        "config": {k: cfg_json[k] for k in ("hidden_size", "intermediate_size",
                                            "num_hidden_layers", "num_attention_heads",
                                            "num_key_value_heads", "vocab_size", "rope_theta",
                                            "rms_norm_eps", "query_num", "vision_config")},
        "resampler_num_heads": model.resampler.num_heads,
        "vision_batch_size": model.config.vision_batch_size,
        "init_rules": init_rules,
    }

    # ---- tokenizer facts
    reference["tokenizer"] = {
        "len": len(tokenizer),
        "bpe_size": BPE_SIZE,
        "special_token_ids": ids,
        "bos": [tokenizer.bos_token, tokenizer.bos_token_id],
        "eos": [tokenizer.eos_token, tokenizer.eos_token_id],
        "pad": [tokenizer.pad_token, tokenizer.pad_token_id],
        "unk": [tokenizer.unk_token, tokenizer.unk_token_id],
        "terminators": dict(zip(model.terminators, terminators)),
        "id0": tokenizer.convert_ids_to_tokens(0),
        "newline_id": tokenizer.newline_id,
        "encode": {s: tokenizer.encode(s) for s in [
            QUESTION, "Look at this! What is it?", "<image_id>12</image_id>",
            "<image><unk><unk></image>\n<slice><unk></slice>", "2024 3.14", " hello\n\nworld"]},
    }

    # ---- slicing table: official image-processor methods on image sizes (blank images)
    table = []
    for w, h in [(120, 90), (448, 448), (449, 448), (512, 512), (451, 300), (600, 400),
                 (640, 427), (1100, 240), (240, 1100), (1000, 1000), (1344, 1344),
                 (2000, 1000), (4000, 100), (100, 4000), (28, 28), (14, 1000), (700, 300),
                 (1920, 1080), (1080, 1920), (3000, 2000), (896, 448), (10000, 10000),
                 (630, 630), (633, 633)]:
        im = Image.new("RGB", (w, h))
        grid = ip.get_sliced_grid((w, h), ip.max_slice_nums)
        sl = ip.get_sliced_images(im)
        ph = ip.get_slice_image_placeholder((w, h), 0)
        table.append({"size_wh": [w, h], "grid_cols_rows": grid, "n_slices": len(sl),
                      "slice_sizes_wh": [list(s.size) for s in sl],
                      "placeholder_token_count": len(tokenizer.encode(ph))})
    reference["slicing_table"] = table

    cases = {}
    # ---- one-image question for each photo (image passed as chat(image=...), the README way)
    for name in IMAGES:
        key = name[:-4]
        msgs = [{"role": "user", "content": QUESTION}]
        answer = greedy_chat(images[name], msgs)
        c = record_case(f"single/{key}", [name], answer,
                        save_features=key if name in FEATURE_FILES else None)
        c["call"] = {"image": name, "msgs": msgs}
        raw = raw_generate(c)
        assert raw == c["generated"], (raw, c["generated"])
        c["raw_generate_ids"] = raw
        if name in BEAM_IMAGES:
            rec.reset()
            beam_answer = model.chat(image=images[name], msgs=msgs, tokenizer=tokenizer,
                                     sampling=False, max_new_tokens=MAX_NEW_TOKENS)
            c["chat_default_beam"] = {"settings": rec.llm_generate_kwargs[-1]["gen"],
                                      "generated": rec.llm_outputs[-1][0].tolist(),
                                      "answer": beam_answer}
        cases[f"single/{key}"] = c

    # ---- two images in one user turn (images first, then the text, as content order)
    msgs2 = [{"role": "user", "content": ["<chelsea.png>", "<coffee.png>",
                                          "Compare the two pictures."]}]
    answer = greedy_chat(None, [{"role": "user", "content": [images["chelsea.png"],
                                                              images["coffee.png"],
                                                              "Compare the two pictures."]}])
    c = record_case("two_images", ["chelsea.png", "coffee.png"], answer)
    c["call"] = {"image": None, "msgs": msgs2}
    c["raw_generate_ids"] = raw_generate(c)
    cases["two_images"] = c

    # ---- multi-turn chat: an image in turn 1 and another in turn 3 (image ids 0 and 1)
    first_answer = "A rocket on the launch pad."
    mt = [{"role": "user", "content": [images["rocket.png"], QUESTION]},
          {"role": "assistant", "content": first_answer},
          {"role": "user", "content": [images["small.png"], "And this one? Please answer briefly."]}]
    answer = greedy_chat(None, mt)
    c = record_case("multi_turn", ["rocket.png", "small.png"], answer)
    c["call"] = {"image": None, "msgs": [
        {"role": "user", "content": ["<rocket.png>", QUESTION]},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": ["<small.png>", "And this one? Please answer briefly."]}]}
    c["raw_generate_ids"] = raw_generate(c)
    cases["multi_turn"] = c

    # ---- seven images in one turn: 18 slices > vision_batch_size (16), so the SigLIP runs in
    # two chunks (16 + 2) over inputs padded to the longest slice of all 18
    seven = IMAGES + ["astronaut.png"]
    answer = greedy_chat(None, [{"role": "user", "content": [images[n] for n in seven]
                                 + ["Describe these pictures."]}])
    c = record_case("seven_images", seven, answer)
    c["call"] = {"image": None, "msgs": [{"role": "user", "content": [f"<{n}>" for n in seven]
                                          + ["Describe these pictures."]}]}
    c["raw_generate_ids"] = raw_generate(c)
    cases["seven_images"] = c

    # ---- chat() options: max_slice_nums=2, use_image_id=False
    msgs_o = [{"role": "user", "content": QUESTION}]
    answer = greedy_chat(images["panorama.png"], msgs_o, max_slice_nums=2, use_image_id=False)
    c = record_case("options", [], answer)
    g = rec.generate_kwargs[-1]
    c["images"] = [{"file": "panorama.png", "n_slices": len(g["pixel_values"][0]),
                    "tgt_sizes_hw": g["tgt_sizes"][0].tolist(),
                    "grid_cols_rows": ip.get_sliced_grid(images["panorama.png"].size, 2),
                    "pixel_values_sha256": [sha256_f32(p.numpy()) for p in g["pixel_values"][0]]}]
    c["features"] = stats(rec.resampler_out[0].numpy())
    c["call"] = {"image": "panorama.png", "msgs": msgs_o, "max_slice_nums": 2,
                 "use_image_id": False}
    c["raw_generate_ids"] = raw_generate(c)
    cases["options"] = c

    # ---- text only, with a system prompt
    msgs_t = [{"role": "user", "content": "Hello, who are you?"}]
    answer = greedy_chat(None, msgs_t, system_prompt="Please answer briefly.")
    c = record_case("text_only_system", [], answer)
    c["call"] = {"image": None, "msgs": msgs_t, "system_prompt": "Please answer briefly."}
    cases["text_only_system"] = c

    # ---- id 0 in the prompt: the processor's attention_mask is input_ids != 0
    msgs_b = [{"role": "user", "content": "Look at this! What is it?"}]
    answer = greedy_chat(images["coffee.png"], msgs_b)
    c = record_case("id0_in_prompt", ["coffee.png"], answer)
    c["call"] = {"image": "coffee.png", "msgs": msgs_b}
    c["raw_generate_ids"] = raw_generate(c)
    cases["id0_in_prompt"] = c

    for k, c in cases.items():
        if "raw_generate_ids" in c:
            assert c["raw_generate_ids"] == c["generated"], k

    # ---- batch of two conversations (left padding with id 0)
    rec.reset()
    batch_msgs = [[{"role": "user", "content": [images["astronaut.png"], QUESTION]}],
                  [{"role": "user", "content": [images["small.png"], QUESTION]}]]
    answers = model.chat(image=None, msgs=batch_msgs, tokenizer=tokenizer, sampling=False,
                         num_beams=1, repetition_penalty=1.0, max_new_tokens=MAX_NEW_TOKENS)
    g = rec.generate_kwargs[-1]
    outb = rec.llm_outputs[-1]
    nsteps = outb.shape[1]
    cases["batch"] = {
        "call": {"image": None, "msgs": [[{"role": "user", "content": ["<astronaut.png>", QUESTION]}],
                                         [{"role": "user", "content": ["<small.png>", QUESTION]}]]},
        "input_ids": g["input_ids"].tolist(),
        "attention_mask_zero_positions": [
            [i for i, m in enumerate(row) if not m] for row in g["attention_mask"].tolist()],
        "image_bound": [b.tolist() for b in g["image_bound"]],
        "prefill_position_ids": rec.position_ids[0].tolist(),
        "first_logits_argmax": [int(x) for x in torch.argmax(rec.step_logits[0], -1)],
        "first_logits": [f32_list(r.numpy()) for r in rec.step_logits[0]],
        "generated": outb.tolist(),
        "answers": answers,
    }
    diagnostics["batch"] = {"min_top1_top2_gap": min(
        top_gap(s[b]) for s in rec.step_logits[:nsteps] for b in range(2))}

    reference["cases"] = cases
    reference["prompt_question"] = QUESTION
    reference["max_new_tokens"] = MAX_NEW_TOKENS

    (out / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    diagnostics["overall_min_gap"] = min(v["min_top1_top2_gap"] for v in diagnostics.values())
    (out / "diagnostics.json").write_text(json.dumps(diagnostics, indent=1) + "\n")
    print("overall min gap", diagnostics["overall_min_gap"])
    for k, v in cases.items():
        print(k, v.get("n_input_ids"), v.get("generated"), repr(v.get("answer", v.get("answers"))))


if __name__ == "__main__":
    main()
