"""moondream2 generation speed: vlmzoo's own port against plain transformers and the official code, in one run.

Builds a moondream2-sized checkpoint (MoondreamConfig() defaults: text 2048 wide, 24 layers, 32
heads, vocab 51200; vision 1152 wide, 27 layers; 1.93B parameters) with random weights, in the
official Hugging Face layout (config.json "HfMoondream", model.safetensors with "model." names),
a word-level tokenizer with 51,200 entries (so every id decodes) and one 448x448 photo
(scikit-image's astronaut, resized). Then, at batch 1, with a short question and 64 new tokens,
it times three sides, each in a process of its own (loading a model with vlmzoo changes the
process's malloc settings, engine/cpu/allocator.py; the others must run with glibc's defaults):

  - transformers: what a user would write without vlmzoo's port. The text decoder is a Phi-1.5,
    so transformers' PhiForCausalLM with the same numbers and the same weights (the fused
    attn.qkv split into q/k/v_proj), fed by vlmzoo's vision tower: the 729 image tokens
    (decoding.image_tokens), then ``phi.generate(inputs_embeds=<BOS + image tokens + prompt>)``.
    HF Phi's mask is causal over the 730-token image prefix, where moondream's prefix attends
    both ways, so its tokens may part from moondream's; a check after the timing runs the same
    Phi with moondream's prefix mask (a 4D mask, untimed) to show the weights are the same.
  - official: vikhyat/moondream's own MoondreamModel.query (temperature 0), from an exported
    copy of the package in its own venv (tests/data/moondream2/README.md, "Environment"), with
    the same random weights loaded through its state_dict, a stand-in for its hub tokenizer
    (our tokenizer.json) and, in float32 only, float32 crops (it casts crops to bf16).
  - vlmzoo: ``vlmzoo.load(folder).ask(image, question, max_new_tokens=64)``.

Both sides' dtype: bfloat16 where the CPU has native bf16 (AVX512-BF16 or AMX), else float32.
Random weights may end early, so the end token (id 0) is made unreachable on every side for the
timed runs: min_new_tokens for generate; for the official code and vlmzoo a wrapper (in this
script's processes only) sets its logit to -inf (official: around _prefill_prompt and
_decode_one_tok; vlmzoo: around the model's text.logits). The warm-up run is not forced and
says how many tokens each side would have produced by itself. Best of 3 runs per side:
  - time to first token: from the call (image in hand) to the first new token, vision and
    prefill included (vlmzoo's Answer.ttft starts after the image encoding, so it is printed
    too, but the table uses the wall clock from the call, taken by the same wrapper);
  - decode tokens/s: (tokens - 1) / (end - first token).

    python bench/moondream.py [--new-tokens 64] [--dtype auto]
        [--official-python /work/scratch/moondream-ref/venv/bin/python] [--upstream /work/scratch/moondream-ref]
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Stdlib only at module level: the official side runs this file with its own venv's python,
# which has torch, numpy, pillow, safetensors and tokenizers but neither vlmzoo nor transformers.
sys.path.insert(0, str(Path(__file__).resolve().parent))
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

QUESTION = "What is in this picture?"
QUESTION_WORDS = ["What", "is", "in", "this", "picture", "?"]  # the tokenizer's pre-tokenized question
VOCAB = 51200
IMAGE_SIDE = 448
SCRATCH = Path("/work/scratch/moondream-ref")


# -- the checkpoint -----------------------------------------------------------------------------------


def init_parameters(model) -> None:
    """make_reference.py's scheme (tests/data/moondream2/README.md), which keeps activations near
    unit scale and greedy choices away from ties: Linear weights normal(0, 1/sqrt(fan_in)),
    biases normal(0, 0.02); LayerNorm weights 1 + 0.1 normal, biases normal(0, 0.02); text.wte
    normal(0, 1); vision.pos_emb normal(0, 0.5); the region head's Fourier features normal(0, 1)."""
    import math

    import torch

    torch.manual_seed(0)
    kinds = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)):
            kind = "linear" if isinstance(module, torch.nn.Linear) else "ln"
            kinds[f"{name}.weight"], kinds[f"{name}.bias"] = f"{kind}_w", f"{kind}_b"
    with torch.no_grad():
        for name, p in model.named_parameters():
            kind = kinds.get(name)
            if name in ("text.wte", "region.coord_features", "region.size_features"):
                p.normal_(0.0, 1.0)
            elif name == "vision.pos_emb":
                p.normal_(0.0, 0.5)
            elif kind == "linear_w":
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            elif kind == "ln_w":
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            elif kind in ("linear_b", "ln_b"):
                p.normal_(0.0, 0.02)
            else:
                raise AssertionError(f"no init rule for {name}")


