"""Image features in a transformers causal LM's prompt, for the families that own their vision
code (Molmo, MiniCPM-V, NVLM-D): the LLM stays transformers' own class (so ``generate``, the
lean decode loop and the CPU fast paths serve it), and the prefill puts each image token's
features at its position in the prompt's embeddings.

A family class mixes ``ImagePromptLM`` in before the transformers LM class and implements
``encode_images``. Its processor gives, besides ``input_ids`` and ``attention_mask``:

- ``pixel_values`` and whatever else ``encode_images`` reads (``image_masks``, ``image_sizes``);
- ``image_positions``: (B, images or crops, tokens each) the prompt position of each image
  token's features, negative where none goes (a dropped margin, batch padding).

``left_padded``, ``stacked`` and ``shifted`` build those batches from per-prompt lists;
``image_batch`` all of it for families whose images are fixed-size arrays (NVLM-D's tiles,
MiniGPT-4's images).

Features replace the placeholder tokens' embeddings (MiniCPM-V, NVLM-D), or are added to them
where the official model adds them (``adds_image_features``: Molmo).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Token rows as (B, T) ids padded on the left with ``pad_id``, the padding mask, and how far
    each row moved right (add it to that row's image positions)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask, [width - len(r) for r in rows]


def stacked(per_row: list[list[np.ndarray]], fill: float) -> torch.Tensor:
    """(B, n, *shape) from each row's arrays (images, crops or slices; their per-image data):
    every array padded at the end of each axis to the largest, and rows with fewer arrays
    completed with arrays all ``fill``."""
    arrays = [a for row in per_row for a in row]
    shape = tuple(max(a.shape[d] for a in arrays) for d in range(arrays[0].ndim))
    n = max(len(row) for row in per_row)
    out = np.full((len(per_row), n) + shape, fill, dtype=arrays[0].dtype)
    for i, row in enumerate(per_row):
        for j, a in enumerate(row):
            out[(i, j) + tuple(slice(0, d) for d in a.shape)] = a
    return torch.from_numpy(out)


def shifted(positions: list[np.ndarray], shift: int) -> list[np.ndarray]:
    """A row's image positions moved right by its left padding (negative ones stay)."""
    return [np.where(p >= 0, p + shift, p) for p in positions]


def image_batch(ids: list[list[int]], pixels: list[list[np.ndarray]], positions: list[list[np.ndarray]],
                pad_id: int):
    """The processor output for prompts whose images (or tiles) are whole arrays of one shape:
    left-padded ids and mask, and when there are images, their pixels (missing ones zero), a mask
    saying which are real, and their positions moved by each row's padding."""
    from transformers import BatchFeature

    tokens, mask, shifts = left_padded(ids, pad_id)
    out = {"input_ids": tokens, "attention_mask": mask}
    if any(pixels):
        out.update(pixel_values=stacked(pixels, 0.0),
                   image_masks=stacked([[np.ones((), bool)] * len(p) for p in pixels], False),
                   image_positions=stacked([shifted(p, k) for p, k in zip(positions, shifts)], -1))
    return BatchFeature(out)


def place_image_features(embeds: torch.Tensor, features: torch.Tensor, positions: torch.Tensor,
                         add: bool) -> torch.Tensor:
    """``embeds`` (B, T, D) with ``features`` (B, n, tokens, D) put at ``positions`` (B, n, tokens)."""
    b = embeds.shape[0]
    positions = positions.reshape(b, -1)
    features = features.reshape(b, -1, features.shape[-1]).to(embeds.dtype)
    valid = positions >= 0
    rows = torch.arange(b, device=embeds.device)[:, None].expand_as(positions)
    embeds = embeds.clone()
    if add:
        embeds[rows[valid], positions[valid]] += features[valid]
    else:
        embeds[rows[valid], positions[valid]] = features[valid]
    return embeds


class ImagePromptLM:
    adds_image_features: ClassVar[bool] = False

    def encode_images(self, pixel_values, image_masks=None, image_sizes=None) -> torch.Tensor:  # pragma: no cover
        """(B, n, tokens, D) features for the batch's images (or crops)."""
        raise NotImplementedError

    # position_ids and attention_mask are named so that generate derives positions from the
    # mask (left padding), as the official implementations do
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                pixel_values=None, image_masks=None, image_sizes=None, image_positions=None, **kwargs):
        if pixel_values is not None and inputs_embeds is None:  # the prefill: images go in
            embeds = self.get_input_embeddings()(input_ids)
            features = self.encode_images(pixel_values.to(embeds.dtype), image_masks=image_masks,
                                          image_sizes=image_sizes)
            inputs_embeds = place_image_features(embeds, features, image_positions, self.adds_image_features)
            input_ids = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               inputs_embeds=inputs_embeds, **kwargs)
