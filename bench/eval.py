"""Harness overhead of ``vlmzoo eval``: a 500-sample caption benchmark on a tiny model, end to
end through the evaluation runner, against the same model calls in a bare loop, in one run.

The harness adds: reading the benchmark, decoding images in a background thread, one SQLite
transaction per batch, a progress bar. Its prediction phase is compared with a bare loop of
``model.caption`` over the same files, same batch size and generation budget (both after the
model is loaded; medians of alternating runs). Scoring (PTB tokenizer and METEOR jars, CIDEr,
bootstrap intervals) is reported on its own line: the bare loop does not score at all.

    python bench/eval.py [--samples 500] [--batch-size 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny-model factories


def write_benchmark(folder: Path, count: int) -> Path:
    """``count`` JPEGs (the shipped sample photos, rotated and flipped into distinct images) with
    the sample's reference captions, as a manifest benchmark."""
    from vlmzoo.evaluation.spec import load_benchmark

    base = list(load_benchmark("sample-caption").samples())
    rows = []
    for i in range(count):
        s = base[i % len(base)]
        variant = i // len(base)
        img = Image.open(s.images[0]).convert("RGB").rotate(90 * (variant % 4), expand=True)
        if variant // 4 % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        name = f"img_{i:04d}.jpg"
        img.save(folder / name, quality=90)
        rows.append({"id": f"s{i}", "image": name, "answers": list(s.answers)})
    (folder / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (folder / "bench.toml").write_text(
        'name = "bench-captions"\ndescription = "harness overhead benchmark"\ntask = "caption"\n'
        'metrics = ["bleu4", "cider", "rouge_l", "meteor"]\nmax_new_tokens = 16\n'
        '[data]\nformat = "manifest"\npath = "manifest.jsonl"\n')
    return folder / "bench.toml"


def bare_loop(model, paths: list[str], batch_size: int, new_tokens: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        model.caption(paths[i : i + batch_size], max_new_tokens=new_tokens)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import factory_prompted

    import vlmzoo
    from vlmzoo.evaluation.runner import EvalOptions, evaluate
    from vlmzoo.evaluation.spec import load_benchmark
    from vlmzoo.evaluation.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = factory_prompted.build_git(tmp / "git")
        (tmp / "data").mkdir()
        bench = load_benchmark(str(write_benchmark(tmp / "data", args.samples)))
        paths = [str(s.images[0]) for s in bench.samples()]
        model = vlmzoo.load(model_path)
        model.caption(paths[: args.batch_size], max_new_tokens=bench.max_new_tokens)  # warm-up
        bare, harness, scoring = [], [], []
        for r in range(args.repeats):  # alternate, so a noisy moment on a shared machine hits both
            bare.append(bare_loop(model, paths, args.batch_size, bench.max_new_tokens))
            with Store(tmp / f"run{r}.db") as store:  # a fresh store: every sample is predicted
                result = evaluate(str(model_path), bench, store, EvalOptions(batch_size=args.batch_size),
                                  load=lambda _resolved: model, progress=True)
            harness.append(result.seconds["predict"])
            scoring.append(result.seconds["score"])
        b, h, s = statistics.median(bare), statistics.median(harness), statistics.median(scoring)
        print(f"{args.samples} samples, tiny GIT, batch {args.batch_size}, {bench.max_new_tokens} new tokens, "
              f"medians of {args.repeats} alternating runs")
        print(f"bare loop of model.caption: {b:6.2f} s ({args.samples / b:6.1f} samples/s)")
        print(f"vlmzoo eval, predicting:    {h:6.2f} s ({args.samples / h:6.1f} samples/s)  "
              f"harness overhead {h / b - 1:+.1%} (target <= +5%)")
        print(f"vlmzoo eval, scoring:       {s:6.2f} s (bleu4, cider, rouge_l, meteor with 1000-resample intervals; "
              f"two JVM start-ups)")


if __name__ == "__main__":
    main()
