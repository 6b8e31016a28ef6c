"""SEED (the SEED-2 discrete image tokenizer) and SEED-LLaMA 8B / 14B, implemented here from the
official files (AILab-CVC/SEED), never with their code.

- The SEED tokenizer (``SeedTokenizerModel``): ``tokenize(images)`` -> (N, 32) codes in [0, 8192)
  (EVA ViT-g -> causal Q-Former -> nearest codebook row); ``embed`` images -> the de-tokenizer's
  1,024-d unCLIP image embedding of those codes (unit vectors: the space stable-diffusion-2-1-unclip
  is conditioned on, trained to stand for OpenCLIP ViT-H/14 image embeddings);
  ``causal_embeddings(images)``; ``decode_codes(codes)`` -> pictures through the unCLIP decoder.
  The released seed_quantizer.pt's model has no text side (Blip2QformerQuantizer removes BERT's
  text modules and has no contrastive projections), so texts cannot be embedded and match,
  retrieve and classify are not served.
- SEED-LLaMA (``SeedLlamaModel``): caption, ask and chat with images entering the prompt as
  ``<img>`` + 32 ``<img_%05d>`` code tokens + ``</img>``, in the official prompt formats
  (USER: / ASSISTANT: for the 8B, [INST] for the 14B); ``imagine(prompt, images=None)``: the
  prompt in the same format, ``<img>`` appended (the demo's force_boi), 32 code tokens generated
  (vlmzoo keeps the choice to the 8,192 image tokens: see ``ImageCodesOnly``), then the codes
  through the de-tokenizer and diffusers' StableUnCLIPImg2ImgPipeline (guidance 10, 20 steps,
  noise level 0, as ImageTokenizer.decode runs it).
- Decoding is greedy unless sampling is asked for; the official scripts sample (temperature 1.0,
  top_p 0.5), the demo server too (temperature 0.7, top_p 0.5).

The modules are in modeling.py, the tokenizer and prompts in processing.py, the files and the one
table of tensor names in convert.py, the unCLIP decoding in unclip.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.base import VLModel
from vlmzoo.families.generative import GenerativeModel
from vlmzoo.tasks import AskRequest, Embeddings, ImagePart, Message


class SeedImages:
    """What both SEED models do with images: codes, causal embeddings, unCLIP embeddings, pictures."""

    layout = None  # convert.Layout, set at load
    _unclip = None

    @classmethod
    def build_model(cls, path: Path, device: str, dtype):
        from vlmzoo.families.seed import convert

        return convert.load(path, device=device, dtype=dtype)

    @classmethod
    def weight_params(cls, path: Path) -> float | None:
        """What the folder's files hold, counted on the model built on the meta device (and eva's
        separate q / v biases): pickles in several places, which no one header describes. The
        unCLIP decoder is loaded when first used and is not counted."""
        from vlmzoo.families.seed import convert

        model, holders, _ = convert.build(_layout(path))
        return sum(p.numel() for part in (model, holders) for p in part.parameters()) / 1e9

    @property
    def image_tokenizer(self):
        return self.model if not hasattr(self.model, "image_tokenizer") else self.model.image_tokenizer

    def _pixels(self, images):
        import torch

        from vlmzoo.families.seed.processing import pixels

        loaded = self.take_images(images)
        batch = torch.from_numpy(np.stack([pixels(im.image) for im in loaded]))
        return [im.name for im in loaded], batch.to(self.device, self.dtype)

    def tokenize(self, images) -> np.ndarray:
        """(N, 32) int64 codes of one image, several or a folder (N = 1 for one image)."""
        import torch

        _, batch = self._pixels(images)
        with torch.inference_mode():
            return torch.cat([self.image_tokenizer.encode(part) for part in batch.split(self.batch_size)]).cpu().numpy()

    def causal_embeddings(self, images) -> np.ndarray:
        """(N, 32, width) float32: the causal Q-Former's outputs the codes are quantised from."""
        import torch

        _, batch = self._pixels(images)
        with torch.inference_mode():
            return torch.cat([self.image_tokenizer.causal_embeddings(part)["causal_embeddings"].float()
                              for part in batch.split(self.batch_size)]).cpu().numpy()

    def code_embeddings(self, codes) -> np.ndarray:
        """(N, 32) codes -> (N, 1024) float32 unCLIP image embeddings (get_codebook_entry)."""
        import torch

        with torch.inference_mode():
            return self.image_tokenizer.decode(self._codes(codes)).float().cpu().numpy()

    def _codes(self, codes):
        import torch

        tokenizer = self.image_tokenizer
        array = np.asarray(codes)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != tokenizer.queries or not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"codes must be integers of shape (N, {tokenizer.queries}), got {array.dtype} "
                             f"{tuple(array.shape)}")
        if array.size and (array.min() < 0 or array.max() >= tokenizer.num_codes):
            raise InputError(f"codes must lie in [0, {tokenizer.num_codes}); got {int(array.min())}..{int(array.max())}")
        return torch.as_tensor(array, dtype=torch.long, device=self.device)

    def decode_codes(self, codes, *, seed: int | None = None, latents=None, guidance_scale: float = 10.0,
                     num_inference_steps: int = 20) -> list:
        """Pictures (PIL) of (N, 32) codes: their unCLIP image embeddings through the
        stable-diffusion-2-1-unclip decoder, as ImageTokenizer.decode runs it (guidance 10, 20
        steps, noise level 0, no negative embedding). ``seed`` makes them repeatable;
        ``latents`` (1, 4, h, w) are the starting noise instead of one drawn from it."""
        from vlmzoo.families.seed import unclip

        return unclip.decode(self, self._codes(codes), seed=seed, latents=latents, guidance_scale=guidance_scale,
                             num_inference_steps=num_inference_steps)


