"""ImageBind's audio preprocessing, held to the official code's output and its recorded steps.

tests/data/imagebind/audio-melspec.npy is what the official ``load_and_transform_audio_data``
(ImageBind 53680b02, torchaudio 2.11.1's pure-torch resample and Kaldi fbank) gave for the three
WAV files beside it; reference.json ``preprocessed.audio.recorded`` holds what it passed between
its steps. vlmzoo's reimplementation must give the same, stage by stage.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("soundfile")

from vlmzoo.errors import InputError, MissingDependencyError
from vlmzoo.families.imagebind import audio

DATA = Path(__file__).parent / "data" / "imagebind"
AUDIO = json.loads((DATA / "reference.json").read_text(encoding="utf-8"))["preprocessed"]["audio"]
RECORDED = AUDIO["recorded"]
FILES = AUDIO["files"]  # tone-16k-mono.wav, chirp-44k-stereo.wav, short-22k-mono.wav
EXPECTED = np.load(DATA / "audio-melspec.npy")
PER_FILE = pytest.mark.parametrize("i", range(len(FILES)), ids=[f.removesuffix(".wav") for f in FILES])
# The official numbers were made with torch 2.13 on x86-64 CPU. Bitwise equality is asserted only
# there: another BLAS or FFT may move last bits, and the tolerance tests still hold.
SAME_BUILD = torch.__version__.startswith("2.13") and platform.machine() in ("x86_64", "AMD64")


def sha256_f32(a) -> str:
    a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def wave_decode(path: Path) -> tuple[np.ndarray, int]:
    """Independent int16 PCM decode: channels-first int16 / 32768 in float32."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getcomptype() == "NONE"
        n, ch, rate = w.getnframes(), w.getnchannels(), w.getframerate()
        raw = np.frombuffer(w.readframes(n), dtype="<i2").reshape(n, ch).T
    return raw.astype(np.float32) / np.float32(32768.0), rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def outputs() -> list[torch.Tensor]:
    return [audio.load_audio(DATA / f) for f in FILES]


@pytest.fixture(scope="module")
def fbank_calls() -> list[dict]:
    """Every fbank call of the three files, recorded as the reference driver recorded them."""
    calls = []
    real = audio.fbank

    def recording(w):
        calls.append({"shape": list(w.shape), "sum": float(w.double().sum()), "sha256": sha256_f32(w)})
        out = real(w)
        calls[-1]["n_frames"] = out.shape[0]
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(audio, "fbank", recording)  # melspec_clips looks fbank up at call time
        for f in FILES:
            audio.load_audio(DATA / f)
    return calls


# --------------------------------------------------------------------------- final output


@PER_FILE
def test_load_audio_equals_official_output(outputs, i):
    out = outputs[i]
    assert out.shape == (3, 1, 128, 204) and out.dtype == torch.float32
    diff = np.abs(out.numpy() - EXPECTED[i]).max()
    assert diff <= 1e-4, f"{FILES[i]}: max abs difference {diff}"
    assert out.double().sum(dim=(1, 2, 3)).tolist() == pytest.approx(AUDIO["per_file"][i]["per_clip_sum"], abs=0.05)


@pytest.mark.skipif(not SAME_BUILD, reason="bitwise only on the build the reference was made with")
def test_bitwise_equal_to_official(outputs):
    for i, out in enumerate(outputs):
        assert sha256_f32(out) == AUDIO["per_file"][i]["sha256_f32"], FILES[i]
    assert sha256_f32(torch.stack(outputs)) == AUDIO["sha256_f32"]


def test_padded_frames_and_normalisation(outputs):
    # The short file has 128 fbank frames: frames 128..203 are zero pads normalised with the rest.
    pad = (np.float32(0) - np.float32(audio.MEAN)) / np.float32(audio.STD)
    short = outputs[2].numpy()
    assert np.all(short[..., 128:] == pad)
    assert pad == pytest.approx(0.46706066)
    assert not np.any(short[..., 127] == pad)
    # 2 s clips give 198 frames, padded to 204.
    assert np.all(outputs[0].numpy()[..., 198:] == pad)


