"""BLIP's image-text matching for many texts per image, on the checkpoint's own modules.

transformers' ``BlipForImageTextRetrieval.forward`` pairs row i of the pixels with row i of the
texts, which would run the vision tower once per (image, text) pair. Here each image goes through
the vision tower once; its patch embeddings are then expanded over a batch of texts for the
text encoder's cross-attention, and the ITM head reads each text's [CLS] state.
"""

from __future__ import annotations

import numpy as np


def itm_probabilities(model, pixel_values, input_ids, attention_mask, text_batch: int):
    """(images, texts) probability that each text describes each image (the ITM head's "match"
    class), and the head's logit margin (match minus no match), which orders pairs the same way
    without the float32 ties of a saturated softmax."""
    import torch

    scores = np.zeros((pixel_values.shape[0], input_ids.shape[0]), dtype=np.float32)
    margins = np.zeros_like(scores)
    image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    for i, emb in enumerate(image_embeds):
        for t0 in range(0, input_ids.shape[0], text_batch):
            ids, mask = input_ids[t0 : t0 + text_batch], attention_mask[t0 : t0 + text_batch]
            enc = emb.unsqueeze(0).expand(len(ids), -1, -1)
            hidden = model.text_encoder(
                input_ids=ids, attention_mask=mask, encoder_hidden_states=enc,
                encoder_attention_mask=torch.ones(enc.shape[:-1], dtype=torch.long, device=enc.device),
            ).last_hidden_state
            logits = model.itm_head(hidden[:, 0, :]).float()
            scores[i, t0 : t0 + len(ids)] = logits.softmax(dim=-1)[:, 1].cpu().numpy()
            margins[i, t0 : t0 + len(ids)] = (logits[:, 1] - logits[:, 0]).cpu().numpy()
    return scores, margins