def _layout(path: Path):
    from vlmzoo.families.seed.convert import Layout

    return Layout.read(path)


class SeedTokenizerModel(SeedImages, VLModel):
    family = "seed"
    tasks_served: ClassVar[tuple[str, ...]] = ("embed",)
    embed_modalities: ClassVar[tuple[str, ...]] = ("image",)
    default_batch_size: ClassVar[int] = 8

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.layout = _layout(self.path)

    @classmethod
    def class_for(cls, path: Path) -> type[VLModel]:
        return SeedLlamaModel if _layout(path).llm is not None else SeedTokenizerModel

    @classmethod
    def load_processor(cls, path: Path):
        return None  # images only: the pixels are made in processing.pixels

    def context_tokens(self) -> int | None:
        return None

    def embed_images(self, images) -> Embeddings:
        """Unit vectors of each image's unCLIP image embedding (its codes through the de-tokenizer)."""
        import torch

        self.require("embed")
        names, batch = self._pixels(images)
        with torch.inference_mode():
            out = torch.cat([self.image_tokenizer.decode(self.image_tokenizer.encode(part)).float()
                             for part in batch.split(self.batch_size)]).cpu()
        return Embeddings(torch.nn.functional.normalize(out, dim=-1).numpy(), tuple(names), "image")

    def embed(self, inputs) -> Embeddings:
        return self.embed_images(inputs)

    def embed_texts(self, texts):
        self.require("embed")
        raise InputError(f"{self.name} embeds images only: the released SEED tokenizer has no text side "
                         "(Blip2QformerQuantizer removes BERT's text modules and its contrastive heads)")


