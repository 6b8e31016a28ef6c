"""CLIP (OpenAI): softmax over labels of 100 x cosine; texts padded to the batch's longest."""

from __future__ import annotations

from vlmzoo.families.dual_encoder import DualEncoderModel


class ClipModel(DualEncoderModel):
    family = "clip"
    score_kind = "softmax"
    # The CLIP paper's base prompt (section 3.1.4).
    default_template = "a photo of a {}."
