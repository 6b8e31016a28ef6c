"""Make the moondream1 reference test data from the official implementation.

This is vlmzoo's own driver script. It contains no upstream code: it imports the official
package (vikhyat/moondream, commit 7901a2a, the code that shipped the final moondream1
weights; exported unchanged to a scratch folder outside the repository) and runs it on a
tiny random configuration of the same architecture.

    python make_reference.py --upstream /work/scratch/moondream1-ref          # writes beside this file
    python make_reference.py --upstream /work/scratch/moondream1-ref --out /tmp/x

--upstream is the folder holding the exported ``moondream/`` package. See README.md beside
this file for the environment, the patches and the quirks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

UPSTREAM_REPO = "vikhyat/moondream"
UPSTREAM_COMMIT = "7901a2a09a5afa1034858f22538523c35d6dfcfc"
HF_REPO = "vikhyatk/moondream1"
HF_REVISION = "f6e9da68e8f1b78b8f3ee10905d56826db7a5802"  # see README: what candle pins
SEED = 0
MAX_NEW_TOKENS = 24

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE.parent / "moondream2" / "images"  # reused, not copied
IMAGES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "panorama.png", "small.png"]
FEATURE_FILES = ("astronaut.png", "panorama.png")  # full image embeddings saved as .npy
CHAT_IMAGE = "astronaut.png"  # one second-round (chat_history) run

QUESTION = "What is in this picture?"
# moondream1 has no caption method: a caption is asked for as an ordinary question.
CAPTION_QUESTION = "Describe this image."
FOLLOW_UP = "What color is it?"

# --------------------------------------------------------------------------- configuration
#
# PhiConfig keyword arguments (configuration_moondream.PhiConfig; everything not listed keeps
# its default, which is Phi-1.5's: n_positions 2048, n_inner None (= 4 * n_embd),
# rotary_dim min(32, head_dim), gelu_new, layer_norm_epsilon 1e-5, pad_vocab_size_multiple 64).
# head_dim stays 64 (as in Phi-1.5: 2048 / 32) so the rotary part (32 dims) is a partial one.
TINY_PHI = {"vocab_size": 512, "n_embd": 128, "n_layer": 2, "n_head": 2}

# The vision tower is timm's "vit_so400m_patch14_siglip_384" with only these arguments
# overridden (the official code hard-codes the model name; see the patches). mlp_ratio stays
# 3.7362, so the MLP width is int(32 * 3.7362) = 119 (4304 at full size), img_size stays 384
# with patch 14 (27 x 27 = 729 positions), class_token False, global_pool "map".
TINY_VISION_TIMM = {"embed_dim": 32, "depth": 2, "num_heads": 2}

# --------------------------------------------------------------------------- tokenizer
#
# Same layout as the CodeGen / Phi-1.5 tokenizer moondream1 ships: byte-level BPE (GPT-2
# pre-tokenizer regex, no prefix space), "<|endoftext|>" right after the BPE vocabulary
# (bos = eos = unk), then non-special added tokens for runs of spaces and tabs, longest first;
# the model's vocabulary (512) is larger than the tokenizer (as 51200 > 50295).
N_BPE = 496
EOT = "<|endoftext|>"
WHITESPACE_TOKENS = ["    ", "   ", "  ", "\t\t\t", "\t\t"]

# A few kB of plain English written for this script (with the moondream1 prompt format,
# so "<image>", "</image>", "Question", "Answer" and "END" get merged tokens).
TOKENIZER_TEXT = """\
<image>

Question: What is in this picture?

Answer: A person in a white suit is standing in front of a flag.<END>
<image>

Question: Describe this image.

Answer: The image shows a cat with orange and black fur lying on a table.<END>
<image>

Question: What color is the cup?

Answer: The cup is white, and it sits on a blue saucer.<END>
<image>

Question: Where is the rocket?