def phi_tensors(state: dict, n_layers: int, dim: int) -> dict:
    """moondream's text decoder -> PhiForCausalLM's tensor names (q, k and v split off the fused
    qkv, cloned: safetensors refuses tensors that share storage)."""
    out = {"model.embed_tokens.weight": state["text.wte"],
           "model.final_layernorm.weight": state["text.post_ln.weight"],
           "model.final_layernorm.bias": state["text.post_ln.bias"],
           "lm_head.weight": state["text.lm_head.weight"], "lm_head.bias": state["text.lm_head.bias"]}
    for i in range(n_layers):
        src, dst = f"text.blocks.{i}.", f"model.layers.{i}."
        for kind in ("weight", "bias"):
            q, k, v = state[f"{src}attn.qkv.{kind}"].split(dim, dim=0)
            out[f"{dst}self_attn.q_proj.{kind}"] = q.clone()
            out[f"{dst}self_attn.k_proj.{kind}"] = k.clone()
            out[f"{dst}self_attn.v_proj.{kind}"] = v.clone()
            out[f"{dst}self_attn.dense.{kind}"] = state[f"{src}attn.proj.{kind}"]
            out[f"{dst}input_layernorm.{kind}"] = state[f"{src}ln.{kind}"]
            out[f"{dst}mlp.fc1.{kind}"] = state[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}mlp.fc2.{kind}"] = state[f"{src}mlp.fc2.{kind}"]
    return out


def build(work: Path, dtype_name: str, text_layers: int) -> None:
    """checkpoint/ (official layout + tokenizer.json), phi/ (the same text weights as
    PhiForCausalLM) and the photo, in ``work``."""
    import dataclasses

    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PhiConfig

    from vlmzoo.families.moondream.modeling import (
        Moondream,
        MoondreamConfig,
        TextConfig,
    )
    from vlmzoo.samples import sample_photos

    config = MoondreamConfig(text=TextConfig(n_layers=text_layers))
    with torch.device("meta"):
        model = Moondream(config).to(getattr(torch, dtype_name))
    model = model.to_empty(device="cpu")
    init_parameters(model)
    state = model.state_dict()
    print(f"built {sum(v.numel() for v in state.values()) / 1e9:.3f}B random parameters ({dtype_name})", flush=True)

    ckpt = work / "checkpoint"
    ckpt.mkdir()
    save_file({"model." + k: v.contiguous() for k, v in state.items()}, str(ckpt / "model.safetensors"),
              metadata={"format": "pt"})
    (ckpt / "config.json").write_text(json.dumps({
        "architectures": ["HfMoondream"], "model_type": "moondream1",
        "config": dataclasses.asdict(config), "torch_dtype": dtype_name}, indent=1))
    # every id a word, so every id decodes; the question's words are ordinary entries
    words = ["<|endoftext|>"] + [f"<|special_{i}|>" for i in range(1, 10)] + QUESTION_WORDS
    words += [f"w{i}" for i in range(len(words), VOCAB)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    assert tok.get_vocab_size() == VOCAB and tok.encode(QUESTION).tokens == QUESTION_WORDS
    tok.save(str(ckpt / "tokenizer.json"))

    t = config.text
    phi = work / "phi"
    phi.mkdir()
    PhiConfig(vocab_size=t.vocab_size, hidden_size=t.dim, intermediate_size=t.ff_dim, num_hidden_layers=t.n_layers,
              num_attention_heads=t.n_heads, num_key_value_heads=t.n_kv_heads, partial_rotary_factor=0.5,
              hidden_act="gelu_new", layer_norm_eps=1e-5, max_position_embeddings=t.max_context,
              tie_word_embeddings=False, bos_token_id=config.tokenizer.bos_id, eos_token_id=config.tokenizer.eos_id,
              pad_token_id=config.tokenizer.eos_id, architectures=["PhiForCausalLM"],
              dtype=dtype_name).save_pretrained(phi)
    save_file(phi_tensors(state, t.n_layers, t.dim), str(phi / "model.safetensors"), metadata={"format": "pt"})
    Image.open(sample_photos()[0]).convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE)).save(work / "photo.png")


