"""moondream2's forward passes and decoding loops, as its official code runs them.

- ``encode_image``: crops -> vision tower -> 729 image tokens; BOS and those tokens go through
  the text model once (the 730-token prefix, attending both ways), leaving its keys and values
  in a cache that every prompt about the image continues from.
- ``generate_text``: the prompt is prefilled, then one token at a time until the end token or
  the budget. After the first token the "answer" token is masked out, as the official loop does.
- ``generate_regions``: detection and pointing go through the region head instead of the
  vocabulary: from the hidden state a coordinate's 1024 bins are read (x, then y, and for a box
  its width and height from 1024 log-scale bins each), and each value is fed back as its
  encoding; after each object the vocabulary says whether another follows (anything but the end
  token) or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from vlmzoo.engine.generation import GenerationOptions, Timing, pick_next
from vlmzoo.families.moondream import processing
from vlmzoo.families.moondream.modeling import KVCache, Moondream


@dataclass
class Encoded:
    """An image's prefix in the text model: its cache (room for ``room`` more positions) and length."""

    cache: KVCache
    pos: int


def image_tokens(model: Moondream, image) -> torch.Tensor:
    """(729, dim) image tokens of a PIL image."""
    c = model.config.vision
    param = model.vision.patch_emb.weight
    if not c.local_crops:  # moondream1: the image squeezed into one crop
        pixels = processing.normalise(processing.single_crop(image, c), by_reciprocal=True)
        return model.vision.project(model.vision.encode(pixels.to(param.device, param.dtype))[0])
    crops, tiling = processing.overlap_crops(image, c)
    features = model.vision.encode(processing.normalise(crops).to(param.device, param.dtype))
    local = features[1:].reshape(-1, c.grid, c.grid, c.enc_dim)
    stitched = processing.stitch(local, tiling, c.overlap_margin)
    return model.vision.project(features[0], stitched)


def encode_image(model: Moondream, image, room: int, before: list[int] = ()) -> Encoded:
    """The image's prefix (BOS, the ids ``before`` it, its tokens) in a cache with ``room``
    positions to spare after it."""
    text = model.text
    tokens = image_tokens(model, image)
    ids = torch.tensor([[model.config.tokenizer.bos_id, *before]], device=tokens.device)
    prefix = torch.cat([text.embed(ids), tokens[None]], dim=1)
    length = prefix.shape[1]
    cache = KVCache(text, min(length + room, model.config.text.max_context), tokens.device, tokens.dtype)
    text(prefix, cache, 0, prefix=model.prefix_len)
    return Encoded(cache, length)


def _prefill(model: Moondream, encoded: Encoded, ids: list[int]) -> torch.Tensor:
    """The prompt's hidden states after the image; the cache grows by its length."""
    device = encoded.cache.k[0].device
    hidden = model.text(model.text.embed(torch.tensor([ids], device=device)), encoded.cache, encoded.pos,
                        prefix=model.prefix_len)
    encoded.pos += len(ids)
    return hidden[:, -1:]


def _step(model: Moondream, encoded: Encoded, embedding: torch.Tensor) -> torch.Tensor:
    """One input embedding (1, 1, dim) on; its hidden state (1, 1, dim)."""
    hidden = model.text(embedding, encoded.cache, encoded.pos, prefix=model.prefix_len)
    encoded.pos += 1
    return hidden


def generate_text(model: Moondream, encoded: Encoded, ids: list[int], opts: GenerationOptions,
                  generator: torch.Generator | None, on_tokens=None, stop_hit=None, *,
                  stop_ids: set[int] | None = None, keep_stop: bool = False,
                  masked_after_first: int | None = -1) -> tuple[list[int], str, Timing]:
    """New token ids after prompt ``ids``, why generation ended ("stop" or "length"), and timing.

    Stops at any of ``stop_ids`` (default: the end token), kept in the output when ``keep_stop``
    (moondream1 keeps its ``<END>`` pieces); ``masked_after_first`` (default: the "answer"
    token) can never follow the first token."""
    t = model.config.tokenizer
    stop_ids = {t.eos_id} if stop_ids is None else stop_ids
    masked = t.answer_id if masked_after_first == -1 else masked_after_first
    timing = Timing()
    hidden = _prefill(model, encoded, ids)
    token = int(pick_next(model.text.logits(hidden[:, -1]), opts, generator)[0])
    out: list[int] = []
    while True:
        if token in stop_ids and not keep_stop:
            reason = "stop"
            break
        out.append(token)
        if timing.first is None:
            timing.first = time.perf_counter()
        if on_tokens is not None:
            on_tokens([token])
        if token in stop_ids or (stop_hit is not None and stop_hit(out)):
            reason = "stop"
            break
        if len(out) == opts.max_new_tokens:
            reason = "length"
            break
        opts.check_cancelled()
        hidden = _step(model, encoded, model.text.embed(torch.tensor([[token]], device=hidden.device)))
        logits = model.text.logits(hidden[:, -1])
        if masked is not None:
            logits[:, masked] = float("-inf")  # moondream2's loop never lets it end on "answer"
        token = int(pick_next(logits, opts, generator)[0])
    timing.end = time.perf_counter()
    return out, reason, timing


def generate_regions(model: Moondream, encoded: Encoded, ids: list[int], *, boxes: bool, max_objects: int,
                     opts: GenerationOptions) -> list[tuple[float, ...]]:
    """Objects after prompt ``ids``: (x_min, y_min, x_max, y_max) boxes or (x, y) points, as
    fractions of the image side (greedy throughout, as the official loop is)."""
    t, region = model.config.tokenizer, model.region
    hidden = _prefill(model, encoded, ids)
    token = int(model.text.logits(hidden[:, -1]).argmax(-1)[0])
    out: list[tuple[float, ...]] = []
    while token != t.eos_id and len(out) < max_objects:
        opts.check_cancelled()
        x = _coordinate(region, hidden)
        hidden = _step(model, encoded, _as_input(region.encode_coordinate(x.to(hidden.dtype).view(1, 1))))
        y = _coordinate(region, hidden)
        embedding = _as_input(region.encode_coordinate(y.to(hidden.dtype).view(1, 1)))
        if boxes:
            hidden = _step(model, encoded, embedding)
            w, h = processing.sizes_from_bins(region.decode_size(hidden[0, -1]).argmax(-1), model.config.region)
            embedding = _as_input(region.encode_size(torch.stack([w, h]).to(hidden.dtype)))
            out.append((float(x) - float(w) / 2, float(y) - float(h) / 2, float(x) + float(w) / 2,
                        float(y) + float(h) / 2))
        else:
            out.append((float(x), float(y)))
        hidden = _step(model, encoded, embedding)
        token = int(model.text.logits(hidden[:, -1]).argmax(-1)[0])
    return out


def _coordinate(region, hidden: torch.Tensor) -> torch.Tensor:
    """A coordinate in 0..1 (float32) from the hidden state's bins: bin / bins, as the official
    code reads it."""
    logits = region.decode_coordinate(hidden[0, -1])
    return logits.argmax(-1).float() / logits.shape[-1]


def _as_input(embedding: torch.Tensor) -> torch.Tensor:
    """An embedding (..., dim) as one input position (1, 1, dim)."""
    return embedding.reshape(1, 1, -1)
