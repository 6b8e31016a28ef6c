"""The AVX512-BF16 decode kernels (engine/decode_kernels.py): built here, exact enough, and a
clean fallback wherever they cannot be built."""

import logging
import shutil

import pytest
import torch

from vlmzoo.engine import decode_kernels
from vlmzoo.engine.device import cpu_flags

BUILDABLE = "avx512_bf16" in cpu_flags() and shutil.which("ninja") and shutil.which("c++")
needs_kernel = pytest.mark.skipif(not BUILDABLE, reason="needs a CPU with AVX512-BF16, a C++ compiler and ninja")


@needs_kernel
def test_builds_on_a_machine_that_can_build_it():
    assert decode_kernels.kernels() is not None, decode_kernels.unavailable_reason()


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("n, k", [(1, 1), (7, 33), (64, 576), (13, 1536)])
def test_equals_a_float32_product_to_bf16_rounding(rows, n, k):
    op = decode_kernels.kernels().gemv_bf16
    g = torch.Generator().manual_seed(n * 1000 + k + rows)
    w = torch.randn(n, k, generator=g).to(torch.bfloat16)
    x = torch.randn(rows, k, generator=g).to(torch.bfloat16)
    bias = torch.randn(n, generator=g).to(torch.bfloat16)
    want = x.float() @ w.float().T + bias.float()
    got = op(x, w, bias)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, n)
    # one rounding of the fp32 sum to bf16 (8 bits of mantissa), plus summation-order noise
    assert torch.allclose(got.float(), want, rtol=1 / 128, atol=1e-3 * k ** 0.5)
    ref = torch.nn.functional.linear(x, w, bias).float()
    assert (got.float() - want).abs().max() <= (ref - want).abs().max() * 2 + 1e-3


@needs_kernel
def test_row_views_of_a_fused_weight_and_leading_dims():
    """The lean decoder's q/k/v weights are row slices of one tensor; inputs are (B, 1, K)."""
    op = decode_kernels.kernels().gemv_bf16
    fused = torch.randn(96, 40).to(torch.bfloat16)
    part = fused[32:64]  # rows stride 40, not at the start of the storage
    x = torch.randn(2, 1, 40).to(torch.bfloat16)
    got = op(x, part, None)
    assert got.shape == (2, 1, 32)
    assert torch.allclose(got.float(), x.float() @ part.float().T, rtol=1 / 128, atol=1e-2)


@needs_kernel
def test_refuses_wrong_input_with_a_named_reason():
    op = decode_kernels.kernels().gemv_bf16
    w = torch.randn(8, 16).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="bfloat16"):
        op(torch.randn(1, 16), w, None)
    with pytest.raises(RuntimeError, match="features"):
        op(torch.randn(1, 15).to(torch.bfloat16), w, None)
    with pytest.raises(RuntimeError, match="contiguous rows"):
        op(torch.randn(1, 8).to(torch.bfloat16), w.T, None)


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(decode_kernels, "_state", {})


def test_switch_turns_it_off(fresh_state, monkeypatch):
    monkeypatch.setenv("VLMZOO_NATIVE_KERNELS", "0")
    assert decode_kernels.kernels() is None
    assert "VLMZOO_NATIVE_KERNELS=0" in decode_kernels.unavailable_reason()


def test_a_failed_build_falls_back_with_a_warning(fresh_state, monkeypatch, caplog):
    monkeypatch.setattr(decode_kernels, "_blocker", lambda: None)

    def broken():
        raise RuntimeError("Error building extension 'vlmzoo_decode_kernels'\nlong compiler output")

    monkeypatch.setattr(decode_kernels, "_build", broken)
    with caplog.at_level(logging.WARNING, logger="vlmzoo.engine"):
        assert decode_kernels.kernels() is None
    assert decode_kernels.unavailable_reason() == "building it failed: Error building extension 'vlmzoo_decode_kernels'"
    assert "not used" in caplog.text
    assert decode_kernels.kernels() is None  # decided once per process: no second build attempt


def test_a_cpu_without_avx512_bf16_is_named(fresh_state, monkeypatch):
    monkeypatch.setattr(decode_kernels, "cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.delenv("VLMZOO_NATIVE_KERNELS", raising=False)
    monkeypatch.setattr(decode_kernels.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(decode_kernels.platform, "system", lambda: "Linux")
    assert decode_kernels.kernels() is None
    assert decode_kernels.unavailable_reason() == "this CPU has no AVX512-BF16 instructions"