Answer: The rocket stands on a launch pad next to a tall tower.<END>
</image> </image> <image> <END> <END> END END
The morning was cold and clear, and the light came in low over the hills. A woman in a
red coat walked her dog along the river, stopping now and then to look at the boats that
were tied up near the old stone bridge. On the far bank a man was painting a picture of
the water, the trees and the houses with their white walls and grey roofs.
In the small cafe on the corner, people sat at wooden tables with cups of coffee and tea.
A waiter carried a tray with two cups, a plate of bread and a bowl of fruit. There was a
cat asleep on a chair by the window, and a child was drawing a picture of the cat on a
piece of paper with a green pencil. Outside, a bus stopped at the station and a group of
students got off, laughing and talking about the game they had watched the night before.
What can you tell me about this picture? It shows a person standing in front of a large
building, wearing a white suit and holding a helmet. Behind the person there is a flag, and
the sky is dark. What is the girl doing? The girl is eating a sandwich. What color is the
train? The train is red. Is he indoors or outdoors? He is outdoors, in front of a house.
Many people like to take photographs of animals, of cities at night, of mountains and of
the sea. A good photograph has a clear subject, good light and a simple background. When
you look at a picture, you can ask many questions: who is in it, where was it taken, what
time of day it was, what the weather was like, and what the people in it are doing.
The train left the city at noon and moved slowly through the fields. Farmers were working
in the sun, and cows stood together under a large tree. A boy on the train counted the
bridges and the tunnels, and his sister read a book about birds. When the train reached
the coast, they could see the ocean, bright and blue, with small white waves and a ship
far away on the horizon. They walked down to the beach and found shells and smooth stones.
In the evening the family cooked dinner together. The father cut vegetables, the mother
made a soup with onions, carrots and potatoes, and the children set the table with plates,
glasses, forks and knives. After dinner they played a game of cards and talked about the
day. The old clock on the wall rang nine times, and it was time for the children to sleep.
"""

# Hand-written generate() outputs fed to the official answer_question post-processing (the
# random model never emits "<", "END" or ">" within 256 tokens, so no real answer stops).
CLEANUP_CASES = [
    "A red cup.<",
    "A red cup.<END",
    "A red cup.END",
    "A red cup.<END>",
    "A red cup.>",
    "  A red cup. <",
    " A red cup. END",
    "A red cup.<<",
    "END",
    "<",
    "\tA red cup.\n<",
    "A red cup.\x1f<",
]

# Strings whose tokenization is recorded (encode without special tokens, then decode).
TOKENIZATION_CASES = [
    "<END>",
    "<image>",
    "</image>\n\nQuestion: What is in this picture?\n\nAnswer: ",
    "A  cup\t\tof    tea\t\t\tand   milk.",
    "It is red . Is it ? Yes , it's red !",
    EOT + "Question:",
]


# ----------------------------------------------------------------------------- imports


def import_official(upstream: Path) -> types.SimpleNamespace:
    """Import the official package exported (unchanged) from the upstream commit."""
    # torchvision 0.28.0 from PyPI is a CUDA build whose C extension cannot load against the
    # CPU torch 2.13.0; its _meta_registrations module (fake kernels for nms / roi_align)
    # then fails at import. Only pure-python PIL / tensor transforms are used here.
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations")
    sys.path.insert(0, str(upstream))
    import moondream  # noqa: F401  (moondream/__init__.py: detect_device, Moondream)
    import moondream.moondream as moondream_mod
    from moondream import configuration_moondream, modeling_phi, vision_encoder

    for m in (configuration_moondream, modeling_phi, moondream_mod, vision_encoder):
        assert Path(m.__file__).resolve().is_relative_to(upstream.resolve()), m.__file__
    return types.SimpleNamespace(
        cfg=configuration_moondream, phi=modeling_phi, md=moondream_mod, ve=vision_encoder)


def apply_tiny_vision_patches(up) -> None:
    """The official vision encoder hard-codes its size; shrink it (names and code paths kept).

    1. ``vision_encoder.timm``: the module's reference to timm is replaced by a shim whose
       ``create_model(name)`` asserts the official name and calls the real
       ``timm.create_model(name, embed_dim=32, depth=2, num_heads=2)`` (every other timm
       argument of that model unchanged).
    2. ``vision_encoder.LinearPatchEmbedding``: a subclass whose ``__init__`` sizes the
       Linear(588, width) from the conv it replaces (the official one hard-codes 1152);
       ``forward`` is the official one.
    3. ``vision_encoder.VisionProjection``: a subclass whose ``__init__`` uses the tiny widths
       (vision width -> 4 * text width -> text width; the official one hard-codes 1152, 8192,
       2048); the official ``MLP`` class, ``forward`` and ``device`` are kept.
    """
    import timm as real_timm

    ve = up.ve
    official_name = "vit_so400m_patch14_siglip_384"

    def create_model(name, *args, **kwargs):
        assert name == official_name and not args and not kwargs, (name, args, kwargs)
        return real_timm.create_model(name, **TINY_VISION_TIMM)

    ve.timm = types.SimpleNamespace(create_model=create_model)

    class TinyLinearPatchEmbedding(ve.LinearPatchEmbedding):
        def __init__(self, conv):
            torch.nn.Module.__init__(self)
            width = conv.weight.shape[0]
            self.linear = torch.nn.Linear(conv.weight[0].numel(), width)
            self.linear.weight.data = conv.weight.data.view(width, -1)
            if conv.bias is not None:
                self.linear.bias.data = conv.bias.data

    class TinyVisionProjection(ve.VisionProjection):
        def __init__(self):
            torch.nn.Module.__init__(self)
            image_embedding_dim = TINY_VISION_TIMM["embed_dim"]
            model_dim = TINY_PHI["n_embd"]
            hidden_dim = model_dim * 4
            self.mlp = ve.MLP(image_embedding_dim, hidden_dim, model_dim)

    ve.LinearPatchEmbedding = TinyLinearPatchEmbedding
    ve.VisionProjection = TinyVisionProjection


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(ckpt_dir: Path, up):
    """Train the tiny BPE, wrap it as CodeGenTokenizerFast and save it into the checkpoint."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import CodeGenTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=N_BPE,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TOKENIZER_TEXT.splitlines(keepends=True), trainer=trainer)
    assert tok.get_vocab_size() == N_BPE, tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    tok.add_tokens([AddedToken(s, special=False, normalized=True) for s in WHITESPACE_TOKENS])
    fast = CodeGenTokenizerFast(
        tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT,
        add_prefix_space=False, model_max_length=2048,
    )
    fast.save_pretrained(str(ckpt_dir))
    # what the official sample.py / gradio_demo.py / model card do
    tokenizer = CodeGenTokenizerFast.from_pretrained(str(ckpt_dir))
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == N_BPE
    assert len(tokenizer) == N_BPE + 1 + len(WHITESPACE_TOKENS)
    end = tokenizer("<END>", add_special_tokens=False)[0]
    assert end.tokens == ["<", "END", ">"], end.tokens  # as in the real one: [27, 10619, 29]
    return tokenizer


