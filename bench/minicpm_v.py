"""MiniCPM-V-2.6 generation speed: vlmzoo's own port against plain transformers generate and the official code, in one run.

Builds a MiniCPM-V-2.6-sized checkpoint (the published config.json's numbers: Qwen2-7B text model
3584 wide, 28 layers, vocab 151,666; SigLIP-400M 1152 wide, 27 layers; 64-query resampler;
8.10B parameters) with random bf16 weights, in the published layout (four
model-0000N-of-00004.safetensors shards and their index, tensor names and shapes from
tests/data/minicpm_v26/tensors-full-size.json), a word-level tokenizer with the released vocabulary
size and the released special-token ids (so every id decodes to one word), and one 448x448 photo.
Then, at batch 1, with a short question, N new tokens forced (min_new_tokens on every side, so
random weights do not stop early; the warm-up run is not forced and says how many tokens each
side would have produced by itself), best of 3 runs, it times three sides, each in a process of
its own (loading a model with vlmzoo changes the process's malloc settings,
engine/cpu/allocator.py; the others run with glibc's defaults):

  - transformers: what a user would run without vlmzoo's decode loop: the same modules
    (families/minicpm_v: transformers' Qwen2ForCausalLM with the SigLIP tower and resampler on
    its prefill), loaded by the family's loader alone, and ``model.generate(**inputs)``;
  - official: the HF repository's remote code (modeling_minicpmv.MiniCPMV.chat, greedy: sampling
    off, num_beams 1, repetition_penalty 1.0) in its scratch venv with transformers 4.40
    (tests/data/minicpm_v26/README.md says where the files come from and which stubs it needs);
  - vlmzoo: ``vlmzoo.load(folder).ask(image, question)``.

Time to first token is taken from the call (image in hand) to the first new token: preprocessing,
slicing, the vision tower and resampler and the prefill included. Decode tokens/s is
(tokens - 1) / (end - first token). bfloat16 where the CPU has native bf16, else float32.

    python bench/minicpm_v.py [--new-tokens 32] [--dtype auto]
        [--official-python /work/scratch/minicpmv-ref/venv/bin/python] [--upstream /work/scratch/minicpmv-ref/official]
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Stdlib only at module level: the official side runs this file with its own venv's python.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sides import (
    BEST_OF,
    agree,
    best,
    machine,
    native_dtype,
    parser,
    play_role,
    side,
    table,
)

DATA = HERE.parent / "tests" / "data" / "minicpm_v26"
SCRATCH = Path("/work/scratch/minicpmv-ref")
QUESTION = "What is in this picture?"
IMAGE_SIDE = 448
SHARDS = 4
# The published config.json's architecture numbers (openbmb/MiniCPM-V-2_6).
TEXT = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "max_window_layers": 28, "vocab_size": 151666, "torch_dtype": "bfloat16"}
VISION = {"hidden_size": 1152, "image_size": 980, "intermediate_size": 4304, "model_type": "siglip",
              "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14}
# The released special tokens: <unk> at 128244, the rest from 151643 on, in this order.
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "</image>", "<ref>", "</ref>", "<box>",
           "</box>", "<quad>", "</quad>", "<point>", "</point>", "<slice>", "</slice>", "<image_id>",
           "</image_id>"] + [f"<|reserved_special_token_{i}|>" for i in range(6)]
UNK_ID, FIRST_SPECIAL = 128244, 151643


# -- the checkpoint -----------------------------------------------------------------------------------


def random_tensor(name: str, shape: list[int], dtype):
    """Activations near unit scale, as the reference fixtures' scheme: matrices normal(0,
    1/sqrt(fan_in)), norm weights 1 + 0.1 normal, biases normal(0, 0.02), embedding tables
    normal(0, 1) (the resampler's queries too), the ViT's position table normal(0, 0.5)."""
    import torch

    if len(shape) == 1:
        base = 1.0 if name.endswith("weight") and any(k in name for k in ("norm", "ln_", "layer_norm")) else 0.0
        return (base + (0.1 if base else 0.02) * torch.randn(shape)).to(dtype)
    if "embed_tokens" in name or name == "resampler.query":
        return torch.randn(shape).to(dtype)
    if "position_embedding" in name:
        return (0.5 * torch.randn(shape)).to(dtype)
    return (torch.randn(shape) / math.sqrt(math.prod(shape[1:]))).to(dtype)


def write_tokenizer(ckpt: Path) -> None:
    """A word-level tokenizer.json with 151,666 ids: "!" at id 0 (as released: MiniCPM-V masks
    it), the words of the chat template and the question, <unk> and the special tokens at their
    released ids, fillers elsewhere; tokenizer_config / added_tokens / special_tokens_map from the
    fixture with the released ids."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    pieces = {w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(
        "system You are a helpful assistant. user assistant ( ./ ) " + QUESTION + " 0 1 2 3 4 5 6 7 8 9")}
    words = ["!"] + sorted(pieces - {"!"})
    vocab = {w: i for i, w in enumerate(words)}
    for i in range(len(words), TEXT["vocab_size"]):
        vocab[f"w{i}"] = i
    vocab["<unk>"] = UNK_ID
    del vocab[f"w{UNK_ID}"]
    for k, tok in enumerate(SPECIAL):
        vocab[tok] = FIRST_SPECIAL + k
        del vocab[f"w{FIRST_SPECIAL + k}"]
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", *SPECIAL]])
    assert tok.get_vocab_size() == TEXT["vocab_size"] and "<unk>" not in tok.encode(QUESTION).tokens
    tok.save(str(ckpt / "tokenizer.json"))

    released = {"<unk>": UNK_ID, **{t: FIRST_SPECIAL + k for k, t in enumerate(SPECIAL)}}
    tiny = json.loads((DATA / "checkpoint" / "added_tokens.json").read_text())
    cfg = json.loads((DATA / "checkpoint" / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {str(released[v["content"]]): v for v in cfg["added_tokens_decoder"].values()}
    (ckpt / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    (ckpt / "added_tokens.json").write_text(json.dumps({t: released[t] for t in tiny}, indent=1))
    for name in ("special_tokens_map.json", "preprocessor_config.json"):
        (ckpt / name).write_text((DATA / "checkpoint" / name).read_text())
    gen = json.loads((DATA / "checkpoint" / "generation_config.json").read_text())
    gen.update(bos_token_id=released["<|endoftext|>"], eos_token_id=released["<|im_end|>"])
    (ckpt / "generation_config.json").write_text(json.dumps(gen, indent=1))


def build(work: Path, dtype_name: str, layers: int | None) -> None:
    """checkpoint/ in the published layout, written one shard at a time (memory: one shard);
    ``layers``: fewer text and vision layers, for a quick check of this script only."""
    import re

    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from vlmzoo.samples import sample_photos

    ckpt = work / "checkpoint"
    ckpt.mkdir()
    config = json.loads((DATA / "checkpoint" / "config.json").read_text())
    config.update(TEXT)
    config["vision_config"].update(VISION)
    if layers:
        config.update(num_hidden_layers=layers, max_window_layers=layers)
        config["vision_config"]["num_hidden_layers"] = layers
    (ckpt / "config.json").write_text(json.dumps(config, indent=1))
    write_tokenizer(ckpt)

    shapes = json.loads((DATA / "tensors-full-size.json").read_text())["tensors"]
    if layers:
        shapes = {k: v for k, v in shapes.items()
                  if not (m := re.search(r"\.layers\.(\d+)\.", k)) or int(m.group(1)) < layers}
    names = sorted(shapes)
    total = sum(math.prod(s) for s in shapes.values())
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    weight_map, shard, size, k = {}, {}, 0, 1
    for i, name in enumerate(names):
        shard[name] = random_tensor(name, shapes[name], dtype)
        size += shard[name].numel()
        if size >= total / SHARDS or i == len(names) - 1:
            file = f"model-{k:05d}-of-{SHARDS:05d}.safetensors"
            save_file(shard, str(ckpt / file), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, file))
            shard, size, k = {}, 0, k + 1
    assert k - 1 == SHARDS, k
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total * dtype.itemsize}, "weight_map": weight_map}, indent=1))
    print(f"built {total / 1e9:.3f}B random parameters ({dtype_name})", flush=True)
    Image.open(sample_photos()[0]).convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE)).save(work / "photo.png")


