"""Writes the sample-audio benchmark's clips and tables (run from anywhere; deterministic).

Six 0.8-second 16 kHz mono 16-bit WAV files, two per class, synthesised with numpy (nothing
recorded or downloaded): a siren (a tone sweeping up and down), a clock ticking (short decaying
clicks) and rain (filtered noise with drops). They are laid out as ESC-50 publishes its data
(audio/<fold>-<source>-<take>-<target>.wav, meta/esc50.csv; the targets are ESC-50's own class
indices, the source ids are made up) and captioned in captions.csv in Clotho's layout
(file_name, caption_1, ...). ``python make_audio.py [folder]`` rewrites them into ``folder``
(default: next to this file).
"""

from __future__ import annotations

import csv
import sys
import wave
from pathlib import Path

import numpy as np

RATE = 16_000
SECONDS = 0.8

# (category, ESC-50 target, in ESC-10, per clip: (fold, made-up source id, captions))
CLASSES = [
    ("siren", 42, False, [
        (1, 900001, ["A siren wails, rising and falling in pitch.",
                     "An emergency siren sweeps up and down.",
                     "A high tone slides up and then back down."]),
        (2, 900002, ["A fast yelping siren.",
                     "A siren quickly warbles between low and high.",
                     ""]),  # an empty cell: this clip has two captions
    ]),
    ("clock_tick", 38, True, [
        (1, 900003, ["A clock ticks steadily.",
                     "Regular sharp clicks of a mechanical clock.",
                     "Ticking at an even pace."]),
        (2, 900004, ["A fast ticking clock.",
                     "Quick clicks in a steady rhythm.",
                     "A watch ticking close to the microphone."]),
    ]),
    ("rain", 10, True, [
        (1, 900005, ["Rain falls steadily.",
                     "The hiss of heavy rain.",
                     "Water pours down in a constant shower."]),
        (2, 900006, ["Light rain with drops pattering.",
                     "Raindrops tapping on a surface.",
                     "A soft shower of rain."]),
    ]),
]


def _siren(rng, variant: int) -> np.ndarray:
    t = np.arange(int(RATE * SECONDS)) / RATE
    sweeps = 1.25 if variant == 1 else 5.0  # slow wail or fast yelp
    freq = 900 + 500 * np.sin(2 * np.pi * sweeps * t)
    return 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / RATE)


def _clock(rng, variant: int) -> np.ndarray:
    out = np.zeros(int(RATE * SECONDS))
    period = 0.2 if variant == 1 else 0.1
    click = np.exp(-np.arange(400) / 40.0) * np.sin(2 * np.pi * 3000 * np.arange(400) / RATE)
    for start in np.arange(0.02, SECONDS - 0.03, period):
        i = int(start * RATE)
        out[i:i + len(click)] += 0.8 * click
    return out + 0.003 * rng.standard_normal(len(out))


def _rain(rng, variant: int) -> np.ndarray:
    n = int(RATE * SECONDS)
    noise = rng.standard_normal(n)
    smooth = np.convolve(noise, np.ones(4) / 4, mode="same")  # a little low-pass: hiss, not white
    out = (0.25 if variant == 1 else 0.1) * smooth
    for i in rng.integers(0, n - 300, size=20 if variant == 1 else 40):
        out[i:i + 300] += 0.3 * np.exp(-np.arange(300) / 30.0) * rng.standard_normal(300)
    return out


SOUNDS = {"siren": _siren, "clock_tick": _clock, "rain": _rain}


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def main(folder: Path) -> None:
    rng = np.random.default_rng(2015)  # the year ESC-50 was published
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    (folder / "meta").mkdir(exist_ok=True)
    meta, captions = [], []
    for category, target, esc10, clips in CLASSES:
        for variant, (fold, source, texts) in enumerate(clips, 1):
            name = f"{fold}-{source}-A-{target}.wav"
            _write_wav(folder / "audio" / name, SOUNDS[category](rng, variant))
            meta.append([name, fold, target, category, str(esc10), source, "A"])
            captions.append([name, *texts])
    with (folder / "meta" / "esc50.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(sorted(meta))
    with (folder / "captions.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file_name", "caption_1", "caption_2", "caption_3"])
        writer.writerows(sorted(captions))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