# ------------------------------------------------------------------------------- model


def tiny_config(up):
    return up.cfg.MoondreamConfig(phi_config=up.cfg.PhiConfig(**TINY_PHI))


def init_parameters(model: torch.nn.Module) -> None:
    """Every parameter explicitly, in named_parameters() order, from one seed.

    nn.Linear weights:            normal, std 1/sqrt(fan_in)   (lm_head.linear: 3/sqrt(fan_in))
    nn.Linear biases:             normal, std 0.02
    nn.LayerNorm weights:         1 + 0.1 * normal
    nn.LayerNorm biases:          normal, std 0.02
    text embedding (wte):         normal, std 1.0
    vision pos_embed:             normal, std 0.5
    """
    torch.manual_seed(SEED)
    linear_w, linear_b, ln_w, ln_b = set(), set(), set(), set()
    for mname, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            linear_w.add(f"{mname}.weight")
            linear_b.add(f"{mname}.bias")
        elif isinstance(module, torch.nn.LayerNorm):
            ln_w.add(f"{mname}.weight")
            ln_b.add(f"{mname}.bias")
    seen = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            seen += 1
            if name == "text_model.transformer.embd.wte.weight":
                p.normal_(0.0, 1.0)
            elif name == "vision_encoder.encoder.model.visual.pos_embed":
                p.normal_(0.0, 0.5)
            elif name == "text_model.lm_head.linear.weight":
                p.normal_(0.0, 3.0 / math.sqrt(p.shape[1]))
            elif name in linear_w:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            elif name in ln_w:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, dtype=p.dtype))
            elif name in linear_b or name in ln_b:
                p.normal_(0.0, 0.02)
            else:
                raise AssertionError(f"no init rule for {name}")
    assert seen == len(model.state_dict()), "every state_dict entry is a parameter"


