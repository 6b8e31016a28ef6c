"""SigLIP (Google): sigmoid scores, texts padded to max_length.

SigLIP was trained with every text padded to 64 tokens, and its text tower pools the last
position, so padding to the batch's longest would silently change the embedding. Texts are
also canonicalised (lower-cased, punctuation removed) by SiglipTokenizer itself; we never
canonicalise twice. Scores are independent per label (sigmoid), not a softmax across labels;
in float32 the sigmoid is exactly 1.0 above a logit of about 16.6, so classify ranks labels by
logit (dual_encoder.rank_labels) and reports the sigmoid beside each.
"""

from __future__ import annotations

from typing import Sequence

from vlmzoo.families.dual_encoder import DualEncoderModel


class SiglipModel(DualEncoderModel):
    family = "siglip"
    score_kind = "sigmoid"
    # The prompt the SigLIP authors' demo and transformers' docs use.
    default_template = "This is a photo of {}."

    def tokenize(self, texts: Sequence[str]):
        tok = self.processor.tokenizer
        max_length = self.model.config.text_config.max_position_embeddings
        return tok(list(texts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")

    def scores_from_logits(self, logits):
        return logits.sigmoid()

    def logit_bias(self):
        return self.model.logit_bias.detach().float().cpu()

    def pair_scores(self, image_feats, text_feats):
        logits = self.logits(image_feats, text_feats)
        return logits.sigmoid(), "sigmoid", logits
