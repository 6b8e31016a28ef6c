"""A lean decode loop for Llama-style text decoders (Llama, Mistral, Qwen2, Qwen2-VL's text model).

The prompt goes through ``model.generate`` for exactly one new token, so the vision tower,
the family's position scheme (Qwen2-VL's M-RoPE) and the first token are generate's own.
Every later token comes from ``LeanDecoder.step``: the same weights and the same arithmetic
as transformers' layers, minus what a decode step does not need. Why it is faster on a CPU:
- q/k/v and gate/up are each one matrix product (their weights become views of one fused
  tensor: no extra memory), so a layer makes 4 products instead of 7;
- in bf16 on CPUs with AVX512-BF16, up to eight rows go through vlmzoo's kernels
  (engine/cpu/decode_kernels.py): each layer is one call, and its matrix products stream weights
  near memory bandwidth where torch's ``mv`` and one-row ``linear`` do not; elsewhere a single
  row goes through ``torch.mv``, faster than ``linear`` (docs/performance.md);
- the KV cache is preallocated once per batch; no per-step mask or cache objects are built.
Rows that finish (EOS, a stop string, their token budget) leave the batch at once.

Greedy tokens equal ``generate``'s (tested per family); anything this loop does not do
(beam search, repetition penalty) goes through ``generate`` instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vlmzoo.engine.cpu.decode_kernels import kernels
from vlmzoo.engine.generation import GenerationOptions, Timing, pick_next

# Text decoders whose layers are pre-norm RMSNorm -> rotary GQA attention -> SwiGLU, with
# nothing else in the residual stream (no sliding window, soft-capping or qk-norm).
LEAN_TEXT_MODELS = {"llama", "mistral", "qwen2", "qwen2_vl_text", "qwen2_5_vl_text"}


# Up to this many rows the AVX512-BF16 kernel beats oneDNN's linear; more rows go to linear
# (the crossover as measured: docs/performance-history.md, "Component figures").
KERNEL_MAX_ROWS = 8


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gemv=None) -> torch.Tensor:
    rows = x.numel() // weight.shape[1]
    if gemv is not None and rows <= KERNEL_MAX_ROWS:
        return gemv(x, weight, bias)
    if rows == 1:  # matrix-vector product
        y = torch.mv(weight, x.reshape(-1))
        if bias is not None:
            y = y + bias
        return y.view(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight, bias)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # transformers' Llama/Qwen2 RMSNorm: statistics in float32, scaled in the model dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _fuse(linears) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several Linear layers; the layers keep views into it."""
    weight = torch.cat([lin.weight.data for lin in linears])
    has_bias = [lin.bias is not None for lin in linears]
    bias = None
    if any(has_bias):
        bias = torch.cat([lin.bias.data if lin.bias is not None else weight.new_zeros(lin.out_features)
                          for lin in linears])
    start = 0
    for lin in linears:
        end = start + lin.out_features
        lin.weight = torch.nn.Parameter(weight[start:end], requires_grad=False)
        if lin.bias is not None:
            lin.bias = torch.nn.Parameter(bias[start:end], requires_grad=False)
        start = end
    return weight, bias


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    ln2: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