# -- the sides ------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """An answer as its tokens (every id is one space-free word), id 0 ("!") left out: the
    official decoder and vlmzoo drop it, generate's raw ids keep it."""
    return [w for w in text.split() if w != "!"]


def timed_vision(model, attr: str, state: dict) -> None:
    """Wrap ``model.<attr>`` (the vision tower + resampler) to note how long it took."""
    inner = getattr(model, attr)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        state["vision"] = time.perf_counter() - t
        return out

    setattr(model, attr, wrapper)


def run_vlmzoo(work: Path, new: int, dtype_name: str) -> dict:
    from PIL import Image

    import vlmzoo

    m = vlmzoo.load(work / "checkpoint", dtype=dtype_name)
    state = {"vision": 0.0}
    timed_vision(m.model, "encode_images", state)
    image = Image.open(work / "photo.png").convert("RGB")

    def once(force: bool):
        start = time.perf_counter()
        a = m.ask(image, QUESTION, max_new_tokens=new, min_new_tokens=new if force else None)
        wall = time.perf_counter() - start
        # Answer.ttft starts after preprocessing: add the time before it (the call's wall time
        # minus Answer.seconds) to count from the call, as the other sides do
        return {"ttft": wall - a.seconds + a.ttft, "tps": a.tokens_per_s, "tokens": a.num_tokens,
                "ids": words(a.text), "vision": state["vision"], "answer_ttft": a.ttft}

    natural = once(force=False)["tokens"]  # warm-up
    runs = [once(force=True) for _ in range(BEST_OF)]
    return best(runs, natural, {"answer_ttft": min(r["answer_ttft"] for r in runs)})


