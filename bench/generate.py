"""Generation speed: vlmzoo's ask against ``model.generate`` as the model cards show, in one run.

Builds a SmolVLM-256M-sized and a Qwen2-VL-2B-sized model (architecture numbers of the public
configs, random bf16 weights, tokenizers from the test factories: no downloads), then runs both
sides in bf16 where the CPU has native bf16, else in float32, with one 448x448 image, a short
prompt and 64 new tokens forced:
  - time to first token and decode tokens/s at batch 1, baseline and vlmzoo (best of 3 runs each);
  - wall time for N requests: the baseline one by one, vlmzoo as one batched call;
  - decode speed against the weight-bytes / memory-bandwidth bound measured in this run.
Each model runs in a process of its own, baseline first: loading a model with vlmzoo changes the
process's malloc settings (engine/cpu/allocator.py), and the baseline must run with glibc's defaults,
as a user's script does.

    python bench/generate.py [--models smolvlm,qwen2-vl] [--requests 16] [--new-tokens 64] [--dtype auto]

The models vlmzoo implements itself have their own scripts, which add the official code as a third
side (run in its scratch venv): ``--models moondream2`` runs bench/moondream.py and ``--models
minicpm-v`` bench/minicpm_v.py (their own options: see each script's --help).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

# single-request figures: the best of this many runs on each side (the shared box is noisy)
BEST_OF = 3
PROMPT = "Describe this picture in a few words, saying what is in it and where the light comes from."

# Architecture numbers of the public checkpoints' config.json files.
SIZES = {
    "smolvlm": {  # HuggingFaceTB/SmolVLM-256M-Instruct
        "build": "build_smolvlm",
        "text": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, head_dim=64, vocab_size=49280, max_position_embeddings=8192),
        "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       patch_size=16, image_size=512),
        "top": dict(scale_factor=4),
        "image_processor": dict(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512}),
        "processor": dict(image_seq_len=64),
    },
    "qwen2-vl": {  # Qwen/Qwen2-VL-2B-Instruct
        "build": "build_qwen2_vl",
        "text": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                     num_key_value_heads=2, head_dim=128, vocab_size=151936, max_position_embeddings=32768,
                     rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        "vision": dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16),
        "top": dict(),
        "image_processor": dict(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280},
                                min_pixels=56 * 56, max_pixels=28 * 28 * 1280),
        "processor": dict(),
    },
}


def build(name: str, out: Path) -> Path:
    """The test factory's tokenizer, template and processor; real-size config; random bf16 weights."""
    import factory_chat
    from transformers import AutoConfig, AutoModelForImageTextToText

    spec = SIZES[name]
    getattr(factory_chat, spec["build"])(out)
    cfg_path, proc_path = out / "config.json", out / "processor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["text_config"].update(spec["text"])
    cfg["text_config"].pop("layer_types", None)  # sized for the tiny model's layer count; rebuilt
    cfg["vision_config"].update(spec["vision"])
    cfg.update(spec["top"])
    cfg_path.write_text(json.dumps(cfg))
    proc = json.loads(proc_path.read_text())
    proc["image_processor"].update(spec["image_processor"])
    proc.update(spec["processor"])
    proc_path.write_text(json.dumps(proc))
    for old in out.glob("*.safetensors"):
        old.unlink()
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(out), dtype=torch.bfloat16)
    model.save_pretrained(out)
    return out


def decode_bytes(model) -> int:
    """Bytes of weights one decode step reads: the text decoder's layers and the LM head (the
    vision tower runs once per prompt; the embedding table gives one row per token)."""
    decoder = model.get_decoder()
    embed = decoder.embed_tokens.weight
    layers = sum(p.numel() * p.element_size() for p in decoder.parameters() if p is not embed)
    head = model.lm_head.weight
    return layers + head.numel() * head.element_size()


def bandwidth_gb_s(tries: int = 3) -> float:
    """The best of a few 1 GiB reads (x.sum()): the highest rate seen, so the bound is not lowered
    by a busy moment on a shared machine."""
    x = torch.ones(2**28)  # 1 GiB of float32
    x.sum()
    best = 0.0
    for _ in range(tries):
        t = time.perf_counter()
        for _ in range(5):
            x.sum()
        best = max(best, 5 * x.numel() * 4 / (time.perf_counter() - t) / 1e9)
    return best


class FirstToken:
    """A streamer recording when generate produced its first new token."""

    def __init__(self):
        self.prompt_seen, self.first = False, None

    def put(self, value):
        if self.prompt_seen and self.first is None:
            self.first = time.perf_counter()
        self.prompt_seen = True

    def end(self):
        pass


