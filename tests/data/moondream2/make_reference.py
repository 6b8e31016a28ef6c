"""Make the moondream2 reference test data from the official implementation.

This is vlmzoo's own driver script. It contains no upstream code: it imports the
official package (vikhyat/moondream, commit 44146f1, exported to a scratch folder
outside the repository) and runs it on a tiny random configuration.

    python make_reference.py --upstream /work/scratch/moondream-ref --out tests/data/moondream2

--upstream is the folder holding the exported ``moondream/`` package (with
``moondream/torch/*.py``). See README.md beside this file for the environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

UPSTREAM_REPO = "vikhyat/moondream"
UPSTREAM_COMMIT = "44146f139242dacdf7c02b799e68097424a31036"
HF_REPO = "vikhyatk/moondream2"
HF_REVISION = "2025-06-21"
SEED = 0

QUESTION = "What is in this picture?"
OBJECT = "cup"
TEXT_SETTINGS = {"temperature": 0, "max_tokens": 24}
OBJECT_SETTINGS = {"max_objects": 5}
# At this commit encode_image() reads settings["variant"] unconditionally (a KeyError when a
# settings dict lacks it), so every settings dict passed in also carries "variant": None,
# which the official code maps to "no LoRA" everywhere.
NO_VARIANT = {"variant": None}

TINY_CONFIG = {
    "text": {
        "dim": 128,
        "ff_dim": 256,
        "n_layers": 2,
        "vocab_size": 512,
        "max_context": 2048,
        "n_heads": 2,
        "n_kv_heads": 2,
        "prefix_attn": 730,
    },
    "vision": {
        "enc_dim": 32,
        "enc_patch_size": 14,
        "enc_n_layers": 27,
        "enc_ff_dim": 64,
        "enc_n_heads": 2,
        "proj_out_dim": 128,
        "crop_size": 378,
        "in_channels": 3,
        "max_crops": 12,
        "overlap_margin": 4,
        "proj_inner_dim": 64,
    },
    "region": {
        "dim": 128,
        "coord_feat_dim": 16,
        "coord_out_dim": 1024,
        "size_feat_dim": 16,
        "size_out_dim": 2048,
        "inner_dim": 64,
    },
    "tokenizer": {
        "bos_id": 0,
        "eos_id": 0,
        "answer_id": 3,
        "thinking_id": 4,
        "coord_id": 5,
        "size_id": 6,
        "start_ground_points_id": 7,
        "end_ground_id": 9,
        "templates": {
            "caption": {
                "short": [1, 300, 2, 301, 3],
                "normal": [1, 300, 2, 302, 3],
                "long": [1, 300, 2, 303, 3],
            },
            "query": {"prefix": [1, 304, 2], "suffix": [3]},
            "detect": {"prefix": [1, 305, 306, 2], "suffix": [3]},
            "point": {"prefix": [1, 307, 2], "suffix": [3]},
        },
    },
}

# Ten special tokens at ids 0..9; "<|endoftext|>" is bos/eos (id 0), the rest are
# placeholders for the ids the official config gives meanings to (3 answer, 4 thinking,
# 5 coord, 6 size, 7 start ground points, 9 end ground).
SPECIAL_TOKENS = ["<|endoftext|>"] + [f"<|special_{i}|>" for i in range(1, 10)]

# A few kB of ordinary English text (written for this script) to train the tiny BPE.
TOKENIZER_TEXT = """\
The morning was cold and clear, and the light came in low over the hills. A woman in a
red coat walked her dog along the river, stopping now and then to look at the boats that
were tied up near the old stone bridge. On the far bank a man was painting a picture of
the water, the trees and the houses with their white walls and grey roofs.
In the small cafe on the corner, people sat at wooden tables with cups of coffee and tea.
A waiter carried a tray with two cups, a plate of bread and a bowl of fruit. There was a
cat asleep on a chair by the window, and a child was drawing a picture of the cat on a
piece of paper with a green pencil. Outside, a bus stopped at the station and a group of
students got off, laughing and talking about the game they had watched the night before.
What is in this picture? The picture shows a person standing in front of a large building.
The person is wearing a white suit and holding a helmet. Behind the person there is a flag,
and the sky is dark. In another picture there is a rocket on a launch pad, with a tall
tower next to it and clouds of smoke at the bottom. A third picture shows a cup of coffee
on a saucer, with a spoon beside it, on a table covered with a blue cloth.
Describe the image in a few words. A cat with orange and black fur is lying on a table and
looking at the camera. Its eyes are green and its ears are pointed. The background is dark
and out of focus. The cat seems calm, and the light falls softly on its face and whiskers.
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
Point to the cup. Detect every cup in the image. There are two cups on the table: one is
white and one is red. The white cup is full of milk and the red cup is empty. A small
plant in a brown pot stands between them, and a newspaper lies folded on the other side.
The city library opens at nine in the morning and closes at eight in the evening. It has
thousands of books, a quiet room for reading, and computers that anyone can use. On
Saturdays there is a story hour for young children, and on Sundays the library is closed.
"""


# ----------------------------------------------------------------------------- imports


def import_official(upstream: Path):
    """Import the official package exported (unchanged) from the upstream commit."""
    sys.path.insert(0, str(upstream))
    import moondream.torch.config as config_mod
    import moondream.torch.image_crops as image_crops
    import moondream.torch.moondream as md
    import moondream.torch.vision as vision

    assert not image_crops.HAS_VIPS, "pyvips must not be installed (PIL LANCZOS path)"
    return config_mod, image_crops, md, vision


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(path: Path):
    """A byte-level BPE with 512 ids, ids 0..9 special, trained on TOKENIZER_TEXT."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TOKENIZER_TEXT.splitlines(keepends=True), trainer=trainer)
    assert tok.get_vocab_size() == 512, tok.get_vocab_size()
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i
    tok.save(str(path))
    return Tokenizer.from_file(str(path))


