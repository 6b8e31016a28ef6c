"""ImageBind's audio input, reimplemented: a sound file in, the (3, 1, 128, 204) log-mel clips
the audio encoder takes out.

It reproduces the official ``imagebind.data.load_and_transform_audio_data`` (commit 53680b02) with
its defaults, step by step and with the same float32 arithmetic, so the output is bit for bit the
official one (tests/data/imagebind/audio-melspec.npy):

1. decode to float32 (channels, frames), int16 as samples / 32768 (``read_audio``);
2. resample to 16 kHz as ``torchaudio.functional.resample`` does (``resample``);
3. three 2 s clips spread evenly with pytorchvideo's exact Fraction arithmetic (``clip_spans``);
4. per clip, in order: subtract the clip's mean **in place** from the shared waveform, Kaldi fbank
   of channel 0 as ``torchaudio.compliance.kaldi.fbank`` computes it (``fbank``), pad or cut to 204
   frames, then normalise (``melspec_clips``).

torchaudio itself is not used: its PyPI wheel is a CUDA build, and only two of its pure-torch
functions are needed. Decoding goes through soundfile, which bundles libsndfile.
"""

from __future__ import annotations

import functools
import io
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlmzoo.errors import InputError
from vlmzoo.extras import require

# The encoder was trained on 16 kHz audio: every file is resampled to this rate.
SAMPLE_RATE = 16000
# Each clip the encoder sees is 2 s long (pytorchvideo's clip_duration=2).
CLIP_SECONDS = 2
# Three clips spread evenly over the file; the model averages their embeddings.
CLIPS = 3
# Mel bins: the height of the spectrogram "image" the audio stem's 16x16 patches cover.
MEL_BINS = 128
# Frames kept per clip: 2 s give 198 fbank frames, padded to the width the 12x19 patch grid needs.
TARGET_FRAMES = 204
# Mean of the log-mel values over AudioSet (AST's statistics): centres the encoder's input.
MEAN = -4.268
# Their standard deviation: brings the encoder's input to about unit spread.
STD = 9.138
# Below this the file holds nothing of the upper part of the 128-bin mel bank (up to 8 kHz).
MIN_SAMPLE_RATE = 8000

# Kaldi fbank framing at 16 kHz: 25 ms windows every 10 ms, FFT zero-padded to a power of two.
_WINDOW = SAMPLE_RATE * 25 // 1000  # 400 samples
_SHIFT = SAMPLE_RATE * 10 // 1000  # 160 samples
_FFT = 512
_PREEMPHASIS = 0.97
_LOW_HZ, _HIGH_HZ = 20.0, SAMPLE_RATE / 2  # Kaldi defaults: low_freq 20, high_freq 0 = Nyquist
# Kaldi floors every mel energy at float32's epsilon before the log.
_EPS = torch.tensor(torch.finfo(torch.float32).eps)

# torchaudio.functional.resample defaults.
_LOWPASS_WIDTH = 6
_ROLLOFF = 0.99

# What libsndfile (inside soundfile) decodes; named in the error for a file it cannot read.
_FORMATS = "WAV, FLAC, OGG/Vorbis, MP3, AIFF and the other formats libsndfile reads"