class LeanDecoder:
    """Decode steps over a transformers Llama-style decoder's own weights."""

    def __init__(self, model):
        decoder = model.get_decoder()
        cfg = model.config.get_text_config()
        self.embed = decoder.embed_tokens
        self.rotary = decoder.rotary_emb
        self.norm, self.eps = decoder.norm.weight, decoder.norm.variance_epsilon
        self.lm_head = model.lm_head.weight
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers = []
        for layer in decoder.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv, qkv_bias = _fuse([att.q_proj, att.k_proj, att.v_proj])
            gate_up, _ = _fuse([mlp.gate_proj, mlp.up_proj])
            self.layers.append(_Layer(layer.input_layernorm.weight, qkv, qkv_bias, att.o_proj.weight,
                                      att.o_proj.bias, layer.post_attention_layernorm.weight, gate_up,
                                      mlp.down_proj.weight))
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        # bf16 on a CPU: the AVX512-BF16 kernels where they can be built (else None)
        on_cpu_bf16 = self.lm_head.dtype == torch.bfloat16 and self.lm_head.device.type == "cpu"
        self.kernels = kernels() if on_cpu_bf16 else None

    @staticmethod
    def supports(model) -> bool:
        """True when the model's text decoder is one this loop reproduces exactly."""
        try:
            cfg = model.config.get_text_config()
            decoder = model.get_decoder()
            layer = decoder.layers[0]
        except (AttributeError, IndexError, TypeError):
            return False
        if getattr(cfg, "model_type", None) not in LEAN_TEXT_MODELS or not hasattr(model, "lm_head"):
            return False
        if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "mlp_bias", False):
            return False
        if getattr(cfg, "use_sliding_window", False) or getattr(cfg, "pretraining_tp", 1) != 1:
            return False
        if cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None) is not None:
            return False
        if getattr(model.config, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
            return False
        needed = ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm")
        return all(hasattr(layer, n) for n in needed) and hasattr(decoder, "rotary_emb")

    # -- the KV cache ----------------------------------------------------------------------------

    def start(self, cache, extra: int) -> int:
        """Copy a transformers cache into preallocated tensors with room for ``extra`` tokens."""
        self.keys, self.values = [], []
        for layer in cache.layers:
            k, v = layer.keys, layer.values
            b, h, n, d = k.shape
            kc, vc = k.new_empty(b, h, n + extra, d), v.new_empty(b, h, n + extra, d)
            kc[:, :, :n], vc[:, :, :n] = k, v
            self.keys.append(kc)
            self.values.append(vc)
        return n

    def keep(self, rows: torch.Tensor) -> None:
        """Drop finished rows from the cache."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]

    # -- one step --------------------------------------------------------------------------------

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, length: int, mask: torch.Tensor | None):
        """Logits for the next token of each row.

        ``tokens`` and ``positions``: (B,) the newest token and its rotary position; it is
        written at cache index ``length``. ``mask``: (B, length + 1) bool of cache entries each
        row may attend to, or None when every row may attend to all of them.
        """
        b = tokens.shape[0]
        hd, nh, nkv = self.head_dim, self.heads, self.kv_heads
        x = self.embed(tokens[:, None])
        cos, sin = self.rotary(x, positions[:, None])
        g = self.kernels.gemv_bf16 if self.kernels is not None else None
        if self.kernels is not None and b <= KERNEL_MAX_ROWS:  # one op per layer
            x, layer_op = x[:, 0].contiguous(), self.kernels.decode_layer_bf16
            cos, sin = cos[:, 0].contiguous(), sin[:, 0].contiguous()
            for layer, kc, vc in zip(self.layers, self.keys, self.values):
                x = layer_op(x, layer.ln1, layer.qkv, layer.qkv_bias, layer.o, layer.o_bias, layer.ln2,
                             layer.gate_up, layer.down, kc, vc, length, cos, sin, mask, nh, nkv, self.eps)
            return _linear(_rms_norm(x, self.norm, self.eps), self.lm_head, None, g)
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, 1, D): broadcast over heads
        attn_mask = mask[:, None, None, :] if mask is not None else None
        for layer, kc, vc in zip(self.layers, self.keys, self.values):
            h = _rms_norm(x, layer.ln1, self.eps)
            q, k, v = _linear(h, layer.qkv, layer.qkv_bias, g).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
            q = q.view(b, 1, nh, hd).transpose(1, 2)
            k = k.view(b, 1, nkv, hd).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            kc[:, :, length] = (k * cos + _rotate_half(k) * sin)[:, :, 0]
            vc[:, :, length] = v.view(b, nkv, hd)
            a = F.scaled_dot_product_attention(q, kc[:, :, : length + 1], vc[:, :, : length + 1],
                                               attn_mask=attn_mask, enable_gqa=nkv != nh)
            x = x + _linear(a.transpose(1, 2).reshape(b, 1, nh * hd), layer.o, layer.o_bias, g)
            gate, up = _linear(_rms_norm(x, layer.ln2, self.eps), layer.gate_up, None, g).chunk(2, dim=-1)
            x = x + _linear(F.silu(gate) * up, layer.down, None, g)
        x = _rms_norm(x, self.norm, self.eps)
        return _linear(x[:, 0], self.lm_head, None, g)


def lean_generate(model, lean: LeanDecoder, inputs, opts: GenerationOptions, *, eos_ids: set[int], pad_id: int,
                  position_delta, stop_hit=None, on_tokens=None):
    """Generate new tokens for a left-padded batch.

    Returns (new ids (B, T) padded with ``pad_id``, tokens per row (B,), Timing): the counts
    are exact even where the pad token is also an end-of-sequence token.

    ``position_delta(model, inputs)`` -> (B,) offset so that a token at cache index i sits at
    rotary position i + delta (the family's scheme, as generate computes it).
    ``stop_hit(row_ids)`` -> True when a row's text so far contains a stop string.
    """
    timing = Timing()
    first_kw = opts.generate_kwargs()
    first_kw.update(max_new_tokens=1, return_dict_in_generate=True)
    first_kw.pop("min_new_tokens", None)
    if opts.min_new_tokens:
        first_kw["min_new_tokens"] = 1
    generator = torch.Generator().manual_seed(opts.seed) if opts.seed is not None else None
    opts.check_cancelled()
    with torch.random.fork_rng(devices=[]):
        if opts.seed is not None:
            torch.manual_seed(opts.seed)
        out = model.generate(**inputs, **first_kw)
    timing.first = time.perf_counter()
    prompt_len = inputs["input_ids"].shape[1]
    first = out.sequences[:, -1]
    batch = first.shape[0]
    new = torch.full((batch, opts.max_new_tokens), pad_id, dtype=torch.long)
    new[:, 0] = first
    counts = torch.ones(batch, dtype=torch.long)
    if on_tokens is not None:
        on_tokens([int(first[0])])
    lean.start(out.cache, opts.max_new_tokens)
    delta = position_delta(model, inputs).reshape(-1).to(torch.long)
    mask = inputs.get("attention_mask")
    mask = None if mask is None or bool(mask.all()) else torch.cat(
        [mask.bool(), torch.ones(batch, opts.max_new_tokens, dtype=torch.bool)], dim=1)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long)
    alive = torch.arange(batch)  # original row of each row still decoding
    token = first
    for step in range(1, opts.max_new_tokens + 1):
        done = _finished(new, alive, token, step, opts, eos, stop_hit)
        if done.all():
            break
        if done.any():
            keep = (~done).nonzero()[:, 0]
            alive, token, delta = alive[keep], token[keep], delta[keep]
            mask = mask[keep] if mask is not None else None
            lean.keep(keep)
        if step == opts.max_new_tokens:
            break
        opts.check_cancelled()
        index = prompt_len + step - 1  # cache index of the token being fed
        logits = lean.step(token, index + delta, index, mask[:, : index + 1] if mask is not None else None)
        if opts.min_new_tokens and step < opts.min_new_tokens:
            logits[:, eos] = float("-inf")
        token = pick_next(logits, opts, generator)
        new[alive, step] = token
        counts[alive] += 1
        if on_tokens is not None:
            on_tokens([int(token[0])])
    timing.end = time.perf_counter()
    return new[:, : int(counts.max())], counts, timing


def _finished(new, alive, token, step, opts, eos, stop_hit) -> torch.Tensor:
    """Which live rows are done after ``step`` tokens: EOS, a stop string, or the budget."""
    done = torch.isin(token, eos)
    if opts.min_new_tokens and step < opts.min_new_tokens:
        done[:] = False
    if step >= opts.max_new_tokens:
        done[:] = True
    if stop_hit is not None:
        for i, row in enumerate(alive.tolist()):
            if not done[i] and stop_hit(new[row, :step].tolist()):
                done[i] = True
    return done
