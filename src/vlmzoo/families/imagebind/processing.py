"""ImageBind's inputs, from files to model tensors, as the official code prepares them.

- images: shorter side to 224 with PIL's bicubic, the long side truncated
  (int(224 * long / short)), a centre crop whose offset rounds half to even, then CLIP's mean and
  std (imagebind/data.py, load_and_transform_vision_data);
- audio: audio.py;
- text: tokenizer.py;
- depth, thermal and IMU: the repository has no loaders for them (its issues ask for them). The
  model inputs are what its encoders were trained on: depth as *disparity* (B, 1, 224, 224),
  thermal as one channel in [0, 1], IMU as (6, 2000) (10 s at 200 Hz). The recipes turning files
  into those are vlmzoo's, labelled as such: depth from millimetres to disparity with the
  conversion an ImageBind author gave for Omnivore (NYU-v2 focal length, a Kinect baseline),
  then the vision resize and crop; thermal as a grey image resized and cropped like vision.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vlmzoo.errors import InputError
from vlmzoo.modalities import IMU, Depth, Thermal

SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# depth (mm) -> disparity: baseline (m) x focal length (px), Omnivore's conversion for NYU-v2
DISPARITY_NUMERATOR = np.float32(0.075 * 518.857901)
DEPTH_RANGE_M = (0.01, 50.0)  # 0 mm (no measurement) becomes the nearest depth, as in the recipe
IMU_CHANNELS, IMU_SAMPLES = 6, 2000
MAX_SIDE = 16384  # a depth / thermal / IMU file larger than this per side is refused before decoding


def resized_size(width: int, height: int) -> tuple[int, int]:
    """torchvision's Resize(224) rule: the shorter side 224, the longer truncated."""
    if width <= height:
        return SIZE, int(SIZE * height / width)
    return int(SIZE * width / height), SIZE


def center_crop_box(width: int, height: int) -> tuple[int, int]:
    """(left, top) of the 224 crop: offsets rounded half to even, as torchvision's CenterCrop."""
    return round((width - SIZE) / 2.0), round((height - SIZE) / 2.0)


def resize_crop(image: Image.Image) -> Image.Image:
    w, h = resized_size(*image.size)
    image = image.resize((w, h), Image.BICUBIC)
    left, top = center_crop_box(w, h)
    return image.crop((left, top, left + SIZE, top + SIZE))


def vision_pixels(images: list[Image.Image]) -> torch.Tensor:
    """(B, 3, 224, 224) normalised pixels of RGB images."""
    mean, std = np.array(CLIP_MEAN, np.float32), np.array(CLIP_STD, np.float32)
    arrays = [(np.asarray(resize_crop(im), np.float32) / np.float32(255) - mean) / std for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# -- depth ---------------------------------------------------------------------------------------


def depth_input(item: Depth) -> torch.Tensor:
    """(1, 224, 224) disparity for one depth map."""
    name = item.name
    if _is_array(item):
        disparity = _float_map(_array(item), name, "disparity")
    else:
        image = _open(item, "depth map")
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise InputError(f"{name}: a depth map must be a single-channel 16-bit PNG in millimetres "
                             f"(or a float disparity .npy); this image is mode {image.mode}")
        metres = np.asarray(image, np.float32) / np.float32(1000)
        disparity = DISPARITY_NUMERATOR / np.clip(metres, *DEPTH_RANGE_M).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(disparity, np.float32))[None, None]
    h, w = x.shape[-2:]
    nw, nh = resized_size(w, h)
    x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    left, top = center_crop_box(nw, nh)
    return x[0, :, top:top + SIZE, left:left + SIZE].contiguous()


# -- thermal -------------------------------------------------------------------------------------