# --------------------------------------------------------------------------- decoding


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The file's samples as float32 ``(channels, frames)`` and its sample rate.

    Integer PCM is scaled as torchaudio.load scales it (int16: samples / 32768 exactly), which is
    libsndfile's own float conversion. Anything that cannot become ImageBind input raises an
    InputError naming the file.
    """
    name = os.fspath(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{name}: no such audio file")
    if p.is_dir():
        raise InputError(f"{name}: is a directory, not an audio file")
    try:
        if p.stat().st_size == 0:
            raise InputError(f"{name}: empty file")
    except OSError as e:
        raise InputError(f"{name}: cannot be read ({e.strerror or e})") from None
    return _decode(name, name)


def decode_audio(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """``read_audio`` for the bytes of an audio file (a server request's); ``name`` is what
    errors call it."""
    if not data:
        raise InputError(f"{name}: empty audio")
    return _decode(io.BytesIO(data), name)


def _decode(source, name: str) -> tuple[np.ndarray, int]:
    sf = require("soundfile", "imagebind", "ImageBind's audio input")
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:  # not audio, truncated, or an encoding libsndfile lacks
        raise InputError(f"{name}: not audio in a format vlmzoo reads ({_FORMATS}): {e.error_string}") from None
    except OSError as e:  # permissions, a vanished file, an I/O error
        raise InputError(f"{name}: cannot be read ({e.strerror or e})") from None
    if data.shape[0] == 0:
        raise InputError(f"{name}: holds no audio (0 frames)")
    check_rate(rate, name)
    # soundfile gives (frames, channels); the official loader works on contiguous channels-first.
    return np.ascontiguousarray(data.T), int(rate)


def check_rate(rate, name: str) -> None:
    if not isinstance(rate, (int, np.integer)) or rate < MIN_SAMPLE_RATE:
        raise InputError(
            f"{name}: sample rate {rate} Hz is too low for ImageBind, whose 128-bin mel filterbank "
            f"reaches 8 kHz (need at least {MIN_SAMPLE_RATE} Hz)"
        )


# --------------------------------------------------------------------------- resampling


@functools.lru_cache(maxsize=8)
def _sinc_kernel(orig: int, new: int, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """Hann-windowed sinc filters, one per output phase: (new, 1, 2*width + orig), and width.

    ``orig`` and ``new`` are already divided by their gcd. Every step is in ``dtype`` (float32 for
    a float32 waveform) and in torchaudio's order, because each rounding shows in the last bits.
    """
    cutoff = min(orig, new) * _ROLLOFF  # low-pass below both Nyquists (also hides edge artefacts)
    width = math.ceil(_LOWPASS_WIDTH * orig / cutoff)  # taps reaching 6 zero crossings each side
    taps = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    phases = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new
    t = (phases + taps) * cutoff
    t = t.clamp(-_LOWPASS_WIDTH, _LOWPASS_WIDTH)
    window = torch.cos(t * math.pi / _LOWPASS_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    return sinc * (window * (cutoff / orig)), width


def resample(waveform: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``waveform`` (..., time) from ``orig`` Hz to ``new`` Hz, equal to
    ``torchaudio.functional.resample(waveform, orig, new)`` with its defaults."""
    if orig <= 0 or new <= 0:
        raise InputError(f"sample rates must be positive, got {orig} and {new}")
    if orig == new:
        return waveform
    g = math.gcd(int(orig), int(new))
    orig, new = int(orig) // g, int(new) // g
    kernel, width = _sinc_kernel(orig, new, waveform.dtype)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    length = flat.shape[-1]
    # One strided convolution computes every output phase: output j uses input j*orig/new.
    padded = F.pad(flat, (width, width + orig))
    phased = F.conv1d(padded[:, None], kernel, stride=orig)  # (batch, new, blocks)
    out = phased.transpose(1, 2).reshape(flat.shape[0], -1)
    out = out[..., : math.ceil(new * length / orig)]
    return out.view(shape[:-1] + out.shape[-1:])


# --------------------------------------------------------------------------- Kaldi fbank


def _mel(hz):
    """Kaldi's (HTK) mel scale, for a Python float or a tensor."""
    if isinstance(hz, torch.Tensor):
        return 1127.0 * (1.0 + hz / 700.0).log()
    return 1127.0 * math.log(1.0 + hz / 700.0)


@functools.lru_cache(maxsize=1)
def _mel_bank() -> torch.Tensor:
    """(MEL_BINS, FFT/2 + 1) triangular filters evenly spaced in mel from 20 Hz to 8 kHz.

    The edges are float32 tensors built as Kaldi's port builds them (Python-float mel edges,
    float32 grid); the Nyquist column is zero.
    """
    low, high = _mel(_LOW_HZ), _mel(_HIGH_HZ)
    step = (high - low) / (MEL_BINS + 1)  # n+1 steps: each triangle spans two of them
    k = torch.arange(MEL_BINS).unsqueeze(1)
    left = low + k * step
    centre = low + (k + 1.0) * step
    right = low + (k + 2.0) * step
    fft_mel = _mel((SAMPLE_RATE / _FFT) * torch.arange(_FFT / 2)).unsqueeze(0)
    rising = (fft_mel - left) / (centre - left)
    falling = (right - fft_mel) / (right - centre)
    bank = torch.minimum(rising, falling).clamp(min=0.0)
    return F.pad(bank, (0, 1))


@functools.lru_cache(maxsize=1)
def _hann() -> torch.Tensor:
    # Kaldi's "hanning" is the symmetric window (periodic=False).
    return torch.hann_window(_WINDOW, periodic=False, dtype=torch.float32).unsqueeze(0)


def fbank(waveform: torch.Tensor) -> torch.Tensor:
    """Log mel energies ``(frames, 128)`` of channel 0 of ``waveform`` (channels, samples) at
    16 kHz, equal to ImageBind's ``torchaudio.compliance.kaldi.fbank`` call.

    Frames are the windows that fit whole (snip_edges): ``1 + (samples - 400) // 160``.
    """
    x = waveform[0]  # channel=-1 (Kaldi's "mono") means channel 0: other channels are ignored
    if x.shape[0] < _WINDOW:
        raise InputError(f"{x.shape[0]} samples at 16 kHz is shorter than one 25 ms fbank frame ({_WINDOW})")
    frames = x.unfold(0, _WINDOW, _SHIFT)  # (m, 400) overlapping views
    frames = frames - frames.mean(dim=1, keepdim=True)  # DC removal per frame
    # Pre-emphasis x[j] - 0.97 x[j-1], the first sample standing in for its own predecessor.
    previous = torch.cat((frames[:, :1], frames[:, :-1]), dim=1)
    frames = frames - _PREEMPHASIS * previous
    frames = F.pad(frames * _hann(), (0, _FFT - _WINDOW))
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (m, 257); abs then square, as Kaldi's port does
    energies = torch.mm(power, _mel_bank().T)
    return torch.maximum(energies, _EPS).log()


# --------------------------------------------------------------------------- clips


def clip_spans(frames: int) -> list[tuple[int, int]]:
    """The ``CLIPS`` sample ranges ``[start, end)`` of a 16 kHz waveform of ``frames`` samples.

    pytorchvideo's ConstantClipsPerVideoSampler: the duration is a float, the start step an exact
    Fraction of it, and the sample indices are truncated. A file shorter than a clip gives
    ``CLIPS`` identical ranges over the whole file (slicing stops at its end).
    """
    duration = frames / SAMPLE_RATE
    clip = Fraction(CLIP_SECONDS)
    latest_start = Fraction(max(duration - clip, 0))  # float minus Fraction is a float
    step = latest_start / max(CLIPS - 1, 1)
    spans = []
    for k in range(CLIPS):
        start = step * k
        spans.append((int(start * SAMPLE_RATE), int((start + clip) * SAMPLE_RATE)))
    return spans


def melspec_clips(waveform: np.ndarray, rate: int) -> torch.Tensor:
    """Normalised log-mel clips ``(3, 1, 128, 204)`` of float32 ``(channels, frames)`` samples at
    ``rate`` Hz (a 1-D array is one channel). The caller's array is not modified."""
    w = np.asarray(waveform, dtype=np.float32)
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
        raise InputError(f"expected audio samples as (channels, frames), got shape {tuple(w.shape)}")
    # torch.tensor copies (contiguous): the in-place steps below must not reach the caller's array.
    wave = torch.tensor(w)
    if rate != SAMPLE_RATE:
        wave = resample(wave, rate, SAMPLE_RATE)
    if wave.shape[1] < _WINDOW:
        raise InputError(
            f"audio of {w.shape[1]} frames at {rate} Hz is shorter than one 25 ms fbank frame "
            f"({_WINDOW} samples at 16 kHz)"
        )
    specs = []
    for start, end in clip_spans(wave.shape[1]):
        clip = wave[:, start:end]
        # Upstream subtracts the mean (over all channels) in place on this view of the shared
        # waveform, so overlapping later clips start from samples earlier clips already shifted.
        clip -= clip.mean()
        spec = fbank(clip).T  # (128, frames)
        # Pad with zeros or cut to the model's width *before* normalising: pads become 0.467.
        missing = TARGET_FRAMES - spec.shape[1]
        spec = F.pad(spec, (0, missing)) if missing > 0 else spec[:, :TARGET_FRAMES]
        # Upstream logs a "Large gap" warning when more than 20% is padded or cut; we stay quiet.
        specs.append(spec.unsqueeze(0))
    clips = torch.stack(specs)
    # Float32 constants, subtract then divide: torchvision's Normalize on each clip.
    return (clips - torch.tensor(MEAN, dtype=torch.float32)) / torch.tensor(STD, dtype=torch.float32)


def load_audio(path: str | os.PathLike) -> torch.Tensor:
    """ImageBind's audio input ``(3, 1, 128, 204)`` for one sound file."""
    samples, rate = read_audio(path)
    try:
        return melspec_clips(samples, rate)
    except InputError as e:
        raise InputError(f"{os.fspath(path)}: {e}") from None