def baseline(path: Path, image: Image.Image, new: int, images: list[Image.Image], dtype: torch.dtype):
    """model.generate the way the model cards show it."""
    from transformers import AutoModelForImageTextToText

    from vlmzoo.families.hf import load_processor  # AutoProcessor, or its video-free twin here

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).eval()
    proc = load_processor(path)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": PROMPT}]}]

    def once(picture):
        messages[0]["content"][0]["image"] = picture
        inputs = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                          return_tensors="pt")
        streamer = FirstToken()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False, streamer=streamer)
        end = time.perf_counter()
        text = proc.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return streamer.first - t, (new - 1) / (end - streamer.first), inputs["input_ids"].shape[1], text

    once(image)  # warm-up
    runs = [once(image) for _ in range(BEST_OF)]
    ttft, tps = min(r[0] for r in runs), max(r[1] for r in runs)
    prompt_tokens, text = runs[0][2], runs[0][3]
    t = time.perf_counter()
    for picture in images:
        once(picture)
    many = time.perf_counter() - t
    return ttft, tps, many, prompt_tokens, sum(p.numel() for p in model.parameters()), decode_bytes(model), text


def ours(path: Path, image: Image.Image, new: int, images: list[Image.Image], dtype: str):
    import vlmzoo

    m = vlmzoo.load(path, dtype=dtype)
    m.ask(image, PROMPT, max_new_tokens=new, min_new_tokens=new)  # warm-up
    runs = [m.ask(image, PROMPT, max_new_tokens=new, min_new_tokens=new) for _ in range(BEST_OF)]
    ttft, tps = min(a.ttft for a in runs), max(a.tokens_per_s for a in runs)
    m.batch_size = len(images)
    t = time.perf_counter()
    batch = m.ask(images, [PROMPT] * len(images), max_new_tokens=new, min_new_tokens=new)
    assert all(b.num_tokens == new for b in batch)
    return ttft, tps, time.perf_counter() - t, runs[0].text, m.clean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smolvlm,qwen2-vl", help="smolvlm, qwen2-vl, moondream2, minicpm-v")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="both sides' dtype; auto: bfloat16 where the CPU has native bf16, else float32")
    args = ap.parse_args()
    models = args.models.split(",")
    own = {"moondream2": "moondream.py", "minicpm-v": "minicpm_v.py"}  # vlmzoo's ports: sides of their own
    for name in [m for m in models if m in own]:
        subprocess.run([sys.executable, str(Path(__file__).with_name(own[name])), "--new-tokens", str(args.new_tokens),
                        "--dtype", args.dtype], check=True)
    models = [m for m in models if m not in own]
    if not models:
        return
    if len(models) > 1:  # a fresh process per model: its baseline must see glibc's malloc untouched
        for name in models:
            subprocess.run([sys.executable, __file__, "--models", name, "--requests", str(args.requests),
                            "--new-tokens", str(args.new_tokens), "--dtype", args.dtype], check=True)
        return
    from vlmzoo.engine.device import cpu_has_native_bf16
    from vlmzoo.samples import sample_photos

    if args.dtype == "auto":
        args.dtype = "bfloat16" if cpu_has_native_bf16() else "float32"
    dtype = getattr(torch, args.dtype)
    photos = [Image.open(p).convert("RGB").resize((448, 448)) for p in sample_photos()]
    image = photos[0]
    # a different picture per request, as a real batch has (nothing may be reused across them)
    images = [photos[i % len(photos)].rotate(90 * (i // len(photos))) for i in range(args.requests)]
    bw = bandwidth_gb_s()
    print(f"memory bandwidth at the start: {bw:.1f} GB/s; {args.new_tokens} new tokens forced, "
          f"{args.requests} requests for throughput, {args.dtype}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            path = build(name, Path(tmp) / name)
            b_ttft, b_tps, b_many, prompt_tokens, params, step_bytes, b_text = baseline(
                path, image, args.new_tokens, images, dtype)
            o_ttft, o_tps, o_many, o_text, clean = ours(path, image, args.new_tokens, images, args.dtype)
            bw = max(bw, bandwidth_gb_s())  # measured again next to this model's runs; the higher counts
            bound = bw * 1e9 / step_bytes  # tokens/s if a step did nothing but read its weights once
            same = "equal" if clean(b_text) == o_text else "DIFFERENT"
            print(f"{name:9} {params / 1e9:.2f}B params ({step_bytes / 1e9:.2f} GB read per decode step), "
                  f"prompt {prompt_tokens} tokens, greedy text {same} | "
                  f"TTFT generate {b_ttft:5.2f} s, vlmzoo {o_ttft:5.2f} s | "
                  f"bandwidth {bw:.1f} GB/s, decode generate {b_tps:5.1f} tok/s ({b_tps / bound:4.0%} of bound), "
                  f"vlmzoo {o_tps:5.1f} tok/s ({o_tps / bound:4.0%}), x{o_tps / b_tps:4.2f} | "
                  f"{args.requests} requests: one by one {b_many:6.1f} s, vlmzoo batched {o_many:6.1f} s, "
                  f"x{b_many / o_many:4.1f}")


if __name__ == "__main__":
    main()
