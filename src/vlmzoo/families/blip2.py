"""BLIP-2: a frozen image encoder, a Q-Former, and a frozen OPT or Flan-T5 language model.

Prompts follow the BLIP-2 paper's zero-shot VQA setup: ``Question: {} Answer:`` for OPT and
``Question: {} Short answer:`` for Flan-T5. Captions need no prompt. OPT checkpoints return
the prompt with the answer; T5 ones return only the decoder's tokens.
"""

from __future__ import annotations

from vlmzoo.families.prompted import PromptedModel


class Blip2Model(PromptedModel):
    family = "blip2"
    model_class = "Blip2ForConditionalGeneration"

    def __init__(self, *, model, **kwargs):
        decoder_only = model.config.use_decoder_only_language_model
        self.echoes_prompt = decoder_only  # must be known before the base sets padding
        self.question_format = "Question: {question} Answer:" if decoder_only else "Question: {question} Short answer:"
        super().__init__(model=model, **kwargs)
