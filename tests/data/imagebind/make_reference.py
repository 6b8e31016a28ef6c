"""Make the ImageBind (imagebind_huge) reference test data from the official implementation.

This is vlmzoo's own driver script. It contains no upstream code: it imports the official
package (facebookresearch/ImageBind, commit 53680b0, exported unchanged to a scratch folder
outside the repository, plus facebookresearch/pytorchvideo at the commit ImageBind's
requirements.txt pins) and runs it on a tiny random configuration of the released architecture.

    python make_reference.py --upstream /work/scratch/imagebind-ref            (writes beside this file)
    python make_reference.py --upstream /work/scratch/imagebind-ref --out /tmp/x

--upstream is the folder holding ``ImageBind/`` (the exported repository: ``imagebind/``, its BPE
vocabulary ``imagebind/bpe/bpe_simple_vocab_16e6.txt.gz``) and ``pytorchvideo-src/``. See
README.md beside this file for the environment, the patches, the stubs and the input recipes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import random
import sys
import types
import wave
from pathlib import Path

import numpy as np
import torch

UPSTREAM_REPO = "facebookresearch/ImageBind"
UPSTREAM_COMMIT = "53680b02d7e37b19b124fa37bae4b6c98c38f5be"
PYTORCHVIDEO_REPO = "facebookresearch/pytorchvideo"
PYTORCHVIDEO_COMMIT = (
    "6cdc929315aab1b5674b6dcf73b16ec99147735f"  # pinned by ImageBind's requirements.txt
)
SEED = 0

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE.parent / "moondream2" / "images"  # reused by path, not copied
IMAGES = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.png",
    "panorama.png",
    "small.png",
]

# --------------------------------------------------------------------------- configuration
#
# imagebind_model.imagebind_huge() = ImageBindModel(vision 1280/32/16, text 1024/24/16,
# out 1024, everything else at the ImageBindModel defaults). The tiny model keeps every
# argument the preprocessing or a tensor shape depends on (video_frames 2, kernel_size
# (2, 14, 14), audio kernel 16 / stride 10, 128 mel bins, target length 204, depth and
# thermal kernels 16, IMU kernel 8, drop-path rates) and shrinks widths, depths and heads, each
# modality to a different width so that a port mixing them up fails.

FULL_SIZE = {  # the arguments imagebind_huge() passes, merged over the ImageBindModel defaults
    "video_frames": 2,
    "kernel_size": [2, 14, 14],
    "audio_kernel_size": 16,
    "audio_stride": 10,
    "out_embed_dim": 1024,
    "vision_embed_dim": 1280,
    "vision_num_blocks": 32,
    "vision_num_heads": 16,
    "audio_embed_dim": 768,
    "audio_num_blocks": 12,
    "audio_num_heads": 12,
    "audio_num_mel_bins": 128,
    "audio_target_len": 204,
    "audio_drop_path": 0.1,
    "text_embed_dim": 1024,
    "text_num_blocks": 24,
    "text_num_heads": 16,
    "depth_embed_dim": 384,
    "depth_kernel_size": 16,
    "depth_num_blocks": 12,
    "depth_num_heads": 8,
    "depth_drop_path": 0.0,
    "thermal_embed_dim": 768,
    "thermal_kernel_size": 16,
    "thermal_num_blocks": 12,
    "thermal_num_heads": 12,
    "thermal_drop_path": 0.0,
    "imu_embed_dim": 512,
    "imu_kernel_size": 8,
    "imu_num_blocks": 6,
    "imu_num_heads": 8,
    "imu_drop_path": 0.7,
}

TINY = dict(
    FULL_SIZE,
    out_embed_dim=24,
    vision_embed_dim=32,
    vision_num_blocks=3,
    vision_num_heads=2,
    text_embed_dim=16,  # the token embedding stays 49408 rows: 3.2 MB of the checkpoint
    text_num_blocks=2,
    text_num_heads=2,
    audio_embed_dim=24,
    audio_num_blocks=2,
    audio_num_heads=2,
    depth_embed_dim=20,
    depth_num_blocks=2,
    depth_num_heads=2,
    thermal_embed_dim=28,
    thermal_num_blocks=2,
    thermal_num_heads=2,
    imu_embed_dim=12,
    imu_num_blocks=2,
    imu_num_heads=2,
)

# --------------------------------------------------------------------------- inputs

TEXTS = [
    "A dog.",
    "A car",
    "A bird",
    "an astronaut in a white space suit",
    "",
    (
        "A very long caption that goes on and on, describing a sunny afternoon in a quiet park "
        "where children play near the fountain, dogs chase frisbees across the grass, an old man "
        "feeds pigeons from a paper bag, cyclists ride along the winding path, and the tall oak "
        "trees cast long shadows over the benches while a street musician plays the violin "
        "near the gate, and later in the evening the lamps along the river light up one by one."
    ),
]
LONG_TEXT_INDEX = 5

TOKENIZER_STRINGS = [
    "A dog.",
    "A car",
    "A bird",
    "",
    "   Hello,\tWORLD!!  \n  ",
    "it's a cat's toy; they're here, we'll see, I'd go, I'm in, you've won",
    "The year 2023 had 365 days and 1,000,000 seconds?",
    "naïve café — “quotes” &amp; &lt;tags&gt; &amp;amp;",
    "emoji 🐶🚗 and 中文 text",
    "sweet-potato vs. potato... (a/b) [c] {d} #hashtag @user",
    "Ã©tÃ© mojibake",
    "<|startoftext|> literal <|endoftext|> tokens",
    TEXTS[LONG_TEXT_INDEX],
]

AUDIO_FILES = {
    # name: (sample rate, channels, seconds, description)
    "tone-16k-mono.wav": (
        16000,
        1,
        3.0,
        "440 Hz + 1 kHz tones, 0.05 DC offset, 16 kHz mono",
    ),
    "chirp-44k-stereo.wav": (
        44100,
        2,
        2.5,
        "left: 200->4000 Hz chirp, right: noise; 44.1 kHz stereo",
    ),
    "short-22k-mono.wav": (
        22050,
        1,
        1.3,
        "noise bursts + 300 Hz, 1.3 s (< one 2 s clip), 22.05 kHz mono",
    ),
}

DEPTH_FILES = ["depth-room.png", "depth-sphere.png"]  # uint16 millimetres
THERMAL_FILES = ["thermal-blobs.png", "thermal-stripes.png"]  # 8-bit single channel
DEPTH_RECIPE = {
    "focal_length_px": 518.857901,
    "baseline_m": 0.075,
    "min_depth_m": 0.01,
    "max_depth_m": 50.0,
}

# --------------------------------------------------------------------------- helpers


def sha256_f32(t) -> str:
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return hashlib.sha256(
        np.ascontiguousarray(a.astype(np.float32)).tobytes()
    ).hexdigest()


def sha256_file(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def floats(t) -> list:
    """float32 values as exact decimals (repr of the float64 holding the float32 value)."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return (
        [float(x) for x in a.astype(np.float32).reshape(-1)]
        if a.ndim <= 1
        else [floats(r) for r in a]
    )


