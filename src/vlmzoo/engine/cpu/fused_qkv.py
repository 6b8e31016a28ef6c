"""q, k and v projections as one matrix multiply in ViT image towers running in bf16 on a CPU.

CLIP's and SigLIP's attention modules project the hidden states three times, with three
768x768 weights. One product with the three weights stacked (768 -> 2304) keeps the CPU's matrix
units busier than three small ones (the gain as measured: docs/performance-history.md). The
stacked weight is the storage; q_proj, k_proj and v_proj keep their weights as views into it,
so no memory is added and the modules still look as before.

Only the image tower is patched (it is where the time goes; text embeddings are cached per
label set), only for attention classes whose forward is known to be exactly "three projections,
scaled dot-product attention with ``self.scale``, out_proj", and never in float32 (exact mode).
"""

from __future__ import annotations

import types

# attention classes whose forward the fused one reproduces
KNOWN = {"CLIPAttention", "SiglipAttention"}


def _fused_forward(self, hidden_states, attention_mask=None, **kwargs):
    import torch.nn.functional as F

    if self.q_proj.weight.data_ptr() != self._qkv_weight.data_ptr():
        # the weights were replaced, cast or moved since fusing: the stacked copy is stale
        return type(self).forward(self, hidden_states, attention_mask, **kwargs)
    b, length, width = hidden_states.shape
    qkv = F.linear(hidden_states, self._qkv_weight, self._qkv_bias)
    q, k, v = qkv.view(b, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=self.scale)
    return self.out_proj(out.transpose(1, 2).reshape(b, length, width)), None


def fuse_qkv_projections(model) -> int:
    """Patch the image tower's attention modules (bf16, CPU) to project q, k, v in one product;
    returns how many changed. A second call changes nothing."""
    import torch

    tower = getattr(model, "vision_model", None)
    if tower is None:
        return 0
    fused = 0
    for module in tower.modules():
        if type(module).__name__ not in KNOWN or hasattr(module, "_qkv_weight"):
            continue
        q, k, v = module.q_proj, module.k_proj, module.v_proj
        if q.weight.dtype != torch.bfloat16 or q.weight.device.type != "cpu" or q.bias is None:
            continue
        with torch.no_grad():
            weight = torch.cat([q.weight, k.weight, v.weight])
            bias = torch.cat([q.bias, k.bias, v.bias])
        d = q.out_features
        for i, proj in enumerate((q, k, v)):  # views into the stacked tensors: no second copy
            proj.weight = torch.nn.Parameter(weight[i * d:(i + 1) * d], requires_grad=False)
            proj.bias = torch.nn.Parameter(bias[i * d:(i + 1) * d], requires_grad=False)
        module._qkv_weight, module._qkv_bias = weight, bias
        module.forward = types.MethodType(_fused_forward, module)
        fused += 1
    return fused
