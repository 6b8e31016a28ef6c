"""BLIP-2: a frozen image encoder, a Q-Former, and a frozen OPT or Flan-T5 language model.

Prompts follow the BLIP-2 paper's zero-shot VQA setup: ``Question: {} Answer:`` for OPT and
``Question: {} Short answer:`` for Flan-T5. Captions need no prompt. OPT checkpoints return
the prompt with the answer; T5 ones return only the decoder's tokens.

The image-text matching checkpoint (blip2-itm-vit-g) has no language model: it scores
(image, text) pairs with the Q-Former's ITM head, averaged over the query tokens.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from vlmzoo.engine.batching import chunks
from vlmzoo.families.base import VLModel, as_text_list
from vlmzoo.families.hf import read_config
from vlmzoo.families.prompted import PromptedModel
from vlmzoo.tasks import MatchScores

ITM_ARCHITECTURE = "Blip2ForImageTextRetrieval"


class Blip2Model(PromptedModel):
    family = "blip2"
    model_class = "Blip2ForConditionalGeneration"

    def __init__(self, *, model, **kwargs):
        decoder_only = model.config.use_decoder_only_language_model
        self.echoes_prompt = decoder_only  # must be known before the base sets padding
        self.question_format = "Question: {question} Answer:" if decoder_only else "Question: {question} Short answer:"
        super().__init__(model=model, **kwargs)

    @classmethod
    def class_for(cls, path):
        return Blip2MatchModel if ITM_ARCHITECTURE in (read_config(path).get("architectures") or []) else cls


class Blip2MatchModel(VLModel):
    family = "blip2"
    tasks_served: ClassVar[tuple[str, ...]] = ("match", "retrieve")
    default_batch_size: ClassVar[int] = 16

    model_class: ClassVar[str] = ITM_ARCHITECTURE

    def match(self, images, texts) -> MatchScores:
        """ITM probability that each text describes each image: scores[i, j].

        The model's forward pairs row i of the pixels with row i of the texts, so each image is
        repeated for a batch of texts (its vision pass is repeated with it).
        """
        import torch

        self.require("match")
        texts = as_text_list(texts, "texts")
        loaded = self.take_images(images)
        tokens = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        scores = np.zeros((len(loaded), len(texts)), dtype=np.float32)
        margins = np.zeros_like(scores)  # match minus no-match logit: orders pairs without softmax ties
        with torch.inference_mode():
            for i, im in enumerate(loaded):
                pixels = self.processor.image_processor([im.image], return_tensors="pt")["pixel_values"]
                pixels = pixels.to(self.device, self.dtype)
                for idx in chunks(range(len(texts)), self.batch_size):
                    sl = slice(idx[0], idx[-1] + 1)
                    out = self.model(input_ids=tokens["input_ids"][sl].to(self.device),
                                     attention_mask=tokens["attention_mask"][sl].to(self.device),
                                     pixel_values=pixels.expand(len(idx), -1, -1, -1),
                                     use_image_text_matching_head=True)
                    logits = out.logits_per_image.float()
                    scores[i, sl] = logits.softmax(dim=-1)[:, 1].cpu().numpy()
                    margins[i, sl] = (logits[:, 1] - logits[:, 0]).cpu().numpy()
        return MatchScores(scores, tuple(im.name for im in loaded), tuple(texts), "itm", margins)