def stats(t) -> dict:
    t = t.detach().cpu()
    d = t.double()
    return {
        "shape": list(t.shape),
        "dtype": str(t.dtype).replace("torch.", ""),
        "sha256_f32": sha256_f32(t),
        "sum": float(d.sum()),
        "abs_sum": float(d.abs().sum()),
        "min": float(d.min()),
        "max": float(d.max()),
    }


class _InertModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(f"{self.__name__}.{name}")


class _Inert:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, name):
        return _Inert(f"{self._name}.{name}")

    def __call__(self, *a, **k):
        raise RuntimeError(
            f"stub {self._name} called: video decoding is not part of these references"
        )


# PyAV: imported at import time by pytorchvideo.data.utils / encoded_video_pyav
STUBBED = ["av"]


def import_official(upstream: Path):
    """Import the exported official packages with the stubs described in README.md."""
    upstream = Path(upstream).resolve()
    for name in STUBBED:
        sys.modules.setdefault(name, _InertModule(name))
    # torchvision 0.28.0 from PyPI is a CUDA build: its C extension cannot load against the CPU
    # torch, and torchvision._meta_registrations then fails registering fake kernels.
    sys.modules.setdefault(
        "torchvision._meta_registrations",
        types.ModuleType("torchvision._meta_registrations"),
    )
    sys.path.insert(0, str(upstream / "pytorchvideo-src"))
    sys.path.insert(0, str(upstream / "ImageBind"))
    import imagebind  # noqa: F401  (its __init__ imports data and the model)
    import pytorchvideo
    import torchaudio
    import torchvision
    from imagebind import data
    from imagebind.models import imagebind_model, multimodal_preprocessors
    from pytorchvideo.data import clip_sampling

    for mod, root in (
        (data, "ImageBind"),
        (imagebind_model, "ImageBind"),
        (pytorchvideo, "pytorchvideo-src"),
    ):
        assert str(upstream / root) in mod.__file__, mod.__file__
    return types.SimpleNamespace(
        data=data,
        model=imagebind_model,
        mmp=multimodal_preprocessors,
        torchaudio=torchaudio,
        torchvision=torchvision,
        clip_sampling=clip_sampling,
        root=upstream,
    )