def run_transformers(work: Path, new: int, dtype_name: str) -> dict:
    # FirstToken: bench/generate.py's streamer, noting when the first new token came
    import torch
    from generate import FirstToken
    from PIL import Image

    from vlmzoo.families.minicpm_v import MiniCPMVModel, convert

    ckpt = work / "checkpoint"
    model = convert.load(ckpt, device="cpu", dtype=getattr(torch, dtype_name)).eval()
    processor = MiniCPMVModel.load_processor(ckpt)
    tok = processor.tokenizer
    terminators = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    state = {"vision": 0.0}
    timed_vision(model, "encode_images", state)
    image = Image.open(work / "photo.png").convert("RGB")
    messages = [{"role": "user", "content": "(<image>./</image>)\n" + QUESTION}]

    def once(force: bool):
        streamer = FirstToken()
        start = time.perf_counter()
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor([prompt], [[image]])
        n = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new, min_new_tokens=new if force else None,
                                 do_sample=False, eos_token_id=terminators, pad_token_id=0, streamer=streamer)
        end = time.perf_counter()
        ids = out[0, n:].tolist()
        if ids and ids[-1] in terminators:
            ids = ids[:-1]
        return {"ttft": streamer.first - start, "tps": (len(ids) - 1) / (end - streamer.first),
                "tokens": len(ids), "ids": words(tok.decode(ids)), "vision": state["vision"], "prompt": n}

    natural = once(force=False)["tokens"]  # warm-up
    runs = [once(force=True) for _ in range(BEST_OF)]
    return best(runs, natural, {"prompt_tokens": runs[0]["prompt"]})