# ----------------------------------------------------------------------------- patches


def apply_patches(md, vision, image_crops, tokenizer_path: Path):
    """Monkeypatch names in the official modules (the files themselves stay unchanged).

    1. md.Tokenizer: the official __init__ calls Tokenizer.from_pretrained("moondream/starmie-v1"),
       a hub download. Replaced by a shim whose from_pretrained loads our tiny tokenizer.json.
    2. md.prepare_crops (and vision.prepare_crops): the official one casts the crops to
       torch.bfloat16. Replaced by the same steps in float32.
    """
    from tokenizers import Tokenizer

    class OfflineTokenizer:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            assert name == "moondream/starmie-v1", name
            return Tokenizer.from_file(str(tokenizer_path))

    md.Tokenizer = OfflineTokenizer

    def prepare_crops_float32(image, config, device):
        np_image = np.array(image.convert("RGB"))
        out = image_crops.overlap_crop_image(
            np_image, max_crops=config.max_crops, overlap_margin=config.overlap_margin
        )
        crops = np.transpose(out["crops"], (0, 3, 1, 2))
        crops = (
            torch.from_numpy(crops)
            .to(device=device, dtype=torch.float32)
            .div_(255.0)
            .sub_(0.5)
            .div_(0.5)
        )
        return crops, out["tiling"]

    md.prepare_crops = prepare_crops_float32
    vision.prepare_crops = prepare_crops_float32


# ------------------------------------------------------------------------------- model