# --------------------------------------------------------------------------- decoding


@PER_FILE
def test_read_audio_equals_stdlib_wave(i):
    samples, rate = audio.read_audio(DATA / FILES[i])
    ref, ref_rate = wave_decode(DATA / FILES[i])
    assert rate == ref_rate
    assert samples.dtype == np.float32 and samples.flags.c_contiguous
    assert np.array_equal(samples, ref)
    rec = RECORDED["load"][i]
    assert rec["file"] == FILES[i] and rate == rec["sample_rate"]
    assert list(samples.shape) == rec["waveform"]["shape"]
    assert sha256_f32(samples) == rec["waveform"]["sha256_f32"]  # decoding is exact everywhere
    assert float(samples.astype(np.float64).sum()) == pytest.approx(rec["waveform"]["sum"], rel=1e-12)


def test_flac_decodes_like_wav(tmp_path):
    import soundfile

    samples, rate = audio.read_audio(DATA / "tone-16k-mono.wav")
    flac = tmp_path / "tone.flac"
    soundfile.write(flac, samples.T, rate, subtype="PCM_16")  # lossless: the same int16 samples
    again, again_rate = audio.read_audio(flac)
    assert again_rate == rate and np.array_equal(again, samples)
    assert torch.equal(audio.load_audio(flac), audio.load_audio(DATA / "tone-16k-mono.wav"))


# --------------------------------------------------------------------------- stages


def test_resample_matches_recorded():
    resampled = RECORDED["resample"]
    assert [r["orig_freq"] for r in resampled] == [44100, 22050]
    for f, rec in zip(FILES[1:], resampled):
        samples, rate = audio.read_audio(DATA / f)
        assert rate == rec["orig_freq"] and list(samples.shape) == rec["in_shape"]
        out = audio.resample(torch.from_numpy(samples), rate, 16000)
        stats = rec["out"]
        assert list(out.shape) == stats["shape"]  # (2, 40000) and (1, 20800)
        assert float(out.double().sum()) == pytest.approx(stats["sum"], abs=1e-4)
        assert float(out.double().abs().sum()) == pytest.approx(stats["abs_sum"], rel=1e-6)
        assert float(out.min()) == pytest.approx(stats["min"], abs=1e-6)
        assert float(out.max()) == pytest.approx(stats["max"], abs=1e-6)
        if SAME_BUILD:
            assert sha256_f32(out) == stats["sha256_f32"], f


def test_resample_same_rate_is_identity_and_length_rounds_up():
    x = torch.randn(2, 1001, generator=torch.Generator().manual_seed(0))
    assert audio.resample(x, 16000, 16000) is x
    assert audio.resample(x, 44100, 16000).shape == (2, 364)  # ceil(1001 * 160 / 441)
    assert audio.resample(x, 8000, 16000).shape == (2, 2002)


def test_clip_spans_match_recorded_fractions():
    lengths = [48000, 40000, 20800]  # the three files at 16 kHz
    for n, rec in zip(lengths, RECORDED["clip_timepoints"]):
        assert rec["duration"] == n / 16000
        want = [(int(Fraction(a) * 16000), int(Fraction(b) * 16000)) for a, b in rec["clips"]]
        assert audio.clip_spans(n) == want
    assert audio.clip_spans(48000) == [(0, 32000), (8000, 40000), (16000, 48000)]
    assert audio.clip_spans(40000) == [(0, 32000), (4000, 36000), (8000, 40000)]
    # Exactly 2 s or shorter: three identical clips over the whole waveform.
    assert audio.clip_spans(32000) == [(0, 32000)] * 3
    assert audio.clip_spans(20800) == [(0, 32000)] * 3


def test_fbank_inputs_match_recorded(fbank_calls):
    recorded = RECORDED["fbank"]
    assert len(fbank_calls) == len(recorded) == 9
    for k, (got, rec) in enumerate(zip(fbank_calls, recorded)):
        assert got["shape"] == rec["in_shape"], k
        assert got["n_frames"] == rec["n_frames"], k  # 198 for 2 s, 128 for the 1.3 s file
        assert got["sum"] == pytest.approx(rec["in_sum"], abs=2e-6), k
        if SAME_BUILD:
            assert got["sha256"] == rec["in_sha256_f32"], k