def run_official(work: Path, new: int, dtype_name: str, upstream: Path) -> dict:
    # every core, as the other sides: make_reference's setup would pin one thread (for its fixtures)
    os.environ["OMP_NUM_THREADS"] = str(os.cpu_count())
    sys.path.insert(0, str(DATA))
    import make_reference as mr  # vlmzoo's fixture driver: the official files' folder, stubs, patches

    mr.setup_environment(work / "official")
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoTokenizer

    load = mr.make_load_dir(upstream, work / "checkpoint", work / "official" / "load")
    dtype = getattr(torch, dtype_name)
    model = AutoModel.from_pretrained(load, trust_remote_code=True, torch_dtype=dtype, low_cpu_mem_usage=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(load, trust_remote_code=True)
    state = {"vision": 0.0, "first": None}
    timed_vision(model, "get_vllm_embedding", state)

    def first_forward(module, args, output):  # the llm's first forward of a call is the prefill
        if state["first"] is None:
            state["first"] = time.perf_counter()

    model.llm.register_forward_hook(first_forward)
    image = Image.open(work / "photo.png").convert("RGB")

    def once(force: bool):
        state["first"] = None
        start = time.perf_counter()
        answer = model.chat(image=None, msgs=[{"role": "user", "content": [image, QUESTION]}], tokenizer=tokenizer,
                            sampling=False, num_beams=1, repetition_penalty=1.0, max_new_tokens=new,
                            min_new_tokens=new if force else 0)
        end = time.perf_counter()
        ids = words(answer)
        return {"ttft": state["first"] - start, "tps": (len(ids) - 1) / (end - state["first"]),
                "tokens": len(ids), "ids": ids, "vision": state["vision"]}

    natural = once(force=False)["tokens"]  # warm-up
    runs = [once(force=True) for _ in range(BEST_OF)]
    return best(runs, natural, {"torch": torch.__version__, "transformers": __import__("transformers").__version__})


# -- the run ------------------------------------------------------------------------------------------


def main() -> None:
    ap = parser(__doc__, 32, SCRATCH / "venv" / "bin" / "python", SCRATCH / "official",
                "folder holding the official remote-code files (run with transformers 4.40)")
    ap.add_argument("--sides", default="vlmzoo,transformers,official")
    ap.add_argument("--layers", type=int, help="fewer text and vision layers: a quick check of this script only")
    args = ap.parse_args()

    if args.role == "build":
        return build(args.work, args.dtype, args.layers)
    official = functools.partial(run_official, upstream=args.upstream)
    if play_role(args, {"transformers": run_transformers, "official": official, "vlmzoo": run_vlmzoo}):
        return None

    import torch
    import transformers

    native_dtype(args)
    print(f"MiniCPM-V-2.6-sized{f' ({args.layers} layers)' if args.layers else ''}, random weights, {args.dtype}, one {IMAGE_SIDE}x{IMAGE_SIDE} photo, "
          f"{args.new_tokens} new tokens forced, best of {BEST_OF}; torch threads {torch.get_num_threads()}",
          flush=True)
    sides = args.sides.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-minicpmv-") as tmp:
        work = Path(tmp)
        common = ["--work", str(work), "--dtype", args.dtype, "--new-tokens", str(args.new_tokens)]
        t = time.perf_counter()
        layers = ["--layers", str(args.layers)] if args.layers else []
        subprocess.run([sys.executable, __file__, "--role", "build", *layers, *common], check=True)
        print(f"  checkpoint written in {time.perf_counter() - t:.0f} s", flush=True)
        res = {}
        for name in sides:
            python = str(args.official_python) if name == "official" else sys.executable
            extra = ["--upstream", str(args.upstream)] if name == "official" else []
            res[name] = side([python, __file__, "--role", name, *extra, *common], name)

    ours = res["vlmzoo"]
    labels = {"transformers": "transformers: the same modules, model.generate(**inputs)",
              "official": "official: MiniCPMV.chat, greedy (HF remote code, transformers {})",
              "vlmzoo": "vlmzoo: load(folder).ask"}
    rows = [(labels[n].format(res[n].get("transformers")), res[n]) for n in ("transformers", "official", "vlmzoo")
            if n in res]
    prompt = res.get("transformers", {}).get("prompt_tokens", "?")
    print(f"\nprompt {prompt} tokens; tokens each side produced unforced: "
          + ", ".join(f"{n} {r['natural_tokens']}" for n, r in res.items()) + "\n")
    table(rows, ours)
    print(f"(vlmzoo's own Answer.ttft, which starts after preprocessing: {ours['answer_ttft']:.2f} s)")
    print(f"\ngreedy tokens, leading ones equal to vlmzoo's (of {args.new_tokens}, id 0 left out): "
          + ", ".join(f"{n} {agree(ours['ids'], r['ids'])}" for n, r in res.items() if r is not ours))
    print(f"other processes' share of the {os.cpu_count()} CPUs while each side ran: "
          + ", ".join(f"{name} {r['others_cpu']:.0%}" for name, r in res.items()))
    print(f"\nmachine: {machine()}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}")
    return None


if __name__ == "__main__":
    main()
