"""SEED's codes -> pictures: the de-tokenizer's unCLIP image embeddings through diffusers'
StableUnCLIPImg2ImgPipeline (stabilityai/stable-diffusion-2-1-unclip), as the official
``ImageTokenizer.decode`` runs its copy of that pipeline: no text prompt (the empty one), the
image embedding as ``image_embeds``, no negative image embedding (zeros, the pipeline's own),
guidance scale 10, 20 inference steps, noise level 0.

The official copy (models/pipeline_stable_unclip_img2img.py) is diffusers 0.20's pipeline with a
``negative_image_embeds`` argument added, which ImageTokenizer.decode leaves None: the same
computation as diffusers' own. What differs is where the randomness comes from: the official
ImageTokenizer draws one float16 starting latent (1, 4, 96, 96) from torch's global generator
when it is built and reuses it for every picture, and the noise added to the image embedding
(noise level 0 still adds a little: the first step of the squaredcos schedule) comes from the
global generator at each call. Here both come from one ``torch.Generator`` seeded with ``seed``
(the embedding's noise first, then the latent, as the pipeline draws them), or the latent is
given (``latents``). diffusers is an optional extra: ``pip install 'vlmzoo[imagine]'``.
"""

from __future__ import annotations

from contextlib import contextmanager

from vlmzoo.errors import UnknownModelError
from vlmzoo.extras import require


def pipeline(model):
    """The folder's unCLIP pipeline, loaded once per model, on its device in its dtype."""
    if model._unclip is None:
        require("diffusers", "imagine", "decoding SEED codes into pictures")
        from diffusers import StableUnCLIPImg2ImgPipeline

        folder = model.layout.diffusion
        if folder is None or not (folder / "model_index.json").is_file():
            raise UnknownModelError(f"{model.path}: no unCLIP decoder: put stabilityai/stable-diffusion-2-1-unclip "
                                    "in the folder as stable-diffusion-2-1-unclip/ (or name it as \"diffusion\" in "
                                    "seed.json)")
        import warnings

        try:
            with warnings.catch_warnings(), _quiet():  # newer diffusers call it dtype; torch_dtype serves all
                warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
                pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(str(folder), torch_dtype=model.dtype,
                                                                   use_safetensors=True, local_files_only=True,
                                                                   low_cpu_mem_usage=False)
        except (OSError, ValueError) as e:
            raise UnknownModelError(f"{folder}: not a StableUnCLIPImg2ImgPipeline folder with safetensors ({e})") from None
        pipe.set_progress_bar_config(disable=True)
        model._unclip = pipe.to(model.device)
    return model._unclip


@contextmanager
def _quiet():
    """diffusers' and transformers' loading progress bars off while the pipeline loads, and
    transformers' notice that CLIPImageProcessor falls back to its PIL backend without torchvision
    (the pipeline's feature extractor is unused: SEED gives image embeddings, not images)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    shown = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    level = transformers_logging.get_verbosity()
    for m, _ in shown:
        m.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)
        for m, was in shown:
            if was:
                m.enable_progress_bar()


def decode(model, codes, *, seed=None, latents=None, guidance_scale: float = 10.0, num_inference_steps: int = 20):
    """PIL pictures of (N, 32) code tensors, one pipeline call each (each with its own draws from
    the one generator, in order)."""
    import torch

    pipe = pipeline(model)
    generator = torch.Generator(device="cpu").manual_seed(int(seed)) if seed is not None else None
    if latents is not None:
        latents = torch.as_tensor(latents).to(device=model.device, dtype=pipe.unet.dtype)
    pictures = []
    with torch.inference_mode():
        embeds = model.image_tokenizer.decode(codes)
        for row in embeds:
            out = pipe(image_embeds=row[None].to(pipe.unet.dtype), guidance_scale=guidance_scale, noise_level=0,
                       num_inference_steps=num_inference_steps, latents=latents, generator=generator)
            pictures.append(out.images[0])
    return pictures
