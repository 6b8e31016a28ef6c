"""Loading transformers checkpoints the house way: safetensors only, no Hub code, eval mode."""

from __future__ import annotations

import json
from pathlib import Path

from vlmzoo.engine.memory import read_safetensors_header
from vlmzoo.errors import UnknownModelError


def read_config(path: Path) -> dict:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise UnknownModelError(f"{path}: not a checkpoint folder (no config.json)")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UnknownModelError(f"{cfg}: config.json is not valid JSON ({e})") from None


def load_model(model_cls, path: Path, *, device: str, dtype):
    """``model_cls.from_pretrained`` with safetensors enforced and remote code refused.

    Each weights file's header is checked against the file first (``read_safetensors_header``):
    a damaged, cut-short or unreadable file is an UnknownModelError naming it, not a traceback.
    """
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise UnknownModelError(
            f"{path}: no .safetensors weights; vlmzoo does not load pickled (.bin/.pt) weights"
        )
    for f in files:
        read_safetensors_header(f)
    from safetensors import SafetensorError
    from transformers.utils import logging as hf_logging

    # transformers' per-tensor progress bar is noise for a load of seconds; vlmzoo shows its own
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = model_cls.from_pretrained(path, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    except SafetensorError as e:  # damage the header check cannot see
        raise UnknownModelError(f"{path}: a weights file cannot be read ({e}): the checkpoint is damaged or "
                                f"incomplete; download or copy it again") from None
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return model.to(device).eval()


def load_tokenizer(path: Path, family: str, fast_only: bool = False):
    """The checkpoint's tokenizer, never with Hub code, for a family whose config.json transformers
    does not know (its "model of type ..." notice silenced). ``fast_only``: the fast tokenizer
    under a tokenizer class that only Hub code defines (MiniCPM-V's)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        if fast_only:
            return PreTrainedTokenizerFast.from_pretrained(path)
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UnknownModelError(f"{path}: {family}'s tokenizer cannot be loaded ({e})") from None
    finally:
        hf_logging.set_verbosity(level)


def load_processor(path: Path):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except ImportError as e:
        if "torchvision" not in str(e).lower():
            raise
        return _processor_without_video(Path(path))


class _NoVideo:
    """Stands where a video processor would: no frame settings, and no video."""

    num_frames = None
    fps = None

    def __call__(self, *args, **kwargs):
        raise UnknownModelError("vlmzoo sends images, not video, to this processor")


def _processor_without_video(path: Path):
    """The checkpoint's processor, built without its video processor.

    In transformers 5 the Qwen2-VL, Qwen2.5-VL and SmolVLM processors carry a video processor,
    and every video processor needs torchvision, which does not install beside every torch build
    (CPU wheels in particular). vlmzoo sends images only, so it builds the processor from the
    image processor, tokenizer and chat template, and leaves video out.
    """
    import inspect

    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    cfg = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (path / name).is_file():
            cfg = {**json.loads((path / name).read_text(encoding="utf-8")), **cfg}
    cls = getattr(transformers, cfg.get("processor_class", ""), None)
    if cls is None:
        raise UnknownModelError(f"{path}: processor needs torchvision and names no processor_class to build without it")
    template = None
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    elif (path / "chat_template.json").is_file():
        template = json.loads((path / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
    params = inspect.signature(cls.__init__).parameters
    skip = {"self", "image_processor", "tokenizer", "video_processor", "chat_template"}
    extra = {k: v for k, v in cfg.items() if k in params and k not in skip}
    tokenizer = AutoTokenizer.from_pretrained(path)

    # transformers derives a processor's parts from its __init__ signature: a subclass whose
    # __init__ has no video_processor makes one that neither loads nor checks a video part
    def images_only_init(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        cls.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        self.video_processor = _NoVideo()  # SmolVLM's chat template reads its frame settings

    images_only = type(cls.__name__, (cls,), {"__init__": images_only_init})
    return images_only(image_processor=AutoImageProcessor.from_pretrained(path), tokenizer=tokenizer,
                       chat_template=template or tokenizer.chat_template, **extra)