def vision_config_json(model) -> dict:
    """The tiny vision sizes, added to config.json (the official code reads none of them)."""
    visual = model.vision_encoder.encoder.model.visual
    blk = visual.blocks[0]
    return {
        "timm_model": "vit_so400m_patch14_siglip_384",
        "image_size": 378,
        "patch_size": 14,
        "num_patches": int(visual.pos_embed.shape[1]),
        "embed_dim": int(visual.pos_embed.shape[2]),
        "depth": len(visual.blocks),
        "num_heads": int(blk.attn.num_heads),
        "mlp_hidden": int(blk.mlp.fc1.out_features),
        "layer_norm_eps": float(blk.norm1.eps),
        "projection_hidden": int(model.vision_encoder.projection.mlp.fc1.out_features),
        "projection_out": int(model.vision_encoder.projection.mlp.fc2.out_features),
    }


def write_checkpoint(up, ckpt_dir: Path) -> dict:
    """Build, initialise and save the tiny model with the official save path."""
    model = up.md.Moondream(tiny_config(up))
    init_parameters(model)
    model.save_pretrained(str(ckpt_dir), safe_serialization=True)
    os.chmod(ckpt_dir / "model.safetensors", 0o644)
    cfg_path = ckpt_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    # additions (see README): the auto_map a trust_remote_code checkpoint carries, and the
    # tiny vision sizes, which the official code hard-codes and a port has to be told.
    cfg["auto_map"] = {
        "AutoConfig": "configuration_moondream.MoondreamConfig",
        "AutoModelForCausalLM": "moondream.Moondream",
    }
    cfg["vision_config"] = vision_config_json(model)
    cfg_path.write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_checkpoint(up, ckpt_dir: Path, expected: dict):
    """A fresh model through the official loader (Moondream.from_pretrained), checked."""
    model, info = up.md.Moondream.from_pretrained(str(ckpt_dir), output_loading_info=True)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info[key], (key, info[key])
    sd = model.state_dict()
    assert set(sd) == set(expected)
    for k, v in expected.items():
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], v), k
    assert not torch.equal(sd["text_model.lm_head.linear.weight"],
                           sd["text_model.transformer.embd.wte.weight"])  # untied
    model.eval()
    return model


# ------------------------------------------------------------------------- recording


class Recorder:
    """Records, without changing anything, what the official code computes.

    - a forward hook on the text embedding (nn.Embedding): every token id embedded (the BOS,
      the two prompt pieces, then one id per decode step);
    - forward pre-hook / hook on the PhiForCausalLM: per generate() step, what it was given
      (inputs_embeds length or input_ids, past_key_values.seqlen_offset, attention_mask
      length) and the logits at the last position;
    - the PhiForCausalLM's generate(): the returned ids;
    - a forward pre-hook / hook on vision_encoder.encoder: the patchified pixels it receives
      and the vision tower output before the projection.
    """

    def __init__(self, model):
        self.active = False
        self.calls = []
        tm = model.text_model
        wte = tm.get_input_embeddings()

        def on_embed(module, args, out):
            if self.active:
                self.calls.append(("embed", args[0].detach().cpu().tolist()))

        def on_text_pre(module, args, kwargs):
            if self.active:
                pkv = kwargs.get("past_key_values")
                ids = kwargs.get("input_ids")
                emb = kwargs.get("inputs_embeds")
                am = kwargs.get("attention_mask")
                self.calls.append(("step_in", {
                    "input_ids": None if ids is None else ids.detach().cpu().tolist(),
                    "inputs_embeds_len": None if emb is None else int(emb.shape[1]),
                    "seqlen_offset": None if pkv is None else int(pkv.seqlen_offset),
                    "attention_mask_len": None if am is None else int(am.shape[1]),
                }))

        def on_text(module, args, kwargs, out):
            if self.active:
                self.calls.append(("step_logits", out.logits[0, -1].detach().clone()))

        def on_vis_pre(module, args):
            if self.active:
                self.calls.append(("vision_in", args[0].detach().clone()))

        def on_vis(module, args, out):
            if self.active:
                self.calls.append(("vision_out", out.detach().clone()))

        wte.register_forward_hook(on_embed)
        tm.register_forward_pre_hook(on_text_pre, with_kwargs=True)
        tm.register_forward_hook(on_text, with_kwargs=True)
        model.vision_encoder.encoder.register_forward_pre_hook(on_vis_pre)
        model.vision_encoder.encoder.register_forward_hook(on_vis)

        orig_generate = tm.generate

        def generate(*args, **kwargs):
            out = orig_generate(*args, **kwargs)
            if self.active:
                self.calls.append(("generate_out", out.detach().cpu().tolist(), kwargs))
            return out

        tm.generate = generate

    def run(self, fn, *args, **kwargs):
        self.calls = []
        self.active = True
        try:
            result = fn(*args, **kwargs)
        finally:
            self.active = False
        calls, self.calls = self.calls, []
        return result, calls


