"""engine/cpu/allocator.py: freed activations are reused instead of faulted in again, a switch turns
it off, and loading a model on the CPU applies it."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

import vlmzoo
from vlmzoo.engine.cpu import allocator

glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="the settings exist on Linux with glibc only")

# A forward pass's pattern: big outputs allocated, used and freed, again and again (100 MB here,
# above any mmap threshold glibc would pick by itself).
PROBE = textwrap.dedent("""
    import resource, torch
    from vlmzoo.engine.cpu.allocator import keep_freed_memory
    print(keep_freed_memory())
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            x = torch.empty(50_000_000, dtype=torch.bfloat16)
            x.fill_(1)
            y = x + 1
            del x, y
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    for _ in range(5):
        faults()  # the heap grows to the pattern's size once
    print(faults())
""")


def _probe(**env) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


@glibc_only
def test_freed_memory_is_reused_without_page_faults():
    applied, faults = _probe()
    assert applied == "True"
    assert faults < 1000  # 3 x 200 MB fresh would be about 150,000 faults of 4 KiB pages


@glibc_only
def test_switch_turns_it_off_and_glibc_faults_pages_in_again():
    applied, faults = _probe(VLMZOO_KEEP_FREED_MEMORY="0")
    assert applied == "False"
    assert faults > 50_000  # the behaviour the setting removes, still there without it


def test_loading_on_the_cpu_applies_it_and_frees_memory_before(tiny, monkeypatch):
    calls = []
    monkeypatch.setattr("vlmzoo.loading.release_free_memory", lambda: calls.append("release"))
    monkeypatch.setattr("vlmzoo.loading.keep_freed_memory", lambda: calls.append("keep"))
    vlmzoo.load(tiny["clip"], device="cpu")
    assert calls == ["release", "keep"]  # trimmed before the fit check, kept after the weights


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    allocator._glibc.cache_clear()
    try:
        assert allocator.keep_freed_memory() is False
        allocator.release_free_memory()  # no error, nothing to release
    finally:
        allocator._glibc.cache_clear()