# -- the sides ------------------------------------------------------------------------------------------


def ids_of(text: str, tok) -> list[int]:
    """Token ids back from a word-level text (each id is one space-free word)."""
    return [tok.token_to_id(w) for w in text.split()]


def against(work: Path, logits, eos: int, answer: int) -> dict:
    """Another side's (T, vocab) logits, taken at the positions of vlmzoo's greedy tokens (the
    question, then vlmzoo's own tokens fed back), held to vlmzoo: how many of its next-token
    choices (moondream's rules: end token unreachable, "answer" after the first token) equal
    vlmzoo's, how far vlmzoo's token was below the top where they do not, and the first token's
    logits against vlmzoo's."""
    import numpy as np
    import torch

    ours = json.loads((work / "vlmzoo-ids.json").read_text())
    logits = logits.float().clone()
    first = float(np.abs(logits[0].numpy() - np.load(work / "logits-vlmzoo.npy")).max())
    logits[:, eos] = float("-inf")
    logits[1:, answer] = float("-inf")
    picked = logits.argmax(-1)
    target = torch.tensor(ours)
    differ = (picked != target).nonzero().flatten().tolist()
    below = [float(logits[i, picked[i]] - logits[i, target[i]]) for i in differ]
    return {"same_next": len(ours) - len(differ), "of": len(ours), "differ_at": differ,
            "worst_gap": max(below, default=0.0), "first_max_diff": first}


def run_vlmzoo(work: Path, new: int, dtype_name: str) -> dict:
    import numpy as np
    from PIL import Image

    import vlmzoo
    from vlmzoo.families.moondream import decoding

    m = vlmzoo.load(work / "checkpoint", dtype=dtype_name)
    text, eos = m.model.text, m.model.config.tokenizer.eos_id
    state = {"force": False, "first": None, "logits": None, "vision": 0.0}
    logits_of, image_tokens = text.logits, decoding.image_tokens

    def logits(hidden):  # its first call gives the first token; forced runs never reach the end token
        out = logits_of(hidden)
        if state["force"]:
            out[:, eos] = float("-inf")
        if state["first"] is None:
            state["first"] = time.perf_counter()
            if state["logits"] is None:
                state["logits"] = out[0].float().numpy().copy()
        return out

    def timed_image_tokens(*args, **kwargs):
        t = time.perf_counter()
        out = image_tokens(*args, **kwargs)
        state["vision"] = time.perf_counter() - t
        return out

    text.logits, decoding.image_tokens = logits, timed_image_tokens  # this process only
    image = Image.open(work / "photo.png").convert("RGB")

    def once(force: bool):
        state["force"], state["first"] = force, None
        start = time.perf_counter()
        answer = m.ask(image, QUESTION, max_new_tokens=new)
        return {"ttft": state["first"] - start, "tps": answer.tokens_per_s, "tokens": answer.num_tokens,
                "ids": ids_of(answer.text, m.tokenizer), "answer_ttft": answer.ttft, "vision": state["vision"]}

    natural = once(force=False)["tokens"]  # warm-up
    np.save(work / "logits-vlmzoo.npy", state["logits"])
    runs = [once(force=True) for _ in range(BEST_OF)]
    (work / "vlmzoo-ids.json").write_text(json.dumps(runs[0]["ids"]))
    return best(runs, natural, {"answer_ttft": min(r["answer_ttft"] for r in runs), "dtype": str(m.dtype)})


