"""q/k/v in one product for the image towers of CLIP and SigLIP (engine/cpu/fused_qkv.py)."""

import pytest
import torch

import vlmzoo
from vlmzoo.engine.cpu.fused_qkv import fuse_qkv_projections


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_fused_attention_equals_the_modules_own(tiny, family):
    fast = vlmzoo.load(tiny[family], dtype="bfloat16")
    layers = fast.model.vision_model.encoder.layers
    assert fast.fused_qkv == len(layers)
    assert fuse_qkv_projections(fast.model) == 0  # a second call changes nothing
    attn = layers[0].self_attn
    # no second copy of the weights: q, k, v are views into the stacked tensor
    assert attn.k_proj.weight.data_ptr() == attn._qkv_weight[attn.k_proj.out_features:].data_ptr()
    x = torch.randn(3, 7, attn.q_proj.in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    mask = torch.zeros(3, 1, 7, 7, dtype=torch.bfloat16)
    mask[1, :, :, 5:] = float("-inf")  # a padded row, as a text tower would pass
    with torch.inference_mode():
        for m in (None, mask):
            got = attn(x, m)[0]
            want = type(attn).forward(attn, x, m)[0]
            # the same products in another order: bf16 rounding only
            assert torch.allclose(got.float(), want.float(), rtol=2e-2, atol=2e-2), (got - want).abs().max()
        assert not torch.allclose(attn(x, mask)[0][1].float(), attn(x, None)[0][1].float(), atol=5e-2)
        # weights replaced after fusing: the module's own forward runs, not the stale stack
        attn.v_proj.weight = torch.nn.Parameter(attn.v_proj.weight * 2)
        attn.q_proj.weight = torch.nn.Parameter(attn.q_proj.weight.clone())
        assert torch.equal(attn(x)[0], type(attn).forward(attn, x)[0])


def test_float32_is_left_exact(tiny):
    exact = vlmzoo.load(tiny["clip"], dtype="float32")
    assert exact.fused_qkv == 0
    assert not hasattr(exact.model.vision_model.encoder.layers[0].self_attn, "_qkv_weight")
