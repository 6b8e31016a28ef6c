"""Zero-shot classification speed: vlmzoo against what users write today, in one run.

Builds real-size CLIP ViT-B/32 and SigLIP-base architectures with random weights (no
downloads), writes JPEG photos (1024x768) to disk, and times, on the same files and labels:
  - pipeline: transformers' zero-shot-image-classification pipeline, called per image as its
    docs show (timed on a subset: it is slow, and a rate is a rate);
  - hand-batched fp32: an expert's loop (PIL decode, processor on a batch, get_image_features,
    label embeddings once);
  - vlmzoo: ``vlmzoo.load(path, dtype=...).classify(paths, labels)``.
Prints one line per case with images/s (medians of alternating runs), ratios against both
baselines, and the image tower's achieved GFLOP/s against the GEMM peak of this run in the dtype
vlmzoo ran in: end to end (images/s of the whole classify call, decoding included) and inside the
tower (its FLOPs over the time spent in get_image_features during that same call). By default
vlmzoo picks the dtype as for any user: bf16 where the CPU has native bf16, else float32.

    python bench/embed.py [--images 256] [--pipeline-images 32] [--dtype auto] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tiny-tokenizer helpers

LABELS = ["a cat", "a dog", "an astronaut", "a rocket", "a cup of coffee", "a car", "a tree", "a house",
          "a bird", "a boat"]


def gemm_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` on this machine, now: the best of three rounds
    (the highest rate seen, so that a busy moment on a shared machine cannot lower the peak)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def write_photos(folder: Path, count: int) -> list[Path]:
    """Real photos (scikit-image's), resized to 1024x768, varied, saved as JPEG quality 90."""
    from vlmzoo.samples import sample_photos

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    bases = [Image.open(p).convert("RGB").resize((1024, 768)) for p in sample_photos()]
    paths = []
    for i in range(count):
        arr = np.asarray(bases[i % len(bases)], dtype=np.int16)
        arr = np.clip(arr + rng.integers(-20, 21, size=(1, 1, 3)), 0, 255).astype(np.uint8)
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return paths


def build_clip(out: Path) -> Path:
    """CLIP ViT-B/32 at real size (transformers' CLIPConfig defaults), random weights."""
    import factory
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    tok = factory.clip_tokenizer()
    CLIPModel(CLIPConfig()).eval().save_pretrained(out)
    CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tok).save_pretrained(out)
    return out


def build_siglip(out: Path) -> Path:
    """SigLIP base patch16-224 at real size (transformers' SiglipConfig defaults), random weights."""
    import factory
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    torch.manual_seed(0)
    tok = factory.siglip_tokenizer(out.parent / "spm", max_length=64)
    SiglipModel(SiglipConfig()).eval().save_pretrained(out)
    SiglipProcessor(image_processor=SiglipImageProcessorPil(), tokenizer=tok).save_pretrained(out)
    return out


