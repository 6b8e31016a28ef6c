"""BLIP's input and output formats: the caption prompt, question batches, decoded rows.

- A caption prompt ("a picture of") starts the decoder: its tokens with the final [SEP] dropped,
  so the caption continues the prompt; the decoded caption includes the prompt, as BLIP's own
  decode does. Without a prompt the decoder starts from [DEC] alone.
- BLIP's VQA answer decoder attends to every question position with no padding mask, so
  questions are batched only with others of equal token length: padding would change answers.
- Every generated row echoes the decoder's start; counting new tokens skips it.
"""

from __future__ import annotations

from itertools import groupby

from vlmzoo.engine.batching import chunks
from vlmzoo.engine.generation import new_token_count, trim_stop
from vlmzoo.tasks import Answer


def pixels(processor, images, device, dtype):
    """Pixel values of taken-in images, on the model's device and dtype."""
    px = processor.image_processor([im.image for im in images], return_tensors="pt")
    return px["pixel_values"].to(device, dtype)


def caption_start(tokenizer, prompt: str | None, n: int, device) -> tuple[dict, int]:
    """Decoder inputs for ``n`` captions continuing ``prompt``, and how many tokens each row
    starts with (the decoder start, or the prompt without its final [SEP])."""
    if not prompt:
        return {}, 1
    text = tokenizer([prompt] * n, return_tensors="pt")
    ids = text["input_ids"].to(device)
    return {"input_ids": ids, "attention_mask": text["attention_mask"].to(device)}, ids.shape[1] - 1


def equal_length_batches(token_ids: list[list[int]], batch_size: int):
    """Indices of the questions, in batches of equal token length (shortest first)."""
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    for _, same_len in groupby(order, key=lambda i: len(token_ids[i])):
        yield from chunks(list(same_len), batch_size)


def answers(out, start: int, stop, timing, *, questions, images, prompt_tokens, decode, pad_id, sep_id):
    """An Answer per generated row: text, new-token count, why it ended, and the batch's timing."""
    texts = decode(out, skip_special_tokens=True)
    n = len(texts)
    result = []
    for seq, text, question, image, prompt_len in zip(out, texts, questions, images, prompt_tokens, strict=True):
        count, reason = new_token_count(seq[start:], pad_id, sep_id)
        text, hit = trim_stop(text.strip(), stop)
        result.append(Answer(text=text.strip(), question=question, images=(image,), num_tokens=count,
                             prompt_tokens=prompt_len, seconds=timing.end - timing.start, ttft=timing.ttft(),
                             tokens_per_s=timing.decode_tokens_per_s(count) * n,
                             finish_reason="stop" if hit else reason))
    return result