def test_inplace_mean_subtraction_on_shared_waveform(outputs):
    """Clips processed on independent copies differ from the official output by what the
    reference recorded: the in-place quirk is reproduced, not fixed."""
    effects = AUDIO["inplace_mean_subtraction_effect"]
    pad_to = audio.TARGET_FRAMES
    for i, f in enumerate(FILES):
        samples, rate = audio.read_audio(DATA / f)
        wave16 = audio.resample(torch.from_numpy(samples), rate, 16000)
        for k, (a, b) in enumerate(audio.clip_spans(wave16.shape[1])):
            clip = wave16[:, a:b].clone()
            clip -= clip.mean()
            spec = audio.fbank(clip).T
            spec = torch.nn.functional.pad(spec, (0, pad_to - spec.shape[1]))[None]
            independent = (spec - np.float32(audio.MEAN)) / np.float32(audio.STD)
            diff = float((independent - outputs[i][k]).abs().max())
            want = effects[i]["max_abs_diff_per_clip_vs_independent_copies"][k]
            assert diff == pytest.approx(want, abs=1e-4), (f, k)
    assert effects[0]["max_abs_diff_per_clip_vs_independent_copies"][1] > 1.0  # the DC-offset tone


def test_fbank_frames_channel_zero_and_silence():
    x = torch.randn(2, 32000, generator=torch.Generator().manual_seed(1)) * 0.1
    out = audio.fbank(x)
    assert out.shape == (198, 128) and out.dtype == torch.float32
    assert torch.equal(out, audio.fbank(x[:1]))  # the second channel is ignored
    assert audio.fbank(torch.zeros(1, 559)).shape == (1, 128)  # 1 + (559 - 400) // 160
    assert audio.fbank(torch.zeros(1, 560)).shape == (2, 128)
    silent = audio.fbank(torch.zeros(1, 400))
    assert torch.equal(silent, torch.full((1, 128), float(np.log(np.float32(np.finfo(np.float32).eps)))))


def test_melspec_clips_leaves_the_callers_array_alone():
    samples, rate = audio.read_audio(DATA / "tone-16k-mono.wav")
    before = samples.copy()
    out = audio.melspec_clips(samples, rate)
    assert np.array_equal(samples, before)
    assert torch.equal(out, audio.melspec_clips(samples[0], rate))  # 1-D means one channel
    assert np.array_equal(out.numpy(), EXPECTED[0])


# --------------------------------------------------------------------------- bad input


def _missing(tmp_path):
    return tmp_path / "missing.wav"


def _empty(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    return p


def _no_frames(tmp_path):
    return write_wav(tmp_path / "no-frames.wav", [], 16000)


def _not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("these are notes, not audio\n" * 10)
    return p


def _cut_header(tmp_path):
    p = tmp_path / "cut.wav"
    p.write_bytes((DATA / "tone-16k-mono.wav").read_bytes()[:30])
    return p


def _low_rate(tmp_path):
    return write_wav(tmp_path / "phone-4k.wav", np.zeros(4000), 4000)


def _too_short(tmp_path):
    return write_wav(tmp_path / "click.wav", np.ones(100), 16000)


def _directory(tmp_path):
    p = tmp_path / "folder.wav"
    p.mkdir()
    return p


@pytest.mark.parametrize(
    "make, words",
    [
        (_missing, "no such audio file"),
        (_empty, "empty file"),
        (_no_frames, "0 frames"),
        (_not_audio, "not audio"),
        (_cut_header, "not audio"),
        (_low_rate, "4000 Hz is too low"),
        (_too_short, "shorter than one 25 ms fbank frame"),
        (_directory, "directory"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_bad_input_names_the_file(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        audio.load_audio(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_missing_soundfile_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"vlmzoo\[imagebind\]"):
        audio.read_audio(DATA / FILES[0])
