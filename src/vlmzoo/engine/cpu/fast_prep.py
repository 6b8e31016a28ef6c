"""Fast image preprocessing for the common processor recipe: resize, centre crop, rescale,
normalise (CLIP, SigLIP, BLIP and most ViT processors).

transformers' PIL image processors do the pixel arithmetic image by image in numpy float. Here
the geometry is the same PIL call on uint8 pixels (identical output), and rescale + normalise run
once per batch in torch. Outside exact mode two faster steps, not bit-identical, are used: JPEGs
decoded at a reduced scale (never below the resize target; images.load_image's ``draft``) and
the resize done by torch's antialiased uint8 kernel (same filter, within rounding of PIL).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


# PIL filters torch reproduces in its antialiased uint8 resize (PIL's cubic a = -0.5 included)
TORCH_FILTERS = {Image.BILINEAR: "bilinear", Image.BICUBIC: "bicubic"}


def _torch_resize(arr: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """HWC uint8 (writable: torch shares its memory) -> HWC uint8 of (width, height) ``size``,
    antialiased as PIL does."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(arr).permute(2, 0, 1)[None]  # a channels-last view: no copy
    out = F.interpolate(x, size=(size[1], size[0]), mode=mode, antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class FastPrep:
    resize: tuple  # ("shortest_edge", n) or ("fixed", height, width) or None
    resample: int
    crop: tuple[int, int] | None  # (height, width)
    scale: float | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None

    @classmethod
    def for_processor(cls, proc) -> "FastPrep | None":
        """The recipe of ``proc`` if it is the plain PIL pipeline this module reproduces, else None."""
        from transformers.image_processing_backends import PilBackend

        if not isinstance(proc, PilBackend) or type(proc)._preprocess is not PilBackend._preprocess:
            return None
        if getattr(proc, "do_pad", False) or not getattr(proc, "do_convert_rgb", True):
            return None
        size = proc.size or {}
        resize = None
        if proc.do_resize:
            if set(size) == {"shortest_edge"} or (size.get("shortest_edge") and not size.get("longest_edge")):
                resize = ("shortest_edge", int(size["shortest_edge"]))
            elif size.get("height") and size.get("width"):
                resize = ("fixed", int(size["height"]), int(size["width"]))
            else:
                return None
        crop = None
        if proc.do_center_crop:
            crop = (int(proc.crop_size["height"]), int(proc.crop_size["width"]))
        mean = tuple(float(x) for x in np.broadcast_to(proc.image_mean, 3)) if proc.do_normalize else None
        std = tuple(float(x) for x in np.broadcast_to(proc.image_std, 3)) if proc.do_normalize else None
        resample = proc.resample if proc.resample is not None else Image.BILINEAR
        return cls(resize, int(resample), crop, float(proc.rescale_factor) if proc.do_rescale else None, mean, std)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing, by transformers' rule (the long side is floored)."""
        if self.resize is None:
            return width, height
        if self.resize[0] == "fixed":
            return self.resize[2], self.resize[1]
        target = self.resize[1]
        if width <= height:
            return target, int(target * height / width)
        return int(target * width / height), target

    def draft_request(self) -> tuple[int, int] | None:
        """Smallest (w, h) a JPEG may be decoded at and still resize exactly as asked.

        Orientation-proof: for a shortest-edge resize both sides must stay >= the target."""
        if self.resize is None:
            return None
        side = self.resize[1] if self.resize[0] == "shortest_edge" else max(self.resize[1:])
        return side, side

    def pixels(self, image: Image.Image, approximate: bool = False) -> np.ndarray:
        """uint8 CHW pixels after resize and crop, exactly as the processor computes them.

        ``approximate``: resize with torch's antialiased uint8 kernel where the processor uses
        PIL's bilinear or bicubic filter: the same filters; under 1% of values differ from PIL's,
        by one level (rarely two, in bicubic), from rounding. Faster than PIL's resize
        (docs/performance-history.md). Never in exact mode."""
        if self.resize is not None:
            size = self.output_size(*image.size)
            if approximate and self.resample in TORCH_FILTERS and image.mode == "RGB" and size != image.size:
                arr = _torch_resize(np.array(image, dtype=np.uint8), size, TORCH_FILTERS[self.resample])
                return self._crop(arr)
            image = image.resize(size, resample=self.resample)
        return self._crop(np.asarray(image, dtype=np.uint8))

    def _crop(self, arr: np.ndarray) -> np.ndarray | None:
        """Centre crop of an HWC array, returned CHW contiguous (None if smaller than the crop)."""
        if self.crop is not None:
            h, w = arr.shape[:2]
            ch, cw = self.crop
            top, left = (h - ch) // 2, (w - cw) // 2
            if top < 0 or left < 0:
                return None  # smaller than the crop: the processor pads; let it
            arr = arr[top : top + ch, left : left + cw]
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def finish(self, batch: np.ndarray):
        """(n, 3, h, w) uint8 -> float32 tensor, rescaled and normalised in one vectorised step."""
        import torch

        x = torch.from_numpy(batch).float()
        if self.scale is not None:
            x = x * self.scale
        if self.mean is not None:
            mean = torch.tensor(self.mean).view(1, 3, 1, 1)
            std = torch.tensor(self.std).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x
