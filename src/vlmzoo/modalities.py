"""Inputs other than images and text, for models that embed more modalities (ImageBind).

Each is a small typed wrapper around a file path or an array, so a call says what its input is:
``model.embed(Audio("rain.wav"))``. A plain path or PIL image stays an image and a plain string
stays a text, as everywhere else in vlmzoo. Reading and checking the file is the model's
preprocessing (families/imagebind/processing.py), which names the file in every error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmzoo.errors import InputError

Source = str | os.PathLike | np.ndarray | bytes


@dataclass(frozen=True, eq=False)
class _Input:
    source: Source
    label: str | None = None  # what results and errors call it, if not the path (a request's "input.3")
    modality = ""

    def __post_init__(self):
        if not isinstance(self.source, (str, os.PathLike, np.ndarray, bytes)):
            raise InputError(f"{type(self).__name__} takes a file path, a numpy array or a file's bytes, "
                             f"got {type(self.source).__name__}")

    @property
    def name(self) -> str:
        """What results call this input: its label, the path as given, or a description of the data."""
        if self.label is not None:
            return self.label
        if isinstance(self.source, np.ndarray):
            return f"<{self.modality} array {'x'.join(map(str, self.source.shape))}>"
        if isinstance(self.source, bytes):
            return f"<{self.modality} file of {len(self.source)} bytes>"
        return os.fspath(self.source)

    @property
    def path(self) -> Path | None:
        return Path(self.source) if isinstance(self.source, (str, os.PathLike)) else None


@dataclass(frozen=True, eq=False)
class Audio(_Input):
    """A sound: a WAV / FLAC / OGG file (path or bytes), or a float array (channels, samples) with its ``rate``."""

    rate: int | None = None
    modality = "audio"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.source, np.ndarray) and not isinstance(self.rate, int):  # bytes carry their rate
            raise InputError("Audio(array) needs rate=<samples per second>")


@dataclass(frozen=True, eq=False)
class Depth(_Input):
    """A depth map: a single-channel 16-bit PNG in millimetres (0 = no measurement), or a float
    array / .npy file of disparity, the quantity ImageBind's depth encoder was trained on."""

    modality = "depth"


@dataclass(frozen=True, eq=False)
class Thermal(_Input):
    """A thermal image: a single-channel (or RGB, taken as luminance) image file or array."""

    modality = "thermal"


@dataclass(frozen=True, eq=False)
class IMU(_Input):
    """An IMU series: accelerometer x, y, z then gyroscope x, y, z, as a (6, samples) or
    (samples, 6) array, .npy file or CSV file."""

    modality = "imu"


TYPED = (Audio, Depth, Thermal, IMU)
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"})


def modality_of(item) -> str | None:
    """The modality a typed input declares, or None for anything else (an image or a text)."""
    return item.modality if isinstance(item, TYPED) else None