def run_transformers(work: Path, new: int, dtype_name: str) -> dict:
    # FirstToken: bench/generate.py's streamer, noting when the first new token came
    import torch
    from generate import FirstToken
    from PIL import Image
    from tokenizers import Tokenizer
    from transformers import PhiForCausalLM

    from vlmzoo.families.moondream import convert, decoding, processing

    dtype = getattr(torch, dtype_name)
    md = convert.load(work / "checkpoint", device="cpu", dtype=dtype)
    md.text = md.region = None  # only the vision tower is used; Phi holds the text weights
    phi, info = PhiForCausalLM.from_pretrained(work / "phi", dtype=dtype, output_loading_info=True)
    assert not any(info.values()), info  # every tensor matched: nothing missing, unexpected or mismatched
    phi.eval()
    tok = Tokenizer.from_file(str(work / "checkpoint" / "tokenizer.json"))
    t = md.config.tokenizer
    prompt = processing.query_prompt(t, tok.encode(QUESTION).ids)
    image = Image.open(work / "photo.png").convert("RGB")
    embed = phi.get_input_embeddings()

    def once(force: bool):
        streamer = FirstToken()
        start = time.perf_counter()
        with torch.inference_mode():
            tokens = decoding.image_tokens(md, image)
            vision = time.perf_counter() - start
            x = torch.cat([embed(torch.tensor([[t.bos_id]])), tokens[None], embed(torch.tensor([prompt]))], dim=1)
            out = phi.generate(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long),
                               max_new_tokens=new, min_new_tokens=new if force else None, do_sample=False,
                               streamer=streamer)
        end = time.perf_counter()
        ids = out[0].tolist()  # with inputs_embeds alone, generate returns the new tokens only
        return {"ttft": streamer.first - start, "tps": (len(ids) - 1) / (end - streamer.first),
                "tokens": len(ids), "ids": ids, "vision": vision, "inputs": x}

    natural = once(force=False)["tokens"]  # warm-up
    runs = [once(force=True) for _ in range(BEST_OF)]

    # Untimed: Phi's logits along vlmzoo's tokens, with HF's causal mask (as generate ran) and with
    # moondream's (the 730-token prefix attends both ways; a 4D mask, which transformers takes as is).
    ours = json.loads((work / "vlmzoo-ids.json").read_text())
    with torch.inference_mode():
        x = torch.cat([runs[0].pop("inputs"), embed(torch.tensor([ours[:-1]]))], dim=1)
        n, prefix = x.shape[1], 1 + md.config.vision.grid ** 2
        q, k = torch.arange(n)[:, None], torch.arange(n)[None, :]
        mask = ((k <= q) | ((q < prefix) & (k < prefix)))[None, None]
        check = {name: against(work, phi(inputs_embeds=x, attention_mask=m, logits_to_keep=len(ours)).logits[0],
                               t.eos_id, t.answer_id)
                 for name, m in (("causal", None), ("prefix", mask))}
    for r in runs[1:]:
        r.pop("inputs")
    return best(runs, natural, {"check": check, "prompt_tokens": n - len(ours) + 1})