class SeedLlamaModel(SeedImages, GenerativeModel):
    family = "seed"
    tasks_served: ClassVar[tuple[str, ...]] = ("caption", "ask", "imagine")
    default_batch_size: ClassVar[int] = 4

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.layout = _layout(self.path)
        self.format = self.processor.format
        self.model.generation_config.pad_token_id = self.tokenizer.pad_token_id

    @classmethod
    def load_processor(cls, path: Path):
        from vlmzoo.families.seed.processing import LegacyLlamaTokenizer, SeedProcessor

        layout = _layout(path)
        return SeedProcessor(LegacyLlamaTokenizer(layout.tokenizer), _hf_tokenizer(layout.tokenizer), layout.prompt_format)

    # -- prompts and answers --------------------------------------------------------------------

    def prompt(self, request: AskRequest) -> str:
        """The official prompt text, BOS first, each image still its ``<image>`` flag (``encode``
        puts its code tokens there)."""
        from vlmzoo.families.seed.processing import turns_of

        return self.processor.text.bos + self.format.conversation(turns_of(request.messages))

    def caption_prompt(self, prompt: str | None) -> str:
        from vlmzoo.families.seed.processing import CAPTION

        return self.prompt(AskRequest((Message("user", (ImagePart(None), prompt or CAPTION)),)))

    def prompt_text(self, prompt: str, codes: list) -> str:
        """``prompt`` with its ``<image>`` flags replaced, in order, by the images' code tokens."""
        from vlmzoo.families.seed.processing import IMG_FLAG, image_text

        pieces = prompt.split(IMG_FLAG)
        if len(pieces) - 1 != len(codes):
            raise InputError(f"the prompt holds {len(pieces) - 1} image flag(s) ({IMG_FLAG}) for {len(codes)} image(s)")
        return pieces[0] + "".join(image_text(c) + piece for c, piece in zip(codes, pieces[1:]))

    def encode(self, prompts: list[str], images):
        """The batch's images tokenized (codes), written into their prompts as code tokens, the
        texts tokenized as the official tokenizer does and left-padded."""
        from transformers import BatchFeature

        from vlmzoo.families.image_prompt import left_padded

        flat = [im.image for per in images for im in per]
        codes = self.tokenize(flat).tolist() if flat else []
        rows, k = [], 0
        for prompt, per in zip(prompts, images):
            rows.append(self.processor.text.encode(self.prompt_text(prompt, codes[k:k + len(per)])))
            k += len(per)
        ids, mask, _ = left_padded(rows, self.tokenizer.pad_token_id)
        return BatchFeature({"input_ids": ids, "attention_mask": mask}).to(self.device)

    def decode(self, ids, keep_special: bool = False) -> str:
        return self.processor.text.decode(ids, skip_special_tokens=not keep_special)

    # -- imagine ---------------------------------------------------------------------------------

    def imagine(self, prompt: str, images=None, seed: int | None = None, *, latents=None,
                guidance_scale: float = 10.0, num_inference_steps: int = 20, **gen):
        """A picture for ``prompt`` (and ``images`` it refers to, e.g. an edit): the prompt in the
        model's format, ``<img>`` appended, 32 image codes generated (``image_codes``), then decoded
        by the unCLIP decoder. ``seed`` seeds sampling (if asked for) and the diffusion;
        ``latents``: the diffusion's starting noise instead of one drawn from ``seed``."""
        from vlmzoo.tasks import GeneratedImage

        self.require("imagine")
        if self.layout.diffusion is None:
            from vlmzoo.families.seed.convert import DIFFUSION_DIR

            raise UnknownModelError(f"{self.path}: imagine needs the unCLIP decoder: put stabilityai/"
                                    f"stable-diffusion-2-1-unclip in the folder as {DIFFUSION_DIR}/ (or name it as "
                                    "\"diffusion\" in seed.json)")
        from vlmzoo.extras import require

        require("diffusers", "imagine", "imagine")
        start = time.perf_counter()
        codes = self.image_codes(prompt, images, seed=seed, **gen)
        picture = self.decode_codes([codes], seed=seed, latents=latents, guidance_scale=guidance_scale,
                                    num_inference_steps=num_inference_steps)[0]
        return GeneratedImage(picture, prompt, tuple(codes), time.perf_counter() - start)

    def image_codes(self, prompt: str, images=None, seed: int | None = None, **gen) -> list[int]:
        """The 32 image codes the model writes for ``prompt`` (and its ``images``): the prompt in
        the model's format with ``<img>`` appended (the demo's force_boi), then one token per code,
        each chosen among the image-code tokens only (``ImageCodesOnly``); greedy unless sampling
        is asked for (``do_sample``, ``temperature``, ``top_p``, ``top_k``; ``seed``)."""
        import torch
        from transformers import LogitsProcessorList

        from vlmzoo.engine.generation import GenerationOptions, timed_generate
        from vlmzoo.families.seed.processing import BOI

        self.require("imagine")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the prompt is empty")
        queries = self.image_tokenizer.queries
        for key in ("max_new_tokens", "min_new_tokens", "stop", "num_beams"):
            if key in gen:
                raise InputError(f"imagine generates exactly {queries} image codes: {key} does not apply")
        sources = [] if images is None else (list(images) if isinstance(images, (list, tuple)) else [images])
        limit = self.max_images()
        if limit is not None and len(sources) > limit:
            raise InputError(f"{self.name} takes at most {limit} image(s) per prompt (per its card); got {len(sources)}")
        loaded = [self.take_image(s) for s in sources]
        request = AskRequest((Message("user", (*(ImagePart(im) for im in loaded), prompt)),))
        inputs = self.encode([self.prompt(request) + BOI], [loaded])
        opts = GenerationOptions.from_kwargs({**gen, "max_new_tokens": queries,
                                              **({"seed": seed} if seed is not None else {})})
        shift = self.processor.image_id_shift
        with torch.inference_mode():
            out, _ = timed_generate(self.model.generate, opts,
                                    logits_processor=LogitsProcessorList([ImageCodesOnly(shift, self.image_tokenizer.num_codes)]),
                                    **inputs)
        return [int(t) - shift for t in out[0, inputs["input_ids"].shape[1]:]]


class ImageCodesOnly:
    """Logits outside the image-code tokens set to -inf: every generated token is one of
    ``<img_00000>`` .. ``<img_08191>``. vlmzoo's: the official demo appends ``<img>`` and lets the
    model write what follows (a released model writes 32 codes and ``</img>``; anything else was
    an error message there)."""

    def __init__(self, shift: int, codes: int):
        self.start, self.end = shift, shift + codes

    def __call__(self, input_ids, scores):
        import torch

        keep = torch.full_like(scores, float("-inf"))
        keep[:, self.start:self.end] = 0
        return scores + keep


def _hf_tokenizer(folder: Path):
    """transformers' Llama tokenizer over the same files: what vlmzoo's generation machinery reads
    off a tokenizer (special ids, padding side, stop strings); ids and text come from
    processing.LegacyLlamaTokenizer, which behaves as the official one."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UnknownModelError(f"{folder}: the SEED tokenizer's files cannot be loaded ({e})") from None
    tokenizer.pad_token = tokenizer.unk_token  # SeedLlamaTokenizer: pad_token = unk_token
    return tokenizer
