"""moondream1 (vikhyatk/moondream1, revision f6e9da68; code github.com/vikhyat/moondream at 7901a2a,
2024-02-06): the original moondream, on the same modules as moondream2's port.

Its parts are moondream2's with other names and three differences (``VisionConfig``): exact GELU
and LayerNorm eps 1e-6 in the SigLIP tower, and one 378 x 378 crop (the image squeezed to it,
bicubic) whose 729 features alone go through the projection. The text model is the same
Phi-1.5 block, attending causally throughout (no prefix). Prompts are text:
``<image>`` + the image + ``</image>\\n\\n{history}Question: {q}\\n\\nAnswer: ``, the two pieces
tokenized apart; generation stops at the first of the tokens of ``<END>``, and the answer loses a
trailing ``END`` and then a trailing ``<``, as the official ``answer_question`` does. moondream1
has no caption method: ``caption`` asks "Describe this image." (or the given instruction).

The 2024-01-30 layout (``vision_encoder.model.*``, ``text_model.model.*``) and the TorchScript
release before it are other files; they are refused by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families import hf
from vlmzoo.families.checkpoints import load_official
from vlmzoo.families.moondream import MoondreamModel
from vlmzoo.families.moondream.modeling import (
    Moondream,
    MoondreamConfig,
    TextConfig,
    TokenizerConfig,
    VisionConfig,
)
from vlmzoo.tasks import Answer, AskRequest, Caption

ARCHITECTURE = "Moondream"  # config.json's, beside model_type "moondream1"
END_TEXT = "<END>"
MAX_NEW_TOKENS = 256  # answer_question's
CAPTION_QUESTION = "Describe this image."
V = r"vision_encoder\.encoder\.model\.visual\."
T = r"text_model\.transformer\.h\.(\d+)\."
TABLE: list = [
    (V + r"patch_embed\.linear\.(weight|bias)", r"vision.patch_emb.\1"),
    (V + r"pos_embed", "vision.pos_emb"),
    (V + r"blocks\.(\d+)\.norm([12])\.(weight|bias)", r"vision.blocks.\1.ln\2.\3"),
    (V + r"blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", r"vision.blocks.\1.\2.\3"),
    (V + r"norm\.(weight|bias)", r"vision.post_ln.\1"),
    (r"vision_encoder\.projection\.mlp\.(fc[12])\.(weight|bias)", r"vision.proj_mlp.\1.\2"),
    (r"text_model\.transformer\.embd\.wte\.weight", "text.wte"),
    (T + r"ln\.(weight|bias)", r"text.blocks.\1.ln.\2"),
    (T + r"mixer\.Wqkv\.(weight|bias)", r"text.blocks.\1.attn.qkv.\2"),
    (T + r"mixer\.out_proj\.(weight|bias)", r"text.blocks.\1.attn.proj.\2"),
    (T + r"mlp\.(fc[12])\.(weight|bias)", r"text.blocks.\1.mlp.\2.\3"),
    (r"text_model\.lm_head\.ln\.(weight|bias)", r"text.post_ln.\1"),
    (r"text_model\.lm_head\.linear\.(weight|bias)", r"text.lm_head.\1"),
]
# the released sizes: SigLIP so400m/14 at 384 (so 27 x 27 patches of the 378 crop), Phi-1.5
VISION = dict(enc_dim=1152, enc_n_layers=27, enc_ff_dim=4304, enc_n_heads=16, proj_inner_dim=8192)
PHI = dict(n_embd=2048, n_layer=24, n_head=32, n_inner=None, vocab_size=51200, n_positions=2048)


def is_moondream1(path: Path) -> bool:
    return ARCHITECTURE in (hf.read_config(path).get("architectures") or [])


def read_config(path: Path) -> MoondreamConfig:
    raw = hf.read_config(path)
    if raw.get("model_type") != "moondream1" or ARCHITECTURE not in (raw.get("architectures") or []):
        raise UnknownModelError(f"{path}: not a moondream1 checkpoint (model_type 'moondream1', architecture "
                                f"{ARCHITECTURE}); found {raw.get('model_type')!r}, {raw.get('architectures')}")
    phi = {**PHI, **{k: v for k, v in (raw.get("phi_config") or {}).items() if k in PHI}}
    # the official code fixes the vision sizes (config.json has none); a test checkpoint states its own
    given = raw.get("vision_config") or {}
    names = {"enc_dim": "embed_dim", "enc_n_layers": "depth", "enc_ff_dim": "mlp_hidden", "enc_n_heads": "num_heads",
             "proj_inner_dim": "projection_hidden"}
    vision = {**VISION, **{ours: given[theirs] for ours, theirs in names.items() if theirs in given}}
    dim = phi["n_embd"]
    text = TextConfig(dim=dim, ff_dim=phi["n_inner"] or 4 * dim, n_layers=phi["n_layer"], vocab_size=phi["vocab_size"],
                      max_context=phi["n_positions"], n_heads=phi["n_head"], n_kv_heads=phi["n_head"], prefix_attn=0)
    return MoondreamConfig(text=text, region=None,
                           vision=VisionConfig(**vision, proj_out_dim=dim, max_crops=1, gelu_approximate="none",
                                               ln_eps=1e-6, local_crops=False))


def load(path: Path, *, device: str, dtype) -> Moondream:
    import torch

    config = read_config(path)
    with torch.device("meta"):
        model = Moondream(config)
    return load_official(model, path, TABLE, device=device, dtype=dtype)


# transformers' clean_up_tokenization, which moondream1's tokenizer applied when decoding (its
# tokenizer_config says clean_up_tokenization_spaces true)
SPACE_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_spaces(text: str) -> str:
    for before, after in SPACE_CLEANUP:
        text = text.replace(before, after)
    return text


def clean(answer: str) -> str:
    """The official answer_question's clean-up: a trailing END, then a trailing <, then spaces."""
    return re.sub("<$", "", re.sub("END$", "", answer)).strip()