def init_parameters(model: torch.nn.Module) -> None:
    """Every parameter explicitly, in named_parameters() order, from one seed.

    nn.Linear weights:            normal, std 1/sqrt(fan_in)
    nn.Linear biases:             normal, std 0.02
    nn.LayerNorm weights:         1 + 0.1 * normal
    nn.LayerNorm biases:          normal, std 0.02
    text.wte:                     normal, std 1.0
    vision.pos_emb:               normal, std 0.5
    region.coord_features/size_features: normal, std 1.0

    (std 0.02 everywhere gave near-uniform attention and top-1/top-2 logit margins down to
    1e-5, so greedy tokens would flip on float noise and the image barely mattered; this
    scheme keeps activations near unit scale: margins >= ~5e-3, image-dependent outputs.)
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
            if name in ("region.coord_features", "region.size_features"):
                p.normal_(0.0, 1.0)
            elif name == "text.wte":
                p.normal_(0.0, 1.0)
            elif name == "vision.pos_emb":
                p.normal_(0.0, 0.5)
            elif name in linear_w:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            elif name in ln_w:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, dtype=p.dtype))
            elif name in linear_b or name in ln_b:
                p.normal_(0.0, 0.02)
            else:
                raise AssertionError(f"no init rule for {name}")
    assert seen == len(model.state_dict()), "every state_dict entry is a parameter"


def build_model(md, config_mod, dtype=torch.float32):
    config = config_mod.MoondreamConfig.from_dict(TINY_CONFIG)
    return md.MoondreamModel(config, dtype=dtype, setup_caches=False)


def write_checkpoint(md, config_mod, ckpt_dir: Path) -> None:
    from safetensors.torch import save_file

    model = build_model(md, config_mod)
    init_parameters(model)
    sd = model.state_dict()  # persistent tensors only: no attn_mask, freqs_cis, kv caches
    tensors = {"model." + k: v.detach().contiguous().clone() for k, v in sd.items()}
    for k, v in tensors.items():
        assert v.dtype == torch.float32, k
    save_file(tensors, str(ckpt_dir / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(ckpt_dir / "model.safetensors", 0o644)
    hf_config = {
        "architectures": ["HfMoondream"],
        "auto_map": {
            "AutoConfig": "hf_moondream.HfConfig",
            "AutoModelForCausalLM": "hf_moondream.HfMoondream",
        },
        "model_type": "moondream1",
        "config": TINY_CONFIG,
        "torch_dtype": "float32",
    }
    (ckpt_dir / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")


def load_checkpoint(md, config_mod, ckpt_dir: Path):
    """Fresh model, weights read back from the written checkpoint (strict)."""
    from safetensors.torch import load_file

    cfg = json.loads((ckpt_dir / "config.json").read_text())["config"]
    assert cfg == TINY_CONFIG
    model = build_model(md, config_mod)
    tensors = load_file(str(ckpt_dir / "model.safetensors"))
    sd = {k[len("model."):]: v for k, v in tensors.items()}
    model.load_state_dict(sd, strict=True)
    model.eval()
    model._setup_caches()  # what HfMoondream does lazily before the first call
    return model


# ------------------------------------------------------------------------------ images


def make_images(img_dir: Path) -> dict[str, Path]:
    import skimage.data

    lanczos = Image.Resampling.LANCZOS
    astronaut = Image.fromarray(skimage.data.astronaut())
    chelsea = Image.fromarray(skimage.data.chelsea())
    images = {
        "astronaut": astronaut,  # 512x512
        "chelsea": chelsea,  # 451x300
        "coffee": Image.fromarray(skimage.data.coffee()),  # 600x400
        "rocket": Image.fromarray(skimage.data.rocket()),  # 640x427
        # A wide panorama: astronaut squeezed to 1100x240 (LANCZOS). Its height minus the
        # two margins (240 - 112) fits one crop window (266), so its tiling is (1, 1).
        "panorama": astronaut.resize((1100, 240), resample=lanczos),
        "small": chelsea.resize((120, 90), resample=lanczos),
    }
    paths = {}
    for name, im in images.items():
        p = img_dir / f"{name}.png"
        im.convert("RGB").save(p, format="PNG", optimize=True)
        paths[name] = p
    return paths


def load_image(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im


# ------------------------------------------------------------------------- recording


class Recorder:
    """Records, without changing anything, what the official code computes.

    - md.text_encoder: the token ids embedded (bos, the prompt, then each generated token);
    - model._prefill_prompt: the logits of the token after the prompt;
    - model._decode_one_tok: each decode step's logits (kept by reference, so the official
      in-place -inf masking applied after the call is seen too);
    - md.decode_coordinate / md.decode_size: the bin logits behind each point and box.
    """

    def __init__(self, md, model):
        self.active = False
        self.calls = []
        orig_te = md.text_encoder
        orig_dc = md.decode_coordinate
        orig_ds = md.decode_size
        orig_pp = model._prefill_prompt
        orig_dt = model._decode_one_tok

        def text_encoder(input_ids, w):
            if self.active:
                self.calls.append(("embed", input_ids.detach().cpu().tolist()))
            return orig_te(input_ids, w)

        def decode_coordinate(hidden, w):
            out = orig_dc(hidden, w)
            if self.active:
                self.calls.append(("coord", out))
            return out

        def decode_size(hidden, w):
            out = orig_ds(hidden, w)
            if self.active:
                self.calls.append(("size", out))
            return out

        def prefill_prompt(*args, **kwargs):
            out = orig_pp(*args, **kwargs)
            if self.active:
                self.calls.append(("prefill_logits", out[0].detach().clone()))
            return out

        def decode_one_tok(*args, **kwargs):
            out = orig_dt(*args, **kwargs)
            if self.active:
                self.calls.append(("step_logits", out[0]))  # by reference
            return out

        md.text_encoder = text_encoder
        md.decode_coordinate = decode_coordinate
        md.decode_size = decode_size
        model._prefill_prompt = prefill_prompt
        model._decode_one_tok = decode_one_tok

    def run(self, fn):
        self.calls = []
        self.active = True
        try:
            result = fn()
        finally:
            self.active = False
        calls, self.calls = self.calls, []
        return result, calls


def margin(logits: torch.Tensor) -> float:
    """Top-1 minus top-2 logit (diagnostic: how far a greedy choice is from a tie).

    Written to diagnostics.json, not reference.json: decode-step logits move by ~1e-6
    with the CPU thread count, so these last digits are machine-dependent.
    """
    top = torch.topk(logits.reshape(-1).double(), 2).values
    return float(top[0] - top[1])


def text_record(result_text: str, calls, prompt_expected=None) -> dict:
    embeds = [c[1] for c in calls if c[0] == "embed"]
    # encode_image embeds the bos token; _prefill_prompt embeds the prompt; then every
    # generated token is embedded once by the decode loop.
    assert embeds[0] == [[0]], embeds[0]
    prompt = embeds[1][0]
    gen = [e[0][0] for e in embeds[2:]]
    assert all(len(e) == 1 and len(e[0]) == 1 for e in embeds[2:])
    if prompt_expected is not None:
        assert prompt == prompt_expected, (prompt, prompt_expected)
    prefill = [c[1] for c in calls if c[0] == "prefill_logits"]
    steps = [c[1] for c in calls if c[0] == "step_logits"]
    assert len(prefill) == 1 and len(steps) == len(gen)
    first = prefill[0].reshape(-1)
    assert (gen[0] if gen else 0) == int(torch.argmax(first))
    # the logits each greedy choice was taken from (the decode loop's are masked in place)
    choice_logits = [first] + [s.reshape(-1) for s in steps]
    margins = [margin(l) for l in choice_logits]
    stopped = "eos" if len(gen) < TEXT_SETTINGS["max_tokens"] else "max_tokens"
    record = {"prompt_ids": prompt, "ids": gen, "text": result_text, "stopped_by": stopped}
    return record, {"min_greedy_margin": min(margins)}, first


def object_record(result, calls, key: str) -> dict:
    embeds = [c[1] for c in calls if c[0] == "embed"]
    assert embeds[0] == [[0]]
    prompt = embeds[1][0]
    coord_m = [margin(c[1]) for c in calls if c[0] == "coord"]
    size_m = [min(margin(c[1][0]), margin(c[1][1])) for c in calls if c[0] == "size"]
    prefill = [c[1] for c in calls if c[0] == "prefill_logits"]
    steps = [c[1] for c in calls if c[0] == "step_logits"]
    # the eos decision is taken after the prompt and after each completed object
    per_obj = 3 if key == "objects" else 2
    eos_logits = [prefill[0]] + steps[per_obj - 1 :: per_obj]
    eos_margins = [margin(l) for l in eos_logits]
    record = {"prompt_ids": prompt, key: result[key]}
    diag = {
        "min_coord_margin": min(coord_m) if coord_m else None,
        "min_size_margin": min(size_m) if size_m else None,
        "min_next_token_margin": min(eos_margins),
    }
    return record, diag


# -------------------------------------------------------------------------------- main


def tiling_table(image_crops) -> list:
    sizes = [
        (90, 120), (240, 1100), (300, 451), (322, 322), (323, 323), (330, 900),
        (400, 600), (427, 640), (512, 512), (640, 427), (300, 1400), (340, 1400),
        (400, 2000), (378, 378), (1000, 1000), (2000, 400), (760, 760), (1200, 300),
        (700, 3000), (2048, 2048), (400, 1400), (1400, 400), (379, 379), (500, 1000),
    ]
    rows = []
    for h, w in sizes:
        out = image_crops.overlap_crop_image(
            np.zeros((h, w, 3), dtype=np.uint8), overlap_margin=4, max_crops=12
        )
        rows.append({"height": h, "width": w, "tiling": list(out["tiling"]),
                     "n_crops": int(out["crops"].shape[0])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path,
                    help="folder holding the exported official moondream/ package")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()

    config_mod, image_crops, md, vision = import_official(args.upstream)

    out = args.out
    ckpt_dir = out / "checkpoint"
    img_dir = out / "images"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(ckpt_dir / "tokenizer.json")
    apply_patches(md, vision, image_crops, ckpt_dir / "tokenizer.json")
    write_checkpoint(md, config_mod, ckpt_dir)
    model = load_checkpoint(md, config_mod, ckpt_dir)
    rec = Recorder(md, model)
    tcfg = TINY_CONFIG["tokenizer"]["templates"]

    q_ids = tokenizer.encode(QUESTION).ids
    obj_ids = tokenizer.encode(" " + OBJECT).ids
    ref = {
        "upstream": {"repository": UPSTREAM_REPO, "commit": UPSTREAM_COMMIT},
        "hf_layout": {"repository": HF_REPO, "revision": HF_REVISION},
        "versions": {
            "torch": torch.__version__, "numpy": np.__version__,
            "pillow": Image.__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "safetensors": __import__("safetensors").__version__,
            "scikit-image": __import__("skimage").__version__,
        },
        "dtype": "float32",
        "seed": SEED,
        "question": QUESTION,
        "object": OBJECT,
        "temperature": TEXT_SETTINGS["temperature"],
        "max_tokens": TEXT_SETTINGS["max_tokens"],
        "max_objects": OBJECT_SETTINGS["max_objects"],
        "prompt_ids": {
            "question": q_ids,  # tokenizer.encode(question).ids
            "object": obj_ids,  # tokenizer.encode(" " + object).ids
            # query() (reasoning=False) appends the query suffix twice: once when the
            # prompt is built and once more in its non-reasoning branch.
            "query": tcfg["query"]["prefix"] + q_ids + 2 * tcfg["query"]["suffix"],
            "detect": tcfg["detect"]["prefix"] + obj_ids + tcfg["detect"]["suffix"],
            "point": tcfg["point"]["prefix"] + obj_ids + tcfg["point"]["suffix"],
            "caption_short": tcfg["caption"]["short"],
            "caption_normal": tcfg["caption"]["normal"],
        },
        "tiling_table": tiling_table(image_crops),
        "images": {},
        "regions": {},
    }

    paths = make_images(img_dir)
    diagnostics = {}
    for stem, path in paths.items():
        name = path.name  # entries are keyed by file name under images/
        image = load_image(path)
        entry = {"width": image.width, "height": image.height}

        oc = image_crops.overlap_crop_image(
            np.array(image.convert("RGB")), max_crops=12, overlap_margin=4
        )
        crops = np.ascontiguousarray(oc["crops"])
        entry["tiling"] = list(oc["tiling"])
        entry["n_crops"] = int(crops.shape[0])
        entry["crops_shape"] = list(crops.shape)
        entry["crops_dtype"] = str(crops.dtype)
        entry["crops_sha256"] = hashlib.sha256(crops.tobytes()).hexdigest()

        with torch.inference_mode():
            feats = model._run_vision_encoder(image).float().cpu().numpy()
        assert feats.shape == (729, 128), feats.shape
        entry["features_shape"] = list(feats.shape)
        entry["features_sum"] = float(feats.sum(dtype=np.float64))
        entry["features_abs_sum"] = float(np.abs(feats).sum(dtype=np.float64))
        if stem in ("astronaut", "panorama"):
            np.save(out / f"features-{stem}.npy", feats.astype(np.float32))
            entry["features_file"] = f"features-{stem}.npy"

        res, calls = rec.run(
            lambda: model.query(image, QUESTION, settings={**TEXT_SETTINGS, **NO_VARIANT})
        )
        diag = diagnostics[name] = {}
        entry["query"], diag["query"], first = text_record(
            res["answer"], calls, ref["prompt_ids"]["query"]
        )
        # float32 values written as exact decimal (float32 -> float64 -> repr round-trips)
        entry["query_first_logits"] = [float(v) for v in first.float().cpu().numpy()]

        for length in ("short", "normal"):
            res, calls = rec.run(
                lambda: model.caption(
                    image, length=length, settings={**TEXT_SETTINGS, **NO_VARIANT}
                )
            )
            entry[f"caption_{length}"], diag[f"caption_{length}"], _ = text_record(
                res["caption"], calls, tcfg["caption"][length]
            )
        ref["images"][name] = entry

        if stem in ("astronaut", "coffee"):
            region = {}
            res, calls = rec.run(
                lambda: model.detect(image, OBJECT, settings={**OBJECT_SETTINGS, **NO_VARIANT})
            )
            det, diag["detect"] = object_record(res, calls, "objects")
            assert det["prompt_ids"] == ref["prompt_ids"]["detect"]
            region["boxes"] = det["objects"]
            res, calls = rec.run(
                lambda: model.point(image, OBJECT, settings={**OBJECT_SETTINGS, **NO_VARIANT})
            )
            pts, diag["point"] = object_record(res, calls, "points")
            assert pts["prompt_ids"] == ref["prompt_ids"]["point"]
            region["points"] = pts["points"]
            ref["regions"][name] = region

        print(name, entry["tiling"], entry["query"]["ids"][:8], flush=True)

    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    (out / "diagnostics.json").write_text(json.dumps(diagnostics, indent=1) + "\n")


if __name__ == "__main__":
    main()
