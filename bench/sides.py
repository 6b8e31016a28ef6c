"""What the side-by-side generation benches share (bench/moondream.py, bench/minicpm_v.py).

Each side (vlmzoo, plain transformers, the official code) runs in a process of its own and
prints one line, RESULT + its figures as JSON; the driver collects them with ``side``. Stdlib
only at module level: the official side runs with its own venv's python, which has no vlmzoo.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

BEST_OF = 3
RESULT = "RESULT "  # prefix of the line a side prints its figures on


def best(runs: list[dict], natural: int, extra: dict | None = None) -> dict:
    """The best of a side's timed runs: the lowest time to first token, the highest decode rate."""
    return {"ttft": min(r["ttft"] for r in runs), "tps": max(r["tps"] for r in runs),
            "vision": min(r["vision"] for r in runs), "tokens": runs[0]["tokens"], "ids": runs[0]["ids"],
            "natural_tokens": natural, **(extra or {}),
            "runs": [{k: round(r[k], 3) for k in ("ttft", "tps", "vision")} for r in runs]}


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (/proc/stat; 0 where it is absent)."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    except (OSError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def side(cmd: list[str], role: str) -> dict:
    """Run one side in a process of its own; its figures, and how much of the machine other
    processes took meanwhile (the box is shared: a busy neighbour slows a side down)."""
    import resource

    t, busy, before = time.perf_counter(), busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t
    ours = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        print(proc.stdout)
        raise SystemExit(f"{role} side failed (exit {proc.returncode})")
    result = json.loads(lines[-1][len(RESULT):])
    result["others_cpu"] = max(0.0, busy_cpu_seconds() - busy - ours) / (wall * (os.cpu_count() or 1))
    shown = {k: v for k, v in result.items() if k != "ids"}
    print(f"  {role}: done in {wall:.0f} s: {json.dumps(shown)}", flush=True)
    return result


def agree(a: list, b: list) -> int:
    """How many leading tokens two greedy runs share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def machine() -> str:
    """The CPU a figure came from: figures are only comparable within one run on one machine."""
    from vlmzoo.engine.device import cpu_flags

    out = subprocess.run(["lscpu"], check=False, stdout=subprocess.PIPE, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    flags = cpu_flags()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{name}, {os.cpu_count()} vCPUs, {simd}, native bf16: "
            f"{'yes (' + ', '.join(bf16) + ')' if bf16 else 'no'}")


def table(rows: list[tuple[str, dict]], ours: dict) -> None:
    """The markdown table docs/performance.md records: each side's figures and vlmzoo's ratios."""
    print("| side | TTFT (of it: vision) | decode | tokens | vlmzoo: TTFT x | vlmzoo: decode x |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, r in rows:
        ratio = "- | -" if r is ours else f"x{r['ttft'] / ours['ttft']:.2f} | x{ours['tps'] / r['tps']:.2f}"
        print(f"| {label} | {r['ttft']:.2f} s ({r['vision']:.2f} s) | {r['tps']:.2f} tok/s | {r['tokens']} | {ratio} |")
    print("\n(TTFT x: the other side's time to first token over vlmzoo's; decode x: vlmzoo's tokens/s over "
          "the other's; above 1, vlmzoo is faster)")


def parser(doc: str, new_tokens: int, official_python, upstream, upstream_help: str):
    """The options both benches take: tokens, dtype, the official side's venv and files, and the
    hidden ones a side's own process is started with."""
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=new_tokens)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="every side's dtype; auto: bfloat16 where the CPU has native bf16, else float32")
    ap.add_argument("--official-python", type=Path, default=official_python,
                    help="python of the venv the official code runs in")
    ap.add_argument("--upstream", type=Path, default=upstream, help=upstream_help)
    ap.add_argument("--role", choices=["build", "transformers", "official", "vlmzoo"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return ap


def play_role(args, sides: dict) -> bool:
    """In a side's own process (``--role``): run it and print its figures; False in the driver."""
    if not args.role or args.role == "build":
        return False
    print(RESULT + json.dumps(sides[args.role](args.work, args.new_tokens, args.dtype)), flush=True)
    return True


def native_dtype(args) -> None:
    """``--dtype auto`` made concrete: bfloat16 where the CPU has native bf16, else float32."""
    from vlmzoo.engine.device import cpu_has_native_bf16

    if args.dtype == "auto":
        args.dtype = "bfloat16" if cpu_has_native_bf16() else "float32"