def image_gflop(path: Path) -> float:
    """GFLOP (2 x multiply-accumulates) of one image through the image tower, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path).eval()
    size = model.config.vision_config.image_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.get_image_features(pixel_values=torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def run_pipeline(path: Path, photos: list[Path], padding: str | None) -> float:
    from transformers import pipeline

    clf = pipeline("zero-shot-image-classification", model=str(path), device="cpu")
    kwargs = {"tokenizer_kwargs": {"padding": padding}} if padding else {}
    clf(str(photos[0]), candidate_labels=LABELS, **kwargs)  # warm-up
    t = time.perf_counter()
    for p in photos:
        clf(str(p), candidate_labels=LABELS, **kwargs)
    return len(photos) / (time.perf_counter() - t)


def run_hand_batched(path: Path, photos: list[Path], padding, batch: int = 32) -> float:
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(path).eval()
    proc = AutoProcessor.from_pretrained(path)
    with torch.no_grad():  # warm-up: one full batch
        px = proc.image_processor([Image.open(p).convert("RGB") for p in photos[:batch]], return_tensors="pt")
        model.get_image_features(pixel_values=px["pixel_values"])
    t = time.perf_counter()
    with torch.no_grad():
        text = proc.tokenizer([f"a photo of {x}." for x in LABELS], padding=padding, truncation=True,
                              return_tensors="pt")
        tf = model.get_text_features(**text).pooler_output
        tf = tf / tf.norm(dim=-1, keepdim=True)
        for i in range(0, len(photos), batch):
            images = [Image.open(p).convert("RGB") for p in photos[i : i + batch]]
            px = proc.image_processor(images, return_tensors="pt")["pixel_values"]
            f = model.get_image_features(pixel_values=px).pooler_output
            f = f / f.norm(dim=-1, keepdim=True)
            (f @ tf.T * model.logit_scale.exp()).softmax(-1)
    return len(photos) / (time.perf_counter() - t)


def run_vlmzoo(path: Path, photos: list[Path], dtype: str | None) -> tuple[float, float, torch.dtype]:
    import vlmzoo

    m = vlmzoo.load(path, dtype=dtype)
    # warm-up: one full batch (oneDNN builds kernels per shape)
    m.classify([str(p) for p in photos[: m.batch_size]], LABELS)
    tower = m.model.get_image_features
    inside = [0.0]

    def timed(*args, **kwargs):  # the time spent in the image tower itself, during the same run
        t = time.perf_counter()
        out = tower(*args, **kwargs)
        inside[0] += time.perf_counter() - t
        return out

    m.model.get_image_features = timed
    t = time.perf_counter()
    m.classify([str(p) for p in photos], LABELS)
    return len(photos) / (time.perf_counter() - t), len(photos) / inside[0], m.dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--pipeline-images", type=int, default=32)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="vlmzoo's dtype; auto: what vlmzoo picks on this CPU")
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternating runs of hand-batched and vlmzoo; medians reported")
    args = ap.parse_args()
    from vlmzoo.engine.device import cpu_has_native_bf16

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp / "photos", args.images)
        peaks = {torch.float32: gemm_peak(torch.float32)}
        if args.dtype == "bfloat16" or (args.dtype == "auto" and cpu_has_native_bf16()):
            peaks[torch.bfloat16] = gemm_peak(torch.bfloat16)  # emulated bf16 is too slow to probe
        print(f"GEMM peak this run: {', '.join(f'{str(d)[6:]} {p:.0f}' for d, p in peaks.items())} GFLOP/s; "
              f"{args.images} JPEGs 1024x768, {len(LABELS)} labels, torch threads {torch.get_num_threads()}")
        for name, build, padding in (("clip-vit-b-32", build_clip, True), ("siglip-base", build_siglip, "max_length")):
            path = build(tmp / name)
            gflop = image_gflop(path)
            pipe = run_pipeline(path, photos[: args.pipeline_images], "max_length" if padding == "max_length" else None)
            # alternate the two fast cases so that a noisy moment on a shared machine hits both
            hands, ours_runs, tower_runs = [], [], []
            for _ in range(args.repeats):
                hands.append(run_hand_batched(path, photos, padding))
                rate, tower_rate, used = run_vlmzoo(path, photos, None if args.dtype == "auto" else args.dtype)
                ours_runs.append(rate)
                tower_runs.append(tower_rate)
            hand, ours, tower = statistics.median(hands), statistics.median(ours_runs), statistics.median(tower_runs)
            # measured again next to this model, in the dtype vlmzoo ran in: the higher counts
            peak = peaks[used] = max(peaks.get(used, 0.0), gemm_peak(used))
            kind = "bf16" if used == torch.bfloat16 else "fp32"
            print(f"{name:14} pipeline/img {pipe:6.1f} img/s | hand-batched fp32 {hand:6.1f} img/s | "
                  f"vlmzoo {kind} {ours:6.1f} img/s | x{ours / pipe:5.1f} pipeline, x{ours / hand:4.1f} hand | "
                  f"image side end to end {gflop * ours:5.0f} GFLOP/s = {gflop * ours / peak:4.0%} of {kind} peak "
                  f"{peak:.0f}; inside the tower {gflop * tower:5.0f} GFLOP/s = {gflop * tower / peak:4.0%} "
                  f"({gflop:.2f} GFLOP/img)")


if __name__ == "__main__":
    main()
