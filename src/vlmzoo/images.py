"""Image intake: every image enters vlmzoo here.

Accepts a file path, a directory (recursive, sorted), an http(s) URL (only when allowed, and
then fetched by vlmzoo.safe_fetch: public addresses only, size and time limits), raw bytes,
base64 or a data URI, a PIL image, or a numpy array. Returns RGB PIL images with EXIF orientation
applied, and refuses what is broken or too big with an error naming the input.

Only raster formats users send are ever decoded (``FORMATS``): a client's PostScript must never
reach Pillow's Ghostscript plugin. Before pixels are decoded, the image's shape is checked: its
pixel count, its aspect ratio, and for a model's preprocessing that resizes by the shortest edge,
the size that resize would make (a 1x100000 PNG of 475 bytes would become 224x22,400,000).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlmzoo import safe_fetch
from vlmzoo.errors import ImageError, InputError

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, "LoadedImage"]

# 50 megapixels: a 8000x6000 camera photo passes, a decompression bomb does not.
DEFAULT_MAX_PIXELS = int(os.environ.get("VLMZOO_MAX_PIXELS", 50_000_000))
# Longer side over shorter side: panoramas and receipts pass, a 1-pixel line does not (Qwen2-VL's
# own processor draws the line at 200 too).
MAX_ASPECT_RATIO = 200
# What a model's resize may make of one image: 16 MP is 192 MiB as float32 RGB.
MAX_RESIZED_PIXELS = 16_000_000
# The raster formats Pillow may decode here (Pillow's names; JPEG covers the MPO files phones write).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF")
PATH_MAX = 4096  # a longer string is never a file name: it is data (base64) or nothing
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}
)
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")


class PixelLimitError(ImageError):
    """The image holds more pixels than the limit it was taken in under."""


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, orientation applied, pixels loaded
    name: str  # what the user gave, for results and errors


@dataclass(frozen=True)
class Intake:
    """The result of taking in a batch: good images in input order, and what was refused."""

    images: list[LoadedImage]
    errors: list[ImageError]


def expand(sources: ImageLike | Iterable[ImageLike]) -> list[ImageLike]:
    """Flatten one source or a list into single-image sources; directories are walked.

    Directories expand recursively into their image files, sorted by path so that runs are
    reproducible. An empty list, or a directory with no images, is an error.
    """
    if isinstance(sources, (str, os.PathLike, bytes, Image.Image, np.ndarray, LoadedImage)):
        sources = [sources]
    elif not isinstance(sources, Iterable):
        raise InputError(f"expected an image or a list of images, got {type(sources).__name__}")
    out: list[ImageLike] = []
    for src in sources:
        if is_folder(src):
            found = sorted(
                p for p in Path(src).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise InputError(f"{src}: directory holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(str(p) for p in found)
        else:
            out.append(src)
    if not out:
        raise InputError("no images given (empty list)")
    return out


def is_folder(src) -> bool:
    """``src`` names an existing folder. Never raises: a data URI, base64 or a string too long
    for a file name is simply not one."""
    if not isinstance(src, (str, os.PathLike)):
        return False
    text = os.fspath(src)
    if len(text) > PATH_MAX or text.startswith("data:"):
        return False
    try:
        return Path(text).is_dir()
    except OSError:
        return False


def load_image(
    src: ImageLike, *, allow_urls: bool = False, max_pixels: int | None = None,
    draft: tuple[int, int] | None = None, fetch: Callable[[str], bytes] | None = None,
    resize=None,
) -> LoadedImage:
    """Take in one image. Raises ImageError naming the input on any problem.

    ``resize``: the resize rule of the model the image is for (its processor's ``size``), so
    that an image its preprocessing would blow up is refused here, before any resizing. An
    image already taken in (a LoadedImage) is checked against it again.

    With ``allow_urls`` an http(s) URL is fetched by ``fetch`` (url -> bytes, raising ImageError),
    by default ``safe_fetch.fetch`` with its public-addresses-only policy and MAX_DOWNLOAD_BYTES.
    A server passes e.g. ``functools.partial(safe_fetch.fetch, timeout=10)`` for its own limits.

    ``draft`` (w, h): a JPEG may be decoded at a reduced scale as long as both sides stay at
    least this large (PIL's draft mode); faster, not bit-identical to a full decode.
    """
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(src, LoadedImage):
        check_shape(*src.image.size, src.name, max_pixels, resize)
        return src
    name = describe(src)
    shape = (max_pixels, resize)
    if isinstance(src, Image.Image):
        return LoadedImage(_normalise(src, name, *shape), name)
    if isinstance(src, np.ndarray):
        img = _from_array(src, name, max_pixels)
        check_shape(img.width, img.height, name, *shape)
        return LoadedImage(img, name)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return LoadedImage(_decode(bytes(src), name, *shape, draft), name)
    if isinstance(src, os.PathLike):
        src = os.fspath(src)
    if not isinstance(src, str):
        raise ImageError(name, f"unsupported image type {type(src).__name__}")
    if src.startswith("data:"):
        return LoadedImage(_decode(_from_data_uri(src, name), name, *shape, draft), name)
    if src[:8].lower().startswith(("http://", "https://")):
        name = safe_fetch.redact(name)  # never a password or a signed URL's token in a name or an error
        if not allow_urls:
            raise ImageError(name, "image URLs are off; pass allow_urls=True (CLI: --allow-urls)")
        return LoadedImage(_decode(_download(src, fetch), name, *shape, draft), name)
    if len(src) <= PATH_MAX:
        path = Path(src)
        try:
            if path.is_file():
                return LoadedImage(_open_file(path, name, *shape, draft), name)
            if path.is_dir():
                raise ImageError(name, "is a directory; pass it in a list or use expand() to walk it")
        except OSError as e:  # e.g. a name too long for this file system: not a file, maybe data
            if len(src) <= 64 or not _BASE64_RE.match(src):
                raise ImageError(name, f"cannot be read ({e.strerror or e})") from None
    if len(src) > 64 and _BASE64_RE.match(src):
        try:
            data = base64.b64decode(src, validate=False)
        except (binascii.Error, ValueError) as e:
            raise ImageError(name, f"not valid base64 ({e})") from None
        return LoadedImage(_decode(data, name, *shape, draft), name)
    raise ImageError(name, "no such file (and not a URL, data URI or base64 image)")


def load_images(
    sources: ImageLike | Iterable[ImageLike],
    *,
    allow_urls: bool = False,
    max_pixels: int | None = None,
    skip_bad: bool = False,
    resize=None,
) -> Intake:
    """Take in many images. With ``skip_bad`` a bad one is reported and skipped, not raised."""
    images, errors = [], []
    for src in expand(sources):
        try:
            images.append(load_image(src, allow_urls=allow_urls, max_pixels=max_pixels, resize=resize))
        except ImageError as e:
            if not skip_bad:
                raise
            errors.append(e)
    return Intake(images, errors)


def describe(src) -> str:
    """A short human name for an image source, used in results and errors."""
    if isinstance(src, (str, os.PathLike)):
        s = os.fspath(src)
        if s.startswith("data:"):
            return f"<data URI, {len(s)} chars>"
        if len(s) > 200:
            return f"<string of {len(s)} chars>"
        return s
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, Image.Image):
        return getattr(src, "filename", "") or f"<PIL image {src.width}x{src.height} {src.mode}>"
    if isinstance(src, np.ndarray):
        return f"<array {tuple(src.shape)} {src.dtype}>"
    return f"<{type(src).__name__}>"


def _open_file(path: Path, name: str, max_pixels: int, resize, draft=None) -> Image.Image:
    try:
        if path.stat().st_size == 0:
            raise ImageError(name, "empty file")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:  # unreadable: permissions, a vanished file, an I/O error
        raise ImageError(name, f"cannot be read ({e.strerror or e})") from None
    return _decode(data, name, max_pixels, resize, draft)


def _decode(data: bytes, name: str, max_pixels: int, resize=None, draft=None) -> Image.Image:
    if not data:
        raise ImageError(name, "empty image data")
    try:
        with warnings.catch_warnings():
            # We apply our own pixel limit below; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(name, f"not an image in a format vlmzoo reads ({', '.join(FORMATS)})") from None
    except Image.DecompressionBombError as e:
        raise ImageError(name, f"refused as a decompression bomb ({e})") from None
    except OSError as e:
        raise ImageError(name, f"cannot be read: {e}") from None
    check_shape(img.width, img.height, name, max_pixels, resize)  # from the header, nothing decoded yet
    if draft is not None and img.format == "JPEG":
        img.draft(None, draft)  # DCT-domain downscale: decode only the pixels the model needs
    return _normalise(img, name, max_pixels, resize)


def check_shape(width: int, height: int, name: str, max_pixels: int | None, resize=None) -> None:
    """Refuse an image too big, too elongated, or that ``resize`` (a processor's size rule)
    would make too big, before any of its pixels are decoded or resized."""
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        raise PixelLimitError(name, f"{width}x{height} = {pixels:,} pixels is over the limit of {max_pixels:,}")
    if min(width, height) < 1:
        raise ImageError(name, f"{width}x{height} has no pixels")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(name, f"{width}x{height} has an aspect ratio of {ratio:,.0f}:1, over the limit of "
                               f"{MAX_ASPECT_RATIO}:1")
    resized = resized_size(resize, width, height)
    if resized is not None and resized[0] * resized[1] > MAX_RESIZED_PIXELS:
        raise ImageError(name, f"{width}x{height} would be resized to {resized[0]}x{resized[1]} by the model's "
                               f"preprocessing, over the limit of {MAX_RESIZED_PIXELS:,} pixels")


def resized_size(rule, width: int, height: int) -> tuple[int, int] | None:
    """The (width, height) a transformers image processor's ``size`` rule resizes an image to,
    where that grows with the image's aspect ratio (a resize by the shortest edge alone); None
    where the rule bounds the size itself (a fixed size, a longest edge, a pixel budget)."""
    shortest = _rule_value(rule, "shortest_edge")
    if shortest is None or any(_rule_value(rule, k) is not None for k in ("longest_edge", "height", "width",
                                                                           "max_pixels")):
        return None
    scale = shortest / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _rule_value(rule, key: str):
    if rule is None:
        return None
    return rule.get(key) if isinstance(rule, dict) else getattr(rule, key, None)


def _normalise(img: Image.Image, name: str, max_pixels: int, resize=None) -> Image.Image:
    """First frame, shape limits, full decode, EXIF orientation, RGB."""
    check_shape(img.width, img.height, name, max_pixels, resize)
    if getattr(img, "is_animated", False):
        img.seek(0)  # animated GIF/WebP/APNG: the first frame stands for the image
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        # truncated or corrupt data surfaces only when pixels are decoded
        raise ImageError(name, f"corrupt or truncated image data ({e})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose a readable image
        pass
    return _to_rgb(img, name)


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # composite on white: transparent pixels would otherwise turn black
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _from_array(np.asarray(img), name, None)
    try:
        return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    except (ValueError, OSError) as e:
        raise ImageError(name, f"cannot convert mode {mode} to RGB ({e})") from None


def _from_array(arr: np.ndarray, name: str, max_pixels: int | None) -> Image.Image:
    """HxW or HxWxC (C in 1, 3, 4) arrays; uint8 as is, uint16 and ints scaled, floats in [0, 1]."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(name, "array must be HxW, HxWx1, HxWx3 or HxWx4 (channels last)")
    if arr.size == 0:
        raise ImageError(name, "array is empty")
    if max_pixels is not None and arr.shape[0] * arr.shape[1] > max_pixels:
        raise ImageError(name, f"{arr.shape[1]}x{arr.shape[0]} pixels is over the limit of {max_pixels:,}")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(name, "array holds NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ImageError(name, "float arrays must hold values in [0, 1]")
        arr = np.round(arr * 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535 if arr.max(initial=0) > 255 else 255
        if arr.min(initial=0) < 0:
            raise ImageError(name, "integer arrays must not be negative")
        arr = np.round(arr.astype(np.float64) * (255 / top)).astype(np.uint8)
    else:
        raise ImageError(name, f"unsupported array dtype {arr.dtype}")
    img = Image.fromarray(np.ascontiguousarray(arr))
    return _to_rgb(img, name) if img.mode != "RGB" else img


def _from_data_uri(uri: str, name: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise ImageError(name, "malformed data URI (no comma)")
    if not header.startswith("data:image/") and header not in ("data:", "data:;base64"):
        raise ImageError(name, f"data URI is not an image ({header[5:] or 'no type'})")
    if not header.endswith(";base64"):
        raise ImageError(name, "data URI must be base64-encoded")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(name, f"data URI payload is not valid base64 ({e})") from None


def _download(url: str, fetch: Callable[[str], bytes] | None = None) -> bytes:
    # Never urllib.urlopen: URLs may come from untrusted clients (vlmzoo serve), and safe_fetch
    # refuses private/loopback/metadata addresses, pins the checked address and bounds size and time.
    if fetch is None:
        return safe_fetch.fetch(url, max_bytes=MAX_DOWNLOAD_BYTES)
    return fetch(url)