# --------------------------------------------------------------------------- audio loading

AUDIO_LOADER = {"name": None}


def soundfile_load(path):
    """What torchaudio.load(path) returns for a PCM WAV with its defaults (normalize=True,
    channels_first=True): float32 (channels, frames), int16 samples / 32768, and the rate."""
    import soundfile

    a, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(a.T)), sr


def wave_load(path):
    """The same from the standard library: int16 PCM / 32768 in float32."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getcomptype() == "NONE"
        n, ch, sr = w.getnframes(), w.getnchannels(), w.getframerate()
        raw = np.frombuffer(w.readframes(n), dtype="<i2").reshape(n, ch).T
    return torch.from_numpy(raw.astype(np.float32) / np.float32(32768.0)), sr


def choose_audio_loader(up, paths):
    """Use torchaudio.load when it works; otherwise substitute soundfile_load after proving it
    equal (bitwise) to the standard-library decode on every file. Records what was used."""
    try:
        for p in paths:
            wf, sr = up.torchaudio.load(str(p))
            ref, rsr = wave_load(p)
            assert sr == rsr and wf.dtype == torch.float32 and torch.equal(wf, ref), p
        AUDIO_LOADER.update(
            name="torchaudio.load", note="torchaudio.load worked and equals int16/32768"
        )
        return
    except Exception as e:  # noqa: BLE001
        err = f"{type(e).__name__}: {e}"
    for p in paths:
        a, sr = soundfile_load(p)
        b, sr2 = wave_load(p)
        assert (
            sr == sr2
            and a.dtype == b.dtype == torch.float32
            and a.shape == b.shape
            and torch.equal(a, b)
        ), p
    up.data.torchaudio.load = soundfile_load  # data.py calls torchaudio.load(path)
    AUDIO_LOADER.update(
        name="soundfile_load (substitute)",
        torchaudio_load_error=err.splitlines()[0][:300],
        note=(
            "torchaudio.load could not run; torchaudio.load is replaced by soundfile.read(dtype="
            "'float32', always_2d=True).T, checked bitwise equal to int16/32768 decoded with the "
            "stdlib wave module on every file"
        ),
    )


# --------------------------------------------------------------------------- input files


def write_wav(path: Path, sr: int, channels: np.ndarray):
    ch = np.clip(np.round(channels * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ch.shape[0])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.ascontiguousarray(ch.T).tobytes())


def make_audio_files(out: Path) -> list:
    rng = random.Random(1234)  # Python's Mersenne Twister: stable across versions
    paths = []
    for name, (sr, nch, secs, _) in AUDIO_FILES.items():
        n = round(sr * secs)
        t = np.arange(n, dtype=np.float64) / sr
        if name.startswith("tone"):
            x = (
                0.3 * np.sin(2 * np.pi * 440 * t)
                + 0.15 * np.sin(2 * np.pi * 1000 * t)
                + 0.05
            )
            sig = x[None]
        elif name.startswith("chirp"):
            f0, f1 = 200.0, 4000.0
            phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * secs))
            left = 0.4 * np.sin(phase) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
            right = np.array([rng.gauss(0.0, 0.12) for _ in range(n)])
            sig = np.stack([left, right])
        else:
            noise = np.array([rng.gauss(0.0, 0.2) for _ in range(n)])
            env = (np.sin(2 * np.pi * 3 * t) > 0.3).astype(np.float64)
            sig = (noise * env + 0.25 * np.sin(2 * np.pi * 300 * t))[None]
        assert sig.shape[0] == nch
        p = out / name
        write_wav(p, sr, sig)
        paths.append(p)
    return paths


def make_depth_files(out: Path) -> list:
    from PIL import Image

    paths = []
    # room: 240x320, a floor plane receding from 1.2 m to 6 m, a box at 1.8 m, a hole (0 = invalid)
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d = 6.0 - 4.8 * (yy / (h - 1)) ** 1.5 + 0.3 * np.sin(xx / 25.0)
    d[80:170, 110:210] = 1.8 + 0.002 * (xx[80:170, 110:210] - 110)
    mm = np.round(d * 1000.0)
    mm[20:34, 250:290] = 0  # missing measurements, as Kinect-style sensors write them
    paths.append(out / DEPTH_FILES[0])
    Image.fromarray(mm.astype(np.uint16)).save(paths[-1])
    # sphere: 180x240, a sphere of radius 0.5 m centred at 2.2 m before a wall at 4 m
    h, w = 180, 240
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r2 = ((xx - 130) / 70.0) ** 2 + ((yy - 85) / 70.0) ** 2
    d = np.full((h, w), 4.0) + 0.001 * xx
    inside = r2 < 1.0
    d[inside] = 2.2 - 0.5 * np.sqrt(1.0 - r2[inside])
    paths.append(out / DEPTH_FILES[1])
    Image.fromarray(np.round(d * 1000.0).astype(np.uint16)).save(paths[-1])
    return paths


def make_thermal_files(out: Path) -> list:
    from PIL import Image

    paths = []
    h, w = 256, 320  # LLVIP-like landscape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    v = 40 + 30 * yy / h
    for cx, cy, s, a in ((80, 140, 18, 170), (200, 120, 30, 140), (270, 200, 12, 200)):
        v = v + a * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)))
    paths.append(out / THERMAL_FILES[0])
    Image.fromarray(np.clip(np.round(v), 0, 255).astype(np.uint8), mode="L").save(
        paths[-1]
    )
    h, w = 300, 200  # portrait
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    v = 128 + 90 * np.sin(xx / 9.0) * np.cos(yy / 23.0)
    paths.append(out / THERMAL_FILES[1])
    Image.fromarray(np.clip(np.round(v), 0, 255).astype(np.uint8), mode="L").save(
        paths[-1]
    )
    return paths


def make_imu(out: Path) -> torch.Tensor:
    """(2, 6, 2000): accelerometer x, y, z (m/s^2, gravity included) then gyroscope x, y, z
    (rad/s), 10 s at 200 Hz; walking-like and turning-like."""
    rng = random.Random(99)
    t = np.arange(2000) / 200.0
    walk = np.stack(
        [
            0.8 * np.sin(2 * np.pi * 2.0 * t),
            0.3 * np.sin(2 * np.pi * 1.0 * t + 0.4),
            9.81 + 1.5 * np.sin(2 * np.pi * 2.0 * t + 1.0),
            0.2 * np.sin(2 * np.pi * 1.0 * t),
            0.05 * np.cos(2 * np.pi * 2.0 * t),
            0.1 * np.sin(2 * np.pi * 0.5 * t),
        ]
    )
    turn = np.stack(
        [
            np.array([rng.gauss(0.0, 0.3) for _ in t]),
            2.0 * np.tanh(t - 5.0),
            9.81 * np.cos(0.3 * np.sin(0.4 * t)),
            np.array([rng.gauss(0.0, 0.05) for _ in t]),
            0.02 * t,
            1.2 * np.exp(-((t - 5.0) ** 2)),
        ]
    )
    imu = torch.from_numpy(np.stack([walk, turn]).astype(np.float32))
    np.save(out / "imu.npy", imu.numpy())
    return imu


# --------------------------------------------------------------------------- input recipes
# (the official repository has no loader for depth, thermal or IMU; see README.md)


def depth_recipe(up, paths) -> torch.Tensor:
    """uint16 millimetre PNG -> metres -> clip [0.01, 50] -> disparity = baseline * focal / depth
    (the conversion a maintainer posted, facebookresearch/omnivore issue 12) -> the vision
    loader's Resize(224, bicubic) + CenterCrop(224), applied to the float tensor."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
        ]
    )
    r = DEPTH_RECIPE
    outs = []
    for p in paths:
        mm = np.array(Image.open(p))
        assert mm.dtype == np.uint16
        depth_m = mm.astype(np.float32) / np.float32(1000.0)
        depth_m = depth_m.clip(r["min_depth_m"], r["max_depth_m"])
        disparity = np.float32(r["baseline_m"] * r["focal_length_px"]) / depth_m
        outs.append(tf(torch.from_numpy(disparity)[None]))
    return torch.stack(outs)


