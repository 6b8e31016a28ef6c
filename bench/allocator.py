"""Page faults of a forward pass's memory pattern, with glibc's defaults and with vlmzoo's
freed-memory reuse (engine/cpu/allocator.py), in the main thread and in a worker thread.

Each case runs in a fresh process: big blocks are allocated, filled, added to and freed three
times, after five warm-up rounds; the count is the process's minor page faults for those three.
A worker thread is where `vlmzoo serve` and `stream=True` run the model. The last case also
makes every thread share the main heap (mallopt M_ARENA_MAX = 1), which vlmzoo does not do.

    python bench/allocator.py [--sizes-mb 20,50,107]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

CASE = textwrap.dedent("""
    import ctypes, resource, sys
    from concurrent.futures import ThreadPoolExecutor
    import torch
    from vlmzoo.engine.cpu.allocator import keep_freed_memory

    mode, sizes = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
    if mode != "glibc defaults":
        assert keep_freed_memory(), "the settings could not be applied here (Linux with glibc only)"
    if mode.endswith("one arena"):
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX, before the worker's first allocation

    def faults(n):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            x = torch.empty(n, dtype=torch.bfloat16)
            x.fill_(1)
            y = x + 1
            del x, y
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    def settled(n):
        for _ in range(5):
            faults(n)
        return faults(n)

    worker = ThreadPoolExecutor(1)
    for mb in sizes:
        n = mb * 1_000_000 // 2
        print(f"{mode:28} {mb:4} MB blocks: main thread {settled(n):7} faults, "
              f"worker thread {worker.submit(settled, n).result():7}")
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="20,50,107")
    args = ap.parse_args()
    for mode in ("glibc defaults", "freed memory kept", "freed memory kept, one arena"):
        subprocess.run([sys.executable, "-c", CASE, mode, args.sizes_mb], check=True)


if __name__ == "__main__":
    main()