def run_official(work: Path, new: int, dtype_name: str, upstream: Path) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    sys.path.insert(0, str(upstream))
    from moondream.torch import config as config_mod
    from moondream.torch import image_crops, vision
    from moondream.torch import moondream as md
    from moondream.torch import text as text_mod

    ckpt = work / "checkpoint"
    tokenizer_file = str(ckpt / "tokenizer.json")

    class OfflineTokenizer:  # MoondreamModel.__init__ would fetch moondream/starmie-v1 from the hub
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            assert name == "moondream/starmie-v1", name
            return Tokenizer.from_file(tokenizer_file)

    md.Tokenizer = OfflineTokenizer
    dtype = getattr(torch, dtype_name)
    if dtype != torch.bfloat16:  # the official prepare_crops casts crops to bf16: the same steps in float32
        def prepare_crops(image, config, device):
            out = image_crops.overlap_crop_image(np.array(image.convert("RGB")), max_crops=config.max_crops,
                                                 overlap_margin=config.overlap_margin)
            crops = torch.from_numpy(np.transpose(out["crops"], (0, 3, 1, 2)))
            return crops.to(device=device, dtype=dtype).div_(255.0).sub_(0.5).div_(0.5), out["tiling"]

        md.prepare_crops = vision.prepare_crops = prepare_crops

    # the built config.json carries vlmzoo's superset of fields (moondream1's too): the official ones only
    import dataclasses

    raw = json.loads((ckpt / "config.json").read_text())["config"]
    kinds = {"text": config_mod.TextConfig, "vision": config_mod.VisionConfig,
             "region": config_mod.RegionConfig, "tokenizer": config_mod.TokenizerConfig}
    config = config_mod.MoondreamConfig.from_dict(
        {part: {k: v for k, v in raw[part].items() if k in {f.name for f in dataclasses.fields(kind)}}
         for part, kind in kinds.items()})
    model = md.MoondreamModel(config, dtype=dtype, setup_caches=False)
    model.load_state_dict({k.removeprefix("model."): v for k, v in load_file(str(ckpt / "model.safetensors")).items()},
                          strict=True)
    model.eval()
    model._setup_caches()  # what HfMoondream does before its first call
    eos = config.tokenizer.eos_id
    state = {"force": False, "first": None, "vision": 0.0}
    prefill_prompt, decode_one_tok, vision_encoder = model._prefill_prompt, model._decode_one_tok, model._run_vision_encoder

    def timed_prefill(*args, **kwargs):
        logits, hidden, token, pos = prefill_prompt(*args, **kwargs)
        if state["force"] and int(token[0, 0]) == eos:
            logits = logits.clone()
            logits[:, eos] = float("-inf")
            token = torch.argmax(logits, dim=-1).unsqueeze(1)
        state["first"] = time.perf_counter()
        return logits, hidden, token, pos

    def forced_decode(*args, **kwargs):
        logits, hidden = decode_one_tok(*args, **kwargs)
        if state["force"]:
            logits[:, eos] = float("-inf")
        return logits, hidden

    def timed_vision(*args, **kwargs):
        t = time.perf_counter()
        out = vision_encoder(*args, **kwargs)
        state["vision"] = time.perf_counter() - t
        return out

    model._prefill_prompt, model._decode_one_tok, model._run_vision_encoder = timed_prefill, forced_decode, timed_vision
    tok = Tokenizer.from_file(tokenizer_file)
    image = Image.open(work / "photo.png").convert("RGB")
    settings = {"temperature": 0, "max_tokens": new, "variant": None}  # "variant": see make_reference.py

    def once(force: bool):
        state["force"] = force
        start = time.perf_counter()
        answer = model.query(image, QUESTION, settings=settings)["answer"]
        end = time.perf_counter()
        ids = ids_of(answer, tok)
        return {"ttft": state["first"] - start, "tps": (len(ids) - 1) / (end - state["first"]),
                "tokens": len(ids), "ids": ids, "vision": state["vision"]}

    natural = once(force=False)["tokens"]  # warm-up
    runs = [once(force=True) for _ in range(BEST_OF)]

    # Untimed: the official modules' logits along vlmzoo's tokens (its prefill over the question and
    # them, after the image, with its own mask), every position through its LM head.
    ours = json.loads((work / "vlmzoo-ids.json").read_text())
    t = config.tokenizer
    prompt = t.templates["query"]["prefix"] + tok.encode(QUESTION).ids + 2 * t.templates["query"]["suffix"]
    with torch.inference_mode():
        encoded = model.encode_image(image, {"variant": None})
        model.load_encoded_image(encoded)
        ids = torch.tensor([prompt + ours[:-1]])
        hidden = model._prefill(text_mod.text_encoder(ids, model.text), model.attn_mask[:, :, encoded.pos:encoded.pos + ids.shape[1], :],
                                torch.arange(encoded.pos, encoded.pos + ids.shape[1]), None)
        logits = text_mod._lm_head(hidden, model.text)[0, len(prompt) - 1:]
        check = against(work, logits, eos, t.answer_id)
    return best(runs, natural, {"check": check, "torch": torch.__version__})