def margin(logits: torch.Tensor) -> float:
    """Top-1 minus top-2 logit (diagnostic: how far a greedy choice is from a tie)."""
    top = torch.topk(logits.reshape(-1).double(), 2).values
    return float(top[0] - top[1])


def generation_record(calls, tokenizer, n_image: int) -> tuple[dict, dict, torch.Tensor]:
    """Prompt pieces, generated ids, per-step positions and logits of one generate() call."""
    embeds = [c[1] for c in calls if c[0] == "embed"]
    steps_in = [c[1] for c in calls if c[0] == "step_in"]
    logits = [c[1] for c in calls if c[0] == "step_logits"]
    gen_out = [c for c in calls if c[0] == "generate_out"]
    assert len(gen_out) == 1
    _, out_ids, gen_kwargs = gen_out[0]
    # transformers 4.36 starts generate(inputs_embeds=...) from input_ids = [[bos]], so the
    # returned row is [bos, generated...] (the bos is dropped again by skip_special_tokens)
    assert out_ids[0][0] == tokenizer.bos_token_id, out_ids[0][:3]
    ids = out_ids[0][1:]
    # input_embeds(): [[bos]], tokenize(f"{before}<image>"), tokenize(f"</image>{after}")
    bos, before, after = embeds[0], embeds[1], embeds[2]
    assert bos == [[tokenizer.bos_token_id]] and len(before) == 1 and len(after) == 1
    prompt_len = 1 + len(before[0]) + n_image + len(after[0])
    # decode steps embed exactly the previously generated token
    for k, e in enumerate(embeds[3:]):
        assert e == [[ids[k]]], (k, e, ids[k])
    assert len(steps_in) == len(logits) == len(ids)
    assert steps_in[0]["inputs_embeds_len"] == prompt_len
    assert steps_in[0]["seqlen_offset"] == 0
    for k, lg in enumerate(logits):
        assert int(torch.argmax(lg)) == ids[k], k  # plain greedy on the raw logits
    eos = gen_kwargs["eos_token_id"]
    stopped = "eos" if ids and ids[-1] in eos else "max_new_tokens"
    if stopped == "max_new_tokens":
        assert len(ids) == gen_kwargs["max_new_tokens"]
    rec = {
        "prompt": {
            "bos": bos[0],
            "before_image": before[0],
            "image_positions": [1 + len(before[0]), 1 + len(before[0]) + n_image],
            "after_image": after[0],
            "length": prompt_len,
        },
        "eos_token_id": eos,
        "max_new_tokens": gen_kwargs["max_new_tokens"],
        "generate_output": out_ids[0],
        "ids": ids,
        "stopped_by": stopped,
        # past_key_values.seqlen_offset per generate() step: 0 for the prompt, then the
        # position each fed-back token is written to (see README, quirk 7)
        "seqlen_offsets": [s["seqlen_offset"] for s in steps_in],
        "attention_mask_lengths": [s["attention_mask_len"] for s in steps_in],
    }
    margins = [margin(lg) for lg in logits]
    k_min = int(np.argmin(margins))
    diag = {"min_greedy_margin": margins[k_min], "min_margin_step": k_min,
            "min_greedy_margin_first24": min(margins[:MAX_NEW_TOKENS]), "n_steps": len(ids)}
    return rec, diag, logits[0]


def tokenization_table(tokenizer) -> list:
    rows = []
    for s in TOKENIZATION_CASES:
        enc = tokenizer(s, add_special_tokens=False)
        ids = enc.input_ids
        rows.append({
            "text": s,
            "ids": ids,
            "tokens": enc[0].tokens,
            "decode_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
            "decode_no_cleanup": tokenizer.decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=False),
        })
    return rows


