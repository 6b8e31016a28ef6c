"""GIT (GenerativeImage2Text): one image encoder, one text decoder, no prompt format.

Captions start from [CLS] alone, as the official example calls ``generate(pixel_values)``.
For VQA the decoder continues ``[CLS] question`` (no [SEP]: the answer must follow the
question), so prompts are tokenised here rather than by the processor, which adds [SEP].
"""

from __future__ import annotations

from vlmzoo.families.prompted import PromptedModel


class GitModel(PromptedModel):
    family = "git"
    model_class = "GitForCausalLM"

    def encode(self, prompts, images):
        import torch

        tok = self.tokenizer
        rows = [[tok.cls_token_id] + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: the next token follows each prompt
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        pixels = self.processor.image_processor([im.image for per in images for im in per], return_tensors="pt")
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                "pixel_values": pixels["pixel_values"].to(self.device, self.dtype)}