def thermal_recipe(up, paths) -> torch.Tensor:
    """The vision loader without the RGB conversion and without Normalize: PIL convert("L"),
    Resize(224, bicubic), CenterCrop(224), ToTensor -> (1, 224, 224) in [0, 1]."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
        ]
    )
    outs = []
    for p in paths:
        with open(p, "rb") as f:
            outs.append(tf(Image.open(f).convert("L")))
    return torch.stack(outs)


# --------------------------------------------------------------------------- model


def build_model(up, cfg: dict) -> torch.nn.Module:
    kw = dict(cfg)
    kw["kernel_size"] = tuple(kw["kernel_size"])
    return up.model.ImageBindModel(**kw)


def init_tiny(model: torch.nn.Module) -> list:
    """Random non-trivial init, every parameter set explicitly, in named_parameters() order."""
    g = torch.Generator().manual_seed(SEED)
    rules = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            parent_name, _, leaf = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            n = torch.randn(p.shape, generator=g)
            if leaf == "log_logit_scale":
                rule = "kept (log(1/0.07), as the code sets it)"
                rules.append((name, rule))
                continue
            if leaf in ("cls_token", "pos_embed", "bias_k", "bias_v") or name.endswith(
                "token_embedding.weight"
            ):
                p.copy_(0.5 * n)
                rule = "normal std 0.5"
            elif isinstance(parent, torch.nn.LayerNorm):
                p.copy_(1.0 + 0.1 * n if leaf == "weight" else 0.02 * n)
                rule = "1 + 0.1 normal" if leaf == "weight" else "normal std 0.02"
            elif leaf == "in_proj_weight" or (
                isinstance(parent, torch.nn.Linear) and leaf == "weight"
            ):
                p.copy_(n / math.sqrt(p.shape[1]))
                rule = "normal std 1/sqrt(fan_in)"
            elif (
                isinstance(parent, (torch.nn.Conv2d, torch.nn.Conv3d))
                and leaf == "weight"
            ):
                p.copy_(n / math.sqrt(math.prod(p.shape[1:])))
                rule = "normal std 1/sqrt(fan_in)"
            elif leaf in ("bias", "in_proj_bias"):
                p.copy_(0.02 * n)
                rule = "normal std 0.02"
            else:
                raise AssertionError(
                    f"no init rule for {name} ({type(parent).__name__})"
                )
            rules.append((name, rule))
    return rules


def state_dict_shapes(model) -> dict:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    out = args.out.resolve()
    (out / "checkpoint").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    up = import_official(args.upstream)
    data, M = up.data, up.model
    MT = M.ModalityType
    ref: dict = collections.OrderedDict()

    # ---------------------------------------------------------------- sources
    bpe_path = Path(data.return_bpe_path())
    ref["sources"] = {
        "imagebind": f"github.com/{UPSTREAM_REPO}@{UPSTREAM_COMMIT}",
        "pytorchvideo": f"github.com/{PYTORCHVIDEO_REPO}@{PYTORCHVIDEO_COMMIT} (only ConstantClipsPerVideoSampler runs)",
        "bpe_vocab": {
            "upstream_path": "imagebind/bpe/bpe_simple_vocab_16e6.txt.gz",
            "sha256": sha256_file(bpe_path),
            "bytes": bpe_path.stat().st_size,
        },
        "versions": {
            "torch": torch.__version__,
            "torchvision": up.torchvision.__version__,
            "torchaudio": up.torchaudio.__version__,
            "numpy": np.__version__,
            "pillow": __import__("PIL").__version__,
            "ftfy": __import__("ftfy").__version__,
            "regex": __import__("regex").__version__,
            "timm": __import__("timm").__version__,
            "einops": __import__("einops").__version__,
        },
    }

    # ---------------------------------------------------------------- inputs we make
    audio_paths = make_audio_files(out)
    depth_paths = make_depth_files(out)
    thermal_paths = make_thermal_files(out)
    imu = make_imu(out)
    image_paths = [IMAGES_DIR / n for n in IMAGES]
    choose_audio_loader(up, audio_paths)

    ref["input_files"] = {
        **{
            p.name: {
                "sha256": sha256_file(p),
                "sample_rate": AUDIO_FILES[p.name][0],
                "channels": AUDIO_FILES[p.name][1],
                "frames": round(AUDIO_FILES[p.name][0] * AUDIO_FILES[p.name][2]),
                "format": "WAV PCM int16 little-endian",
                "content": AUDIO_FILES[p.name][3],
            }
            for p in audio_paths
        },
        **{
            p.name: {
                "sha256": sha256_file(p),
                "format": "PNG 16-bit grayscale, depth in millimetres, 0 = invalid",
            }
            for p in depth_paths
        },
        **{
            p.name: {"sha256": sha256_file(p), "format": "PNG 8-bit grayscale (mode L)"}
            for p in thermal_paths
        },
        "imu.npy": {
            "sha256": sha256_file(out / "imu.npy"),
            "shape": list(imu.shape),
            "dtype": "float32",
            "channels": ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"],
        },
        "images": {
            n: {
                "path": f"../moondream2/images/{n}",
                "sha256": sha256_file(IMAGES_DIR / n),
            }
            for n in IMAGES
        },
    }

    # ---------------------------------------------------------------- tokenizer table
    tok = up.mmp.SimpleTokenizer(bpe_path=str(bpe_path))
    table = []
    for s in TOKENIZER_STRINGS:
        # context_length 77 (the constructor's default, as data.py uses it)
        ids = tok(s)
        enc = tok.encode(s)
        row = {
            "text": s,
            "ids": [int(x) for x in ids.tolist()],
            "encode": enc,
            "n_encoded": len(enc),
            "truncated": len(enc) > 75,
            "eot_position": int(ids.argmax()),
            "decode_of_encode": tok.decode(enc),
        }
        if len(enc) > 75:  # the behaviour before commit 1125e1e (no EOT when truncated)
            old = ([49406] + enc + [49407])[:77]
            row["ids_before_1125e1e"] = old
            row["argmax_before_1125e1e"] = int(np.argmax(old))
        table.append(row)
    ref["tokenizer"] = {
        "class": "imagebind.models.multimodal_preprocessors.SimpleTokenizer(bpe_path, context_length=77)",
        "vocab_size": len(tok.encoder),
        "sot_id": tok.encoder["<|startoftext|>"],
        "eot_id": tok.encoder["<|endoftext|>"],
        "n_merges": len(tok.bpe_ranks),
        "table": table,
    }

    # ---------------------------------------------------------------- official preprocessing
    rec = {"clip_timepoints": [], "resample": [], "fbank": [], "load": []}
    orig_gct, orig_resample, orig_fbank = (
        data.get_clip_timepoints,
        up.torchaudio.functional.resample,
        up.torchaudio.compliance.kaldi.fbank,
    )
    orig_load = data.torchaudio.load

    def rec_gct(sampler, duration):
        tps = orig_gct(sampler, duration)
        rec["clip_timepoints"].append(
            {"duration": float(duration), "clips": [[str(a), str(b)] for a, b in tps]}
        )
        return tps

    def rec_resample(w, orig_freq, new_freq, **kw):
        o = orig_resample(w, orig_freq=orig_freq, new_freq=new_freq, **kw)
        rec["resample"].append(
            {
                "orig_freq": orig_freq,
                "new_freq": new_freq,
                "in_shape": list(w.shape),
                "out": stats(o),
            }
        )
        return o

    def rec_fbank(w, **kw):
        rec["fbank"].append(
            {
                "in_shape": list(w.shape),
                "in_sum": float(w.double().sum()),
                "in_sha256_f32": sha256_f32(w),
            }
        )
        o = orig_fbank(w, **kw)
        rec["fbank"][-1]["n_frames"] = int(o.shape[0])
        return o

    def rec_load(p):
        w, sr = orig_load(p)
        rec["load"].append(
            {"file": Path(p).name, "sample_rate": sr, "waveform": stats(w)}
        )
        return w, sr

    data.get_clip_timepoints = rec_gct
    up.torchaudio.functional.resample = rec_resample
    up.torchaudio.compliance.kaldi.fbank = rec_fbank
    data.torchaudio.load = rec_load
    try:
        vision = data.load_and_transform_vision_data(
            [str(p) for p in image_paths], "cpu"
        )
        text = data.load_and_transform_text(TEXTS, "cpu")
        audio = data.load_and_transform_audio_data([str(p) for p in audio_paths], "cpu")
    finally:
        data.get_clip_timepoints = orig_gct
        up.torchaudio.functional.resample = orig_resample
        up.torchaudio.compliance.kaldi.fbank = orig_fbank
        data.torchaudio.load = orig_load
    depth = depth_recipe(up, depth_paths)
    thermal = thermal_recipe(up, thermal_paths)

    # the in-place mean subtraction on overlapping clip views (see README): what the clips would be
    # with independent copies, to show the port that the difference is real
    inplace_effect = []
    for i, p in enumerate(audio_paths):
        w, sr = data.torchaudio.load(str(p))
        if sr != 16000:
            w = up.torchaudio.functional.resample(w, orig_freq=sr, new_freq=16000)
        sampler = up.clip_sampling.ConstantClipsPerVideoSampler(
            clip_duration=2, clips_per_video=3
        )
        tps = data.get_clip_timepoints(sampler, w.size(1) / 16000)
        diffs = []
        for j, (a, b) in enumerate(tps):
            clip = w[:, int(a * 16000) : int(b * 16000)].clone()
            mel = data.waveform2melspec(clip, 16000, 128, 204)
            mel = up.torchvision.transforms.Normalize(mean=-4.268, std=9.138)(mel)
            diffs.append(float((mel - audio[i, j]).abs().max()))
        inplace_effect.append(
            {"file": p.name, "max_abs_diff_per_clip_vs_independent_copies": diffs}
        )

    ref["preprocessed"] = {
        "vision": {
            "loader": "data.load_and_transform_vision_data(paths, 'cpu')",
            "files": IMAGES,
            **stats(vision),
            "per_image": [
                {
                    "file": n,
                    **stats(vision[i]),
                    "channel_means": floats(
                        vision[i].double().mean(dim=(1, 2)).float()
                    ),
                    "top_left_4x4_channel0": floats(vision[i, 0, :4, :4]),
                    "center_4x4_channel1": floats(vision[i, 1, 110:114, 110:114]),
                }
                for i, n in enumerate(IMAGES)
            ],
        },
        "text": {
            "loader": "data.load_and_transform_text(texts, 'cpu')",
            "texts": TEXTS,
            "ids": [[int(x) for x in r] for r in text.tolist()],
            "shape": list(text.shape),
            "dtype": str(text.dtype).replace("torch.", ""),
            "seq_len_argmax": [int(x) for x in text.argmax(dim=-1).tolist()],
        },
        "audio": {
            "loader": "data.load_and_transform_audio_data(paths, 'cpu') (defaults: 128 mel bins, target 204, 16 kHz, 2 s clips, 3 clips, mean -4.268, std 9.138)",
            "audio_loader": AUDIO_LOADER,
            "files": [p.name for p in audio_paths],
            **stats(audio),
            "per_file": [
                {
                    "file": p.name,
                    **stats(audio[i]),
                    "per_clip_sum": [
                        float(audio[i, j].double().sum()) for j in range(audio.shape[1])
                    ],
                }
                for i, p in enumerate(audio_paths)
            ],
            "recorded": rec,
            "npy": "audio-melspec.npy",
            "inplace_mean_subtraction_effect": inplace_effect,
        },
        "depth": {
            "loader": "driver recipe depth_recipe() (NOT official: the repository has no depth loader)",
            "recipe": DEPTH_RECIPE,
            "files": DEPTH_FILES,
            **stats(depth),
            "npy": "depth-input.npy",
        },
        "thermal": {
            "loader": "driver recipe thermal_recipe() (NOT official: the repository has no thermal loader)",
            "files": THERMAL_FILES,
            **stats(thermal),
            "npy": "thermal-input.npy",
        },
        "imu": {
            "loader": "imu.npy as is (NOT official: the repository has no IMU loader)",
            **stats(imu),
        },
    }
    np.save(out / "audio-melspec.npy", audio.numpy())
    np.save(out / "depth-input.npy", depth.numpy())
    np.save(out / "thermal-input.npy", thermal.numpy())

    # ---------------------------------------------------------------- tiny checkpoint
    model = build_model(up, TINY)
    rules = init_tiny(model)
    ckpt = out / "checkpoint" / "imagebind_huge.pth"
    torch.save(model.state_dict(), ckpt)
    (out / "checkpoint" / "config.json").write_text(
        json.dumps(
            {
                "_comment": (
                    "ImageBindModel(**kwargs) for the tiny checkpoint beside this file; the official "
                    "imagebind_huge() takes no config and hard-codes full_size_kwargs"
                ),
                "architecture": "imagebind_model.ImageBindModel",
                "kwargs": TINY,
                "full_size_kwargs": FULL_SIZE,
            },
            indent=1,
        )
        + "\n"
    )
    del model
    # the fresh model gets other random values before loading
    torch.manual_seed(SEED + 1)
    model = build_model(up, TINY)
    # exactly as imagebind_huge(pretrained=True) loads
    sd = torch.load(ckpt, weights_only=True)
    missing = model.load_state_dict(sd, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    model.eval()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    ref["checkpoint"] = {
        "file": "checkpoint/imagebind_huge.pth",
        "sha256": sha256_file(ckpt),
        "bytes": ckpt.stat().st_size,
        "format": (
            "torch.save(model.state_dict()) (zip-format pickle of an OrderedDict name -> float32 "
            "tensor); loaded with torch.load(path, weights_only=True) and a strict load_state_dict, "
            "as imagebind_huge(pretrained=True) does"
        ),
        "n_tensors": len(sd),
        "n_parameters": len(params),
        "n_buffers": len(buffers),
        "parameter_values": sum(p.numel() for p in params.values()),
        "buffers": {k: list(v.shape) for k, v in buffers.items()},
        "tensors": {k: list(v.shape) for k, v in sd.items()},
        "all_float32": all(v.dtype == torch.float32 for v in sd.values()),
        "init_rules": collections.Counter(r for _, r in rules),
        "logit_scales": {
            m: {
                "log_logit_scale": float(
                    model.modality_postprocessors[m][1].log_logit_scale.detach()
                ),
                "learnable": bool(model.modality_postprocessors[m][1].learnable),
                "max_logit_scale": float(
                    model.modality_postprocessors[m][1].max_logit_scale
                ),
            }
            for m in ("text", "audio", "depth", "thermal", "imu")
        },
    }

    # ---------------------------------------------------------------- model outputs
    heads, post = {}, {}
    hooks = []
    for m in ("vision", "text", "audio", "depth", "thermal", "imu"):
        hooks.append(
            model.modality_heads[m].register_forward_hook(
                lambda mod, a, o, m=m: heads.__setitem__(m, o.detach().clone())
            )
        )
        hooks.append(
            model.modality_postprocessors[m].register_forward_hook(
                lambda mod, a, o, m=m: post.__setitem__(m, o.detach().clone())
            )
        )
    inputs = {
        MT.TEXT: text,
        MT.VISION: vision,
        MT.AUDIO: audio,
        MT.DEPTH: depth,
        MT.THERMAL: thermal,
        MT.IMU: imu,
    }
    feed = {k: v.clone() for k, v in inputs.items()}
    with torch.no_grad():
        emb = model(feed)
    for h in hooks:
        h.remove()
    ref["embeddings"] = {}
    for m in ("vision", "text", "audio", "depth", "thermal", "imu"):
        e = emb[m]
        np.save(out / f"embeddings-{m}.npy", e.numpy())
        ref["embeddings"][m] = {
            "input_shape": list(inputs[m].shape),
            "shape": list(e.shape),
            "norms": floats(e.double().norm(dim=-1).float()),
            "values": floats(e),
            "npy": f"embeddings-{m}.npy",
            "head_output": {"shape": list(heads[m].shape), "values": floats(heads[m])},
        }
    ref["embeddings"]["audio"]["per_clip_postprocessed"] = {
        "shape": list(post["audio"].shape),
        "values": floats(post["audio"]),
    }

    def sm(a, b):
        return floats(torch.softmax(a @ b.T, dim=-1))

    V, T, A, D, TH, I = (
        emb[k] for k in ("vision", "text", "audio", "depth", "thermal", "imu")
    )
    ref["similarities"] = {
        "_comment": "README example: torch.softmax(emb[X] @ emb[Y].T, dim=-1) on the returned (scaled) embeddings",
        "vision_x_text": sm(V, T),
        "audio_x_text": sm(A, T),
        "vision_x_audio": sm(V, A),
        "depth_x_text": sm(D, T),
        "thermal_x_text": sm(TH, T),
        "imu_x_text": sm(I, T),
        "vision_x_text_logits": floats(V @ T.T),
    }

    # ---------------------------------------------------------------- extra model cases
    extra = {}
    with torch.no_grad():
        # each modality alone and one item at a time gives the same values as the joint batch
        alone = {}
        for m, x in inputs.items():
            e1 = model({m: x.clone()})[m]
            e2 = torch.cat(
                [model({m: x[i : i + 1].clone()})[m] for i in range(x.shape[0])]
            )
            alone[m] = {
                "alone_max_abs_diff": float((e1 - emb[m]).abs().max()),
                "one_by_one_max_abs_diff": float((e2 - emb[m]).abs().max()),
            }
        extra["batch_consistency"] = alone
        # video path (6-D vision input: B, clips, C, T=2, H, W) from the preprocessed images
        video = torch.stack(
            [
                torch.stack([vision[0], vision[1]], dim=1),
                torch.stack([vision[2], vision[3]], dim=1),
            ]
        )[None]  # (1, 2 clips, 3, 2 frames, 224, 224)
        ve = model({MT.VISION: video.clone()})[MT.VISION]
        # one clip whose two frames are the same image
        still = torch.stack([vision[4], vision[4]], dim=1)[None, None]
        se = model({MT.VISION: still.clone()})[MT.VISION]
        extra["vision_video"] = {
            "input": "torch.stack of preprocessed images: clip 0 = frames (astronaut, chelsea), clip 1 = (coffee, rocket); shape (1, 2, 3, 2, 224, 224)",
            "embedding": floats(ve[0]),
            "norm": float(ve.double().norm()),
            "still_clip_of_panorama_vs_image_max_abs_diff": float(
                (se[0] - emb[MT.VISION][4]).abs().max()
            ),
        }
    ref["extra"] = extra
    ref["model_leaves_inputs_unchanged"] = {
        m: bool(torch.equal(feed[m], v)) for m, v in inputs.items()
    }

    (out / "reference.json").write_text(
        json.dumps(ref, indent=1, ensure_ascii=False) + "\n"
    )
    print("wrote", out)
    for m in ("vision", "text", "audio", "depth", "thermal", "imu"):
        print(m, tuple(emb[m].shape), [round(x, 4) for x in emb[m][0, :4].tolist()])


if __name__ == "__main__":
    main()
