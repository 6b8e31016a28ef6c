"""Linear + GELU in one oneDNN call for transformer MLPs running in bf16 on a CPU.

On the CPUs vlmzoo measures, a separate bf16 GELU (tanh form) over a ViT MLP's hidden states
costs almost as much as the matrix multiply before it: it is a memory pass over the widest
tensor of the layer. oneDNN applies the activation while the GEMM result is still in cache
(``torch.ops.mkldnn._linear_pointwise``, the op torch's own inductor uses for this fusion on
CPU). SigLIP's and CLIP's image towers run measurably faster (docs/performance-history.md);
embeddings keep cosine >= 0.9999 with the unfused bf16 model (tests/test_preprocess.py).

Only exactly-known activations are fused: GELU with the tanh approximation, GELU with erf, and
CLIP's quick_gelu, x * sigmoid(1.702 x). oneDNN has no quick_gelu, but it has silu, and
quick_gelu(h) = silu(1.702 h) / 1.702: so fc1's weight and bias are stored multiplied by 1.702
and fc2's weight divided by it (an exact identity, rounded once to bf16), and fc1 runs fused with
silu. Those two weights of a fused CLIP model therefore differ from the checkpoint's by that
factor. Float32 ("exact mode") is never touched.
"""

from __future__ import annotations

import functools
import types


QUICK_GELU_SCALE = 1.702


def _algorithm(activation) -> str | None:
    """How to fuse the activation: oneDNN's name of its GELU variant ("tanh", "none"), "quick"
    for quick_gelu, or None if it is not one we fuse."""
    from torch import nn
    from transformers.activations import GELUActivation, GELUTanh, QuickGELUActivation

    act = getattr(activation, "act", None)
    if isinstance(activation, GELUTanh) and isinstance(act, functools.partial) \
            and act.keywords == {"approximate": "tanh"}:
        return "tanh"
    if isinstance(activation, GELUActivation) and act is nn.functional.gelu:
        return "none"  # erf
    if isinstance(activation, nn.GELU):
        return activation.approximate  # "none" or "tanh"
    if type(activation) is QuickGELUActivation:
        return "quick"
    return None


def _fused_forward(self, hidden):
    import torch

    shape = hidden.shape
    flat = hidden.reshape(-1, shape[-1])
    if self._gelu_algorithm == "quick":  # weights pre-scaled, see the module docstring
        inner = torch.ops.mkldnn._linear_pointwise(flat, self.fc1.weight, self.fc1.bias, "swish", [], "")
    else:
        inner = torch.ops.mkldnn._linear_pointwise(flat, self.fc1.weight, self.fc1.bias, "gelu", [],
                                                   self._gelu_algorithm)
    return self.fc2(inner.reshape(*shape[:-1], inner.shape[-1]))


@functools.cache
def _onednn_runs_bf16_fusion() -> bool:
    """Whether this CPU's oneDNN can run a bf16 linear fused with an activation. It cannot without
    AVX-512 (an AVX2-only AMD EPYC: "could not create a primitive descriptor"), where torch's
    unfused bf16 ops still work, so one tiny call decides, once per process."""
    import torch

    x = torch.ones(2, 16, dtype=torch.bfloat16)
    w = torch.ones(16, 16, dtype=torch.bfloat16)
    try:
        torch.ops.mkldnn._linear_pointwise(x, w, None, "gelu", [], "tanh")
        torch.ops.mkldnn._linear_pointwise(x, w, None, "swish", [], "")
    except RuntimeError:
        return False
    return True


def fuse_mlp_activations(model) -> int:
    """Patch every ``fc1 -> activation_fn -> fc2`` MLP whose activation is a GELU (or quick_gelu)
    to run fc1 and the activation as one oneDNN op. Only for bf16 weights on CPU; returns how many MLPs changed."""
    import torch

    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise") \
            or not _onednn_runs_bf16_fusion():
        return 0
    fused = 0
    for module in model.modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        if not isinstance(fc1, torch.nn.Linear) or not isinstance(fc2, torch.nn.Linear) \
                or hasattr(module, "_gelu_algorithm"):  # already fused: never scale weights twice
            continue
        algorithm = _algorithm(getattr(module, "activation_fn", None))
        if algorithm is None or fc1.weight.dtype != torch.bfloat16 or fc1.weight.device.type != "cpu":
            continue
        if algorithm == "quick":
            with torch.no_grad():
                fc1.weight.mul_(QUICK_GELU_SCALE)
                if fc1.bias is not None:
                    fc1.bias.mul_(QUICK_GELU_SCALE)
                fc2.weight.div_(QUICK_GELU_SCALE)
        module._gelu_algorithm = algorithm
        module.forward = types.MethodType(_fused_forward, module)
        fused += 1
    return fused