def thermal_input(item: Thermal) -> torch.Tensor:
    """(1, 224, 224) in [0, 1] for one thermal image."""
    if _is_array(item):
        array = _float_map(_array(item), item.name, "thermal image")
        if array.dtype != np.uint8:
            raise InputError(f"{item.name}: a thermal array must be uint8 grey levels, got {array.dtype}")
        image = Image.fromarray(array, "L")
    else:
        image = _open(item, "thermal image")
        if image.mode.startswith("I") or image.mode == "F":
            raise InputError(f"{item.name}: a thermal image must be 8-bit (grey or RGB); this one is mode "
                             f"{image.mode} (save radiometric data as 8-bit grey levels)")
        image = image.convert("L")
    pixels = np.asarray(resize_crop(image), np.float32) / np.float32(255)
    return torch.from_numpy(pixels)[None]


# -- IMU -----------------------------------------------------------------------------------------


def imu_input(item: IMU) -> torch.Tensor:
    """(6, 2000) float32 for one IMU series."""
    name = item.name
    if isinstance(item.source, np.ndarray):
        array = item.source
    elif isinstance(item.source, bytes):
        raise InputError(f"{name}: an IMU series is an array, a .npy file or a CSV file, not bytes")
    elif item.path.suffix.lower() == ".csv":
        array = _read_csv(item)
    else:
        array = _array(item)
    if not np.issubdtype(array.dtype, np.number) or array.ndim != 2:
        raise InputError(f"{name}: an IMU series must be a 2-D numeric array, got {array.ndim}-D {array.dtype}")
    if array.shape[0] != IMU_CHANNELS and array.shape[1] == IMU_CHANNELS:
        array = array.T  # (samples, 6) as CSV files hold it
    if array.shape != (IMU_CHANNELS, IMU_SAMPLES):
        raise InputError(f"{name}: ImageBind's IMU encoder takes 6 channels (accelerometer x, y, z, gyroscope "
                         f"x, y, z) x 2000 samples (10 s at 200 Hz); got shape {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: the IMU series holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))


# -- reading ---------------------------------------------------------------------------------------


def _open(item, what: str) -> Image.Image:
    """A depth or thermal image file (path or bytes), its size checked before its pixels are
    decoded; only the raster formats vlmzoo's image intake decodes."""
    import io

    from vlmzoo.images import DEFAULT_MAX_PIXELS, FORMATS

    if isinstance(item.source, bytes):
        source = io.BytesIO(item.source)
    elif item.path.is_file():
        source = item.path
    else:
        raise InputError(f"{item.name}: no such {what} file")
    try:
        image = Image.open(source, formats=FORMATS)
        if image.width * image.height > DEFAULT_MAX_PIXELS or max(image.size) > MAX_SIDE:
            raise InputError(f"{item.name}: {image.width}x{image.height} is too large for a {what}")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{item.name}: not a readable {what} ({type(e).__name__}: {e})") from None
    return image


def _is_array(item) -> bool:
    """An array, or a .npy file of one (not an image file)."""
    return isinstance(item.source, np.ndarray) or (item.path is not None and item.path.suffix.lower() == ".npy")


def _array(item) -> np.ndarray:
    if isinstance(item.source, np.ndarray):
        return item.source
    path = item.path
    if not path.is_file():
        raise InputError(f"{item.name}: no such file")
    try:
        return np.load(path, allow_pickle=False)  # never a pickle: an .npy holding objects is refused
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{item.name}: not a readable .npy array ({e})") from None


def _read_csv(item) -> np.ndarray:
    path = item.path
    if not path.is_file():
        raise InputError(f"{item.name}: no such file")
    if os.path.getsize(path) > 64 * 1024 * 1024:
        raise InputError(f"{item.name}: larger than 64 MiB; an IMU series of 2000 samples is far smaller")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
        if rows and not _numeric(rows[0]):
            rows = rows[1:]  # a header row
        return np.array([[float(v) for v in r] for r in rows], dtype=np.float32)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{item.name}: not a CSV of numbers ({e})") from None


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
        return True
    except ValueError:
        return False


def _float_map(array: np.ndarray, name: str, what: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{name}: a {what} must be a 2-D numeric array (H, W), got shape "
                         f"{tuple(array.shape)} of {array.dtype}")
    if max(array.shape) > MAX_SIDE or min(array.shape) < 1:
        raise InputError(f"{name}: a {what} of shape {tuple(array.shape)} is out of range")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"{name}: the {what} holds NaN or infinite values")
    return array