def cleanup_table(model, tokenizer) -> list:
    """The official answer_question post-processing on hand-written generate() outputs.

    Only the instance's ``generate`` is replaced (by one returning the given string, as the
    official generate returns ``batch_decode(...)``, a list of one string); answer_question
    itself runs unchanged. The instance attribute is removed afterwards.
    """
    rows = []
    seen = {}

    def fake_generate(image_embeds, prompt, **kwargs):
        seen.update(prompt=prompt, **kwargs)
        return [current]

    try:
        for current in CLEANUP_CASES:
            model.generate = fake_generate
            out = model.answer_question(None, QUESTION, tokenizer)
            assert seen["eos_text"] == "<END>" and seen["max_new_tokens"] == 256
            rows.append({"generated_text": current, "answer": out})
    finally:
        del model.generate
    return rows


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# -------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path,
                    help="folder holding the exported official moondream/ package")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    up = import_official(args.upstream.resolve())
    apply_tiny_vision_patches(up)

    out = args.out
    ckpt_dir = out / "checkpoint"
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(ckpt_dir, up)
    expected = write_checkpoint(up, ckpt_dir)
    model = load_checkpoint(up, ckpt_dir, expected)
    rec = Recorder(model)
    pre = model.vision_encoder.preprocess  # the official Compose
    n_image = 729

    import einops
    import safetensors
    import timm
    import tokenizers
    import torchvision
    import transformers

    ref = {
        "upstream": {"repository": UPSTREAM_REPO, "commit": UPSTREAM_COMMIT},
        "hf_layout": {"repository": HF_REPO, "revision": HF_REVISION},
        "versions": {
            "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "timm": timm.__version__,
            "torchvision": torchvision.__version__, "einops": einops.__version__,
            "safetensors": safetensors.__version__, "numpy": np.__version__,
            "pillow": Image.__version__,
        },
        "dtype": "float32",
        "seed": SEED,
        "question": QUESTION,
        "caption_question": CAPTION_QUESTION,
        "follow_up_question": FOLLOW_UP,
        "tokenizer": {
            "len": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "end_ids": tokenizer("<END>", add_special_tokens=False)[0].ids,
            "added_tokens": {t: i for t, i in sorted(tokenizer.get_added_vocab().items(),
                                                     key=lambda x: x[1])},
            "clean_up_tokenization_spaces": bool(tokenizer.clean_up_tokenization_spaces),
        },
        "tokenization": tokenization_table(tokenizer),
        "answer_cleanup": cleanup_table(model, tokenizer),
        "images": {},
    }

    diagnostics = {}
    for name in IMAGES:
        image = Image.open(IMAGES_DIR / name)
        image.load()
        entry = {"file": f"../moondream2/images/{name}", "width": image.width,
                 "height": image.height}
        diag = diagnostics[name] = {}

        # --- preprocessing (the official Compose, step by step and whole)
        rgb = image.convert("RGB")
        resized = pre.transforms[0](rgb)  # v2.Resize((378, 378), BICUBIC) on the PIL image
        resized_u8 = np.asarray(resized)
        assert resized_u8.shape == (378, 378, 3) and resized_u8.dtype == np.uint8
        pixels = pre(rgb)
        assert pixels.dtype == torch.float32 and tuple(pixels.shape) == (3, 378, 378)
        px = pixels.numpy()
        u8 = torch.from_numpy(resized_u8.copy()).permute(2, 0, 1).to(torch.float32)
        entry["resized_uint8_sha256"] = sha256(resized_u8)
        entry["resized_uint8_sum"] = int(resized_u8.astype(np.int64).sum())
        entry["pixels_shape"] = list(px.shape)
        entry["pixels_sha256"] = sha256(px.astype(np.float32))
        entry["pixels_sum"] = float(px.sum(dtype=np.float64))
        entry["pixels_formula"] = {
            "x*(1/255) then (v-0.5)/0.5": bool(torch.equal(
                u8.mul(1.0 / 255).sub(0.5).div(0.5), pixels)),
            "x/255 then (v-0.5)/0.5": bool(torch.equal(u8.div(255).sub(0.5).div(0.5), pixels)),
        }

        # --- image embeddings (official encode_image)
        embeds, calls = rec.run(model.encode_image, image)
        vin = [c[1] for c in calls if c[0] == "vision_in"]
        vout = [c[1] for c in calls if c[0] == "vision_out"]
        assert len(vin) == len(vout) == 1
        patches = pixels.reshape(3, 27, 14, 27, 14).permute(1, 3, 0, 2, 4).reshape(1, 729, 588)
        assert torch.equal(vin[0], patches), "encoder input = official pixels, patchified"
        feats = embeds[0].numpy()
        assert feats.shape == (n_image, TINY_PHI["n_embd"]) and feats.dtype == np.float32
        tower = vout[0][0].numpy()
        entry["vision_tower_shape"] = list(tower.shape)
        entry["vision_tower_sum"] = float(tower.sum(dtype=np.float64))
        entry["vision_tower_abs_sum"] = float(np.abs(tower).sum(dtype=np.float64))
        entry["features_shape"] = list(feats.shape)
        entry["features_sum"] = float(feats.sum(dtype=np.float64))
        entry["features_abs_sum"] = float(np.abs(feats).sum(dtype=np.float64))
        if name in FEATURE_FILES:
            stem = name.rsplit(".", 1)[0]
            np.save(out / f"features-{stem}.npy", feats.astype(np.float32))
            entry["features_file"] = f"features-{stem}.npy"

        # --- question and caption through the official answer_question (max 256, <END> stops)
        for key, question in (("answer", QUESTION), ("caption", CAPTION_QUESTION)):
            text, calls = rec.run(model.answer_question, embeds, question, tokenizer)
            r, d, first = generation_record(calls, tokenizer, n_image)
            r["question"] = question
            r["decoded"] = tokenizer.batch_decode([r["generate_output"]], skip_special_tokens=True)[0]
            r["text"] = text
            entry[key] = r
            diag[key] = d
            # float32 values written as exact decimals (float32 -> float64 -> repr)
            entry[f"{key}_first_logits"] = [float(v) for v in first.float().numpy()]

        # --- 24 greedy tokens without the <END> stops: the official generate() with the
        #     answer_question prompt, eos_text "<|endoftext|>", max_new_tokens 24
        prompt = f"<image>\n\nQuestion: {QUESTION}\n\nAnswer: "
        decoded, calls = rec.run(
            model.generate, embeds, prompt, tokenizer=tokenizer, eos_text=EOT,
            max_new_tokens=MAX_NEW_TOKENS)
        r, d, first = generation_record(calls, tokenizer, n_image)
        assert torch.equal(first, torch.tensor(entry["answer_first_logits"]))
        r["decoded"] = decoded[0]
        entry["greedy24"] = r
        diag["greedy24"] = d

        # --- a stop: the official generate() again, eos_text = the text of the first greedy
        #     token (from the 3rd on) that re-encodes to itself alone; generation must stop
        #     there, the stop token included in the output
        if name == CHAT_IMAGE:
            g = entry["greedy24"]["ids"]
            k = next(k for k in range(2, len(g))
                     if tokenizer(tokenizer.decode([g[k]]), add_special_tokens=False)
                     .input_ids == [g[k]] and g[k] not in g[:k])
            stop_text = tokenizer.decode([g[k]])
            decoded, calls = rec.run(
                model.generate, embeds, prompt, tokenizer=tokenizer, eos_text=stop_text,
                max_new_tokens=MAX_NEW_TOKENS)
            r, d, _ = generation_record(calls, tokenizer, n_image)
            assert r["stopped_by"] == "eos" and r["ids"] == g[:k + 1], (r["ids"], g)
            r["eos_text"] = stop_text
            r["decoded"] = decoded[0]
            entry["stop"] = r
            diag["stop"] = d

        # --- a second round (sample.py's chat_history format)
        if name == CHAT_IMAGE:
            history = f"Question: {QUESTION}\n\nAnswer: {entry['answer']['text']}\n\n"
            text, calls = rec.run(
                model.answer_question, embeds, FOLLOW_UP, tokenizer, chat_history=history)
            r, d, _ = generation_record(calls, tokenizer, n_image)
            r["question"] = FOLLOW_UP
            r["chat_history"] = history
            r["decoded"] = tokenizer.batch_decode([r["generate_output"]], skip_special_tokens=True)[0]
            r["text"] = text
            entry["chat"] = r
            diag["chat"] = d

        ref["images"][name] = entry
        print(name, entry["answer"]["stopped_by"], len(entry["answer"]["ids"]),
              repr(entry["answer"]["text"][:40]), entry["greedy24"]["ids"][:6], flush=True)

    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    (out / "diagnostics.json").write_text(json.dumps(diagnostics, indent=1) + "\n")


if __name__ == "__main__":
    main()
