"""The AVX512-BF16 decode kernels (engine/cpu/decode_kernels.py): built here, exact enough, and a
clean fallback wherever they cannot be built."""

import logging
import shutil

import pytest
import torch

from vlmzoo.engine.cpu import decode_kernels
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



def _layer_reference(x, w, kc, vc, length, cos, sin, mask, heads, kv_heads, eps):
    """One Llama-style decode layer in float32 from the same bf16 inputs (the cache gets the new
    k, v at index ``length``)."""
    f = {k: v.float() for k, v in w.items()}
    b, hd = x.shape[0], kc.shape[-1]

    def rms(t, weight):
        return weight * t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps)

    def rotary(t):  # (B, n, hd)
        rotated = torch.cat([-t[..., hd // 2:], t[..., : hd // 2]], dim=-1)
        return t * cos[:, None].float() + rotated * sin[:, None].float()

    q, k, v = (rms(x.float(), f["ln1"]) @ f["qkv"].T).split([heads * hd, kv_heads * hd, kv_heads * hd], -1)
    keys, values = kc.float().clone(), vc.float().clone()
    keys[:, :, length] = rotary(k.view(b, kv_heads, hd))
    values[:, :, length] = v.view(b, kv_heads, hd)
    group = heads // kv_heads
    keys = keys[:, :, : length + 1].repeat_interleave(group, 1)
    values = values[:, :, : length + 1].repeat_interleave(group, 1)
    scores = torch.einsum("bhd,bhld->bhl", rotary(q.view(b, heads, hd)), keys) / hd ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, : length + 1], float("-inf"))
    attn = torch.einsum("bhl,bhld->bhd", scores.softmax(-1), values).reshape(b, heads * hd)
    mid = x.float() + attn @ f["o"].T
    gate, up = (rms(mid, f["ln2"]) @ f["gate_up"].T).chunk(2, -1)
    return mid + (torch.nn.functional.silu(gate) * up) @ f["down"].T


@needs_kernel
@pytest.mark.parametrize("rows, heads, kv_heads, hd, length", [
    (1, 9, 3, 64, 1203),  # SmolVLM-256M's heads over a long prompt: the keys split into chunks
    (2, 12, 2, 128, 700),  # Qwen2-VL-2B's: six query heads per kv head (blocks of 4 and 2)
    (3, 4, 2, 24, 40),  # a head size that is no multiple of 16
])
def test_decode_layer_matches_a_float32_layer(rows, heads, kv_heads, hd, length):
    op = decode_kernels.kernels().decode_layer_bf16
    g = torch.Generator().manual_seed(heads * hd + length)
    bf = torch.bfloat16
    d, inter = heads * hd, 2 * heads * hd

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(bf)

    w = dict(ln1=rand(d, scale=0.5) + 1, qkv=rand((heads + 2 * kv_heads) * hd, d, scale=d ** -0.5 * 3),
             o=rand(d, d, scale=d ** -0.5), ln2=rand(d, scale=0.5) + 1, gate_up=rand(2 * inter, d, scale=d ** -0.5),
             down=rand(d, inter, scale=inter ** -0.5 * 0.3))
    x = rand(rows, d, scale=0.05)  # small residual: the output is mostly what the layer adds
    kc, vc = rand(rows, kv_heads, length + 5, hd), rand(rows, kv_heads, length + 5, hd)
    angles = torch.rand(rows, hd // 2, generator=g) * 6.28
    cos, sin = angles.cos().repeat(1, 2).to(bf), angles.sin().repeat(1, 2).to(bf)
    mask = torch.ones(rows, length + 1, dtype=torch.bool)
    mask[-1, : length * 2 // 3] = False  # left padding longer than a chunk of keys
    want = _layer_reference(x, w, kc, vc, length, cos, sin, mask, heads, kv_heads, 1e-6)
    unmasked = _layer_reference(x, w, kc, vc, length, cos, sin, None, heads, kv_heads, 1e-6)
    new_k = kc.clone()
    got = op(x, w["ln1"], w["qkv"], None, w["o"], None, w["ln2"], w["gate_up"], w["down"], kc, vc, length,
             cos, sin, mask, heads, kv_heads, 1e-6)
    assert got.shape == (rows, d) and got.dtype == bf
    error = (got.float() - want).abs().max()
    scale = want.abs().max()
    assert error <= 0.02 * scale, (error, scale)  # bf16 roundings along the layer, as transformers has them
    assert (unmasked - want)[-1].abs().max() > 10 * error  # the mask matters more than the rounding
    assert torch.equal(kc[:, :, :length], new_k[:, :, :length])  # only index `length` written
    assert not torch.equal(kc[:, :, length], new_k[:, :, length])


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