class Moondream1Model(MoondreamModel):
    family = "moondream1"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        t = self.tokenizer
        self.model.config = _with_tokenizer(self.model.config, t.bos_token_id)
        self.end_ids = set(t(END_TEXT, add_special_tokens=False).input_ids)

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        return load(path, device=device, dtype=dtype)

    @classmethod
    def load_processor(cls, path: Path):
        """The CodeGen tokenizer (GPT-2 BPE with Phi-1.5's added whitespace tokens)."""
        return hf.load_tokenizer(path, "moondream1")

    # -- tasks ----------------------------------------------------------------------------------

    def caption(self, images, prompt: str | None = None, **gen):
        """A caption per image: moondream1 answers "Describe this image." (or ``prompt``)."""
        from vlmzoo.engine.generation import GenerationOptions
        from vlmzoo.families.base import check_caption_prompt, is_single

        self.require("caption")
        check_caption_prompt(prompt)
        opts = GenerationOptions.from_kwargs({"max_new_tokens": MAX_NEW_TOKENS, **gen})
        results = []
        for batch in self.image_batches(images):
            for im in batch:
                results.append(Caption.from_answer(self._answer(im, "", prompt or CAPTION_QUESTION, opts), prompt))
        return results[0] if is_single(images) else results

    def ask(self, images=None, question=None, *, messages=None, stream: bool = False, **gen):
        """Questions about one image each; a chat carries its earlier rounds as moondream1's
        ``chat_history`` (``Question: .. Answer: ..``)."""
        from vlmzoo.engine.generation import (
            GenerationOptions,
            TextStream,
            run_in_thread,
        )
        from vlmzoo.families.base import ask_requests, check_stream

        self.require("ask")
        requests, single = ask_requests(images, question, messages)
        opts = GenerationOptions.from_kwargs({"max_new_tokens": MAX_NEW_TOKENS, **gen})
        rounds = [_rounds(r, self.name) for r in requests]
        loaded = [self.take_images(r.images[0])[0] for r in requests]
        if stream:
            check_stream(requests)
            text_stream = TextStream(lambda ids: self.decode(ids), opts.stop)
            history, q = rounds[0]
            return run_in_thread(text_stream, lambda: self._answer(loaded[0], history, q, opts,
                                                                   on_tokens=text_stream.push))
        answers = [self._answer(im, history, q, opts) for im, (history, q) in zip(loaded, rounds)]
        return answers[0] if single else answers

    # -- machinery ------------------------------------------------------------------------------

    def decode(self, ids) -> str:
        """As the official decode: special tokens dropped, tokenization spaces cleaned up (the
        tokenizer's setting, which transformers 5 no longer applies to BPE tokenizers itself)."""
        return clean_up_spaces(self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def _answer(self, image, history: str, question: str, opts, on_tokens=None) -> Answer:
        import torch

        from vlmzoo.engine.generation import trim_stop
        from vlmzoo.families.moondream import decoding

        t = self.tokenizer
        before = t("<image>", add_special_tokens=False).input_ids
        after = t(f"</image>\n\n{history}Question: {question}\n\nAnswer: ", add_special_tokens=False).input_ids
        needed = 1 + len(before) + self.model.config.vision.grid ** 2 + len(after) + opts.max_new_tokens
        if needed > self.model.config.text.max_context:
            raise InputError(f"prompt and budget need {needed} positions; {self.name} takes "
                             f"{self.model.config.text.max_context}")
        generator = torch.Generator().manual_seed(opts.seed) if opts.seed is not None else None
        stop_hit = (lambda out: any(s in self.decode(out) for s in opts.stop)) if opts.stop else None
        with torch.inference_mode():
            encoded = decoding.encode_image(self.model, image.image, len(after) + opts.max_new_tokens + 1, before)
            prompt_tokens = encoded.pos + len(after)
            new, reason, timing = decoding.generate_text(self.model, encoded, after, opts, generator,
                                                         on_tokens=on_tokens, stop_hit=stop_hit,
                                                         stop_ids=self.end_ids, keep_stop=True, masked_after_first=None)
        text, hit = trim_stop(self.decode(new), opts.stop)
        return Answer(text=clean(text), question=question, images=(image.name,), num_tokens=len(new),
                      prompt_tokens=prompt_tokens, seconds=timing.end - timing.start, ttft=timing.ttft(),
                      tokens_per_s=timing.decode_tokens_per_s(len(new)), finish_reason="stop" if hit else reason)


def _with_tokenizer(config: MoondreamConfig, bos: int) -> MoondreamConfig:
    from dataclasses import replace

    return replace(config, tokenizer=TokenizerConfig(bos_id=bos, eos_id=bos))


def _rounds(request: AskRequest, name: str) -> tuple[str, str]:
    """(chat_history, question) of a request: one image in the first message, user and
    assistant turns alternating, a user turn last."""
    msgs = request.messages
    if len(request.images) != 1 or not msgs[0].images:
        raise InputError(f"{name} takes exactly one image, in the first message; got {len(request.images)}")
    if [m.role for m in msgs] != ["user", "assistant"] * (len(msgs) // 2) + ["user"]:
        raise InputError(f"{name} takes user and assistant turns in turn, ending with a user question")
    history = "".join(f"Question: {q.text}\n\nAnswer: {a.text}\n\n" for q, a in zip(msgs[::2], msgs[1::2]))
    if not msgs[-1].text.strip():
        raise InputError("the message has no question text")
    return history, msgs[-1].text
