"""InstructBLIP: BLIP-2 with an instruction-aware Q-Former; the prompt is the instruction itself.

The processor tokenises the prompt twice, for the language model and for the Q-Former; the
Q-Former was trained on right-padded text, so its copy is re-tokenised with right padding
when the language model's is padded on the left.
"""

from __future__ import annotations

from vlmzoo.families.prompted import PromptedModel


class InstructBlipModel(PromptedModel):
    family = "instructblip"
    model_class = "InstructBlipForConditionalGeneration"
    # the InstructBLIP paper's captioning instruction
    caption_text = "A short image caption:"

    def encode(self, prompts, images):
        inputs = super().encode(prompts, images)
        qformer = self.processor.qformer_tokenizer(prompts, padding=True, padding_side="right", return_tensors="pt")
        inputs["qformer_input_ids"] = qformer["input_ids"].to(self.device)
        inputs["qformer_attention_mask"] = qformer["attention_mask"].to(self.device)
        return inputs
