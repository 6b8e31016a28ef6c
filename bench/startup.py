"""Start-up time of the command line: `vlmzoo --help` and `vlmzoo models`, against the cost of
importing torch + transformers (what the CLI would pay if it imported them eagerly).

    python bench/startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 5


def wall(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    py = sys.executable
    eager = wall([py, "-c", "import torch, transformers; transformers.AutoModel"])
    for label, cmd in (("vlmzoo --help", [py, "-m", "vlmzoo.cli", "--help"]),
                       ("vlmzoo models", [py, "-m", "vlmzoo.cli", "models", "--json"])):
        t = wall(cmd)
        print(f"{label:14} {t:5.2f} s (median of {RUNS}) | importing torch+transformers alone {eager:5.2f} s | "
              f"x{eager / t:4.1f} faster than an eager CLI would start")


if __name__ == "__main__":
    main()
