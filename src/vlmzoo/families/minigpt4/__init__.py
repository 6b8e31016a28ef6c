"""MiniGPT-4 (Vicuna V0 7B / 13B, Llama-2-chat 7B) and MiniGPT-v2 (Llama-2-chat 7B), implemented
here from the official files (Vision-CAIR/MiniGPT-4), never with their code.

- caption, ask and chat as the official ``Chat`` runs them: one image uploaded at the start of a
  conversation, the official templates and system text, the answer cleaned as ``Chat.answer``
  cleans it. MiniGPT-4 stops where ``demo.py`` stops it (its stop words ``###`` / ``## #``: here
  at the text ``###``, where the official clean-up cuts the answer anyway).
- MiniGPT-v2 also grounds: ``[refer] give me the location of <phrase>`` (its RefCOCO evaluation
  prompt) answers ``{<x1><y1><x2><y2>}`` in 0-100 bins, read back into pixel boxes of the
  original image. Its task tokens ([vqa], [caption], [grounding], [refer], [detection],
  [identify]) can be written at the start of any question.
- Decoding is greedy unless sampling is asked for; the official demos sample (top_p 0.9,
  temperature 1.0 or 0.6, repetition_penalty 1.05). ``repetition_penalty`` counts the answer's
  tokens as the official code does, not the prompt's.

The modules are in modeling.py (transformers' BLIP-2 vision tower and Q-Former, Llama), the
prompts and boxes in processing.py, the files and the one table of tensor names in convert.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from vlmzoo.errors import UnknownModelError
from vlmzoo.families.generative import GenerativeModel
from vlmzoo.tasks import AskRequest, ImagePart, Message


class MiniGPT4Model(GenerativeModel):
    family = "minigpt4"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask")
    multi_image = False  # the official Chat takes one image, uploaded before the first question
    default_batch_size: ClassVar[int] = 4

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.variant = self.processor.variant
        self.model.generation_config.pad_token_id = self.tokenizer.pad_token_id

    # -- loading hooks: our modules, the official files ----------------------------------------

    @classmethod
    def class_for(cls, path: Path) -> type[GenerativeModel]:
        from vlmzoo.families.minigpt4.convert import Layout

        return MiniGPTv2Model if Layout.read(path).variant.lora else MiniGPT4Model

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        from vlmzoo.families.minigpt4 import convert

        return convert.load(path, device=device, dtype=dtype)

    @classmethod
    def weight_params(cls, path: Path) -> float | None:
        """What the folder's files hold, counted on the model and the holders of the tensors
        folded in after loading (eva's q / v biases, MiniGPT-v2's LoRA) built on the meta device:
        the files are pickles and folders in several places, which no one header describes."""
        from vlmzoo.families.minigpt4 import convert

        model, holders = convert.build(convert.Layout.read(path))
        return sum(p.numel() for part in (model, holders) for p in part.parameters()) / 1e9

    @classmethod
    def load_processor(cls, path: Path):
        from transformers import AutoTokenizer

        from vlmzoo.families.minigpt4.convert import Layout, image_tokens
        from vlmzoo.families.minigpt4.processing import MiniGPTProcessor

        layout = Layout.read(path)
        model_file = layout.llm / "tokenizer.model"
        try:  # the official slow LlamaTokenizer's pieces: legacy=True, built from tokenizer.model
            tokenizer = AutoTokenizer.from_pretrained(str(layout.llm), legacy=True, from_slow=model_file.is_file(),
                                                      trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise UnknownModelError(f"{layout.llm}: the LLM's tokenizer cannot be loaded ({e})") from None
        tokenizer.pad_token = tokenizer.unk_token  # the official "$$" is no token: it reads as <unk>
        decoder = None
        if model_file.is_file():
            import sentencepiece

            decoder = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        size, tokens = image_tokens(layout)
        return MiniGPTProcessor(tokenizer, layout.variant, size, tokens, decoder)

    # -- prompts and answers --------------------------------------------------------------------

    def prompt(self, request: AskRequest) -> str:
        from vlmzoo.families.minigpt4.processing import turns_of

        turns, system = turns_of(request.messages)
        return self.variant.conversation.prompt(turns, system)

    def caption_prompt(self, prompt: str | None) -> str:
        return self.prompt(AskRequest((Message("user", (ImagePart(None), prompt or self.variant.caption)),)))

    def decode(self, ids, keep_special: bool = False) -> str:
        return self.processor.decode(ids)

    def clean(self, text: str) -> str:
        from vlmzoo.families.minigpt4.processing import chat_answer

        return chat_answer(text)

    # the official stop words, as stop strings on top of the user's
    def _with_stops(self, opts):
        extra = tuple(s for s in self.variant.stop_strings if s not in opts.stop)
        return dataclasses.replace(opts, stop=opts.stop + extra) if extra else opts

    def _generate(self, prompts, images, questions, opts, *args, **kwargs):
        return super()._generate(prompts, images, questions, self._with_stops(opts), *args, **kwargs)

    def _stream(self, prompt, images, question, opts):
        return super()._stream(prompt, images, question, self._with_stops(opts))


class MiniGPTv2Model(MiniGPT4Model):
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask", "ground")

    def ground_prompt(self, phrase: str) -> str:
        from vlmzoo.families.minigpt4.processing import REFER_V2

        return self.prompt(AskRequest((Message("user", (ImagePart(None), REFER_V2.format(phrase))),)))

    def parse_boxes(self, text, size, inputs, phrase):
        from vlmzoo.families.minigpt4.processing import parse_boxes

        return parse_boxes(text, size, default_label=phrase)