# -- the run ------------------------------------------------------------------------------------------


def main() -> None:
    ap = parser(__doc__, 64, SCRATCH / "venv" / "bin" / "python", SCRATCH,
                "folder holding the exported moondream/ package")
    ap.add_argument("--text-layers", type=int, default=24, help="fewer for a quick check of this script only")
    args = ap.parse_args()

    if args.role == "build":
        return build(args.work, args.dtype, args.text_layers)
    official = functools.partial(run_official, upstream=args.upstream)
    if play_role(args, {"transformers": run_transformers, "official": official, "vlmzoo": run_vlmzoo}):
        return None

    import torch
    import transformers

    native_dtype(args)
    print(f"moondream2-sized ({args.text_layers} text layers), random weights, {args.dtype}, one "
          f"{IMAGE_SIDE}x{IMAGE_SIDE} photo, {args.new_tokens} new tokens, best of {BEST_OF}; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-moondream-") as tmp:
        work = Path(tmp)
        common = ["--work", str(work), "--dtype", args.dtype, "--new-tokens", str(args.new_tokens)]
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--role", "build", "--text-layers", str(args.text_layers), *common],
                       check=True)
        print(f"  checkpoint written in {time.perf_counter() - t:.0f} s", flush=True)
        # vlmzoo first: the others' checks read its tokens
        res = {"vlmzoo": side([sys.executable, __file__, "--role", "vlmzoo", *common], "vlmzoo")}
        res["transformers"] = side([sys.executable, __file__, "--role", "transformers", *common], "transformers")
        res["official"] = side([str(args.official_python), __file__, "--role", "official", "--upstream",
                                str(args.upstream), *common], "official")

    ours, hf, official = res["vlmzoo"], res["transformers"], res["official"]
    rows = [("transformers: vlmzoo's vision tower + PhiForCausalLM.generate(inputs_embeds)", hf),
            ("official: MoondreamModel.query (vikhyat/moondream 44146f1)", official),
            ("vlmzoo: load(folder).ask", ours)]
    print(f"\nprompt {hf['prompt_tokens']} positions (BOS + 729 image tokens + question); end token made "
          f"unreachable on every side (tokens each produced unforced: transformers {hf['natural_tokens']}, "
          f"official {official['natural_tokens']}, vlmzoo {ours['natural_tokens']})\n")
    table(rows, ours)
    print(f"(vlmzoo's own Answer.ttft, which starts after the image encoding: {ours['answer_ttft']:.2f} s)")

    def checked(c: dict) -> str:
        return (f"same next token at {c['same_next']} of {c['of']} positions"
                + (f" (vlmzoo's token at most {c['worst_gap']:.3f} below its top where not, at {c['differ_at']})"
                   if c["differ_at"] else "")
                + f"; first token's logits within {c['first_max_diff']:.3f} of vlmzoo's")

    n = args.new_tokens
    print("\ngreedy tokens against vlmzoo's: leading tokens equal when each runs free; then each side's "
          "logits along vlmzoo's tokens (fed back, untimed)")
    print(f"  transformers generate (causal image prefix): {agree(ours['ids'], hf['ids'])} of {n}; "
          f"{checked(hf['check']['causal'])}")
    print(f"  transformers with moondream's prefix mask: {checked(hf['check']['prefix'])}")
    print(f"  official: {agree(ours['ids'], official['ids'])} of {n}; {checked(official['check'])}")
    print(f"\nother processes' share of the {os.cpu_count()} CPUs while each side ran: "
          + ", ".join(f"{name} {r['others_cpu']:.0%}" for name, r in res.items()))
    print(f"\nmachine: {machine()}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__} (official venv: torch "
          f"{official['torch']})")
    return None


if __name__ == "__main__":
    main()
