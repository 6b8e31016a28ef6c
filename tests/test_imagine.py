"""The ``imagine`` task's plumbing: the GeneratedImage result and its atomic save, the CLI's
``vlmzoo imagine`` and the server's ``POST /v1/images/generations``, on a stand-in model whose
pictures are a pure function of prompt and seed (SEED-LLaMA's own tests, test_seed.py, run the
real model end to end)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmzoo.errors import InputError, TaskNotSupportedError
from vlmzoo.families.base import VLModel
from vlmzoo.tasks import GeneratedImage


class Painter(VLModel):
    """Makes a 64x48 picture whose colour comes from the prompt and seed."""

    family = "painter"
    tasks_served = ("imagine",)

    def __init__(self):
        super().__init__(name="painter", path=Path("."), device="cpu", dtype=None, tasks=self.tasks_served)

    def imagine(self, prompt, images=None, seed=None, **gen):
        self.require("imagine")
        digest = hashlib.sha256(f"{prompt}|{seed}|{len(images or [])}".encode()).digest()
        pixels = np.broadcast_to(np.frombuffer(digest[:3], np.uint8), (48, 64, 3)).copy()
        pixels[:, :32] //= 2  # two halves, so the format's round trip shows
        return GeneratedImage(Image.fromarray(pixels), prompt, tuple(digest[3:7]), 0.01)


def test_save_writes_the_format_of_the_suffix_atomically(tmp_path, monkeypatch):
    made = Painter().imagine("a red car", seed=1)
    png = made.save(tmp_path / "car.png")
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(made.image))
    assert Image.open(made.save(tmp_path / "car.jpg")).format == "JPEG"
    assert Image.open(made.save(tmp_path / "car.webp")).format == "WEBP"
    with pytest.raises(InputError, match=r"car\.gif: give a \.png, \.jpg or \.webp file name"):
        made.save(tmp_path / "car.gif")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match=r"dir\.png is a folder"):
        made.save(tmp_path / "dir.png")
    # a write that fails half way leaves the old picture whole and no temporary file behind
    before = png.read_bytes()
    import vlmzoo.files

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vlmzoo.files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        Painter().imagine("another", seed=2).save(png)
    assert png.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["car.jpg", "car.png", "car.webp", "dir.png"]


def test_a_model_without_the_task_says_so(tiny):
    import vlmzoo

    clip = vlmzoo.load(tiny["clip"])
    with pytest.raises(TaskNotSupportedError, match=r"cannot 'imagine'; its tasks are: classify, embed"):
        clip.imagine("a red car")


def test_cli_writes_the_picture_and_reports_it(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import vlmzoo.loading
    from vlmzoo.cli import main

    monkeypatch.setattr(vlmzoo.loading, "load", lambda name, **kw: Painter())
    out = tmp_path / "car.png"
    r = CliRunner().invoke(main, ["imagine", "a red car", "--model", "painter", "--out", str(out), "--seed", "3",
                                  "--jsonl"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    want = Painter().imagine("a red car", seed=3)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(want.image))
    row = json.loads(r.output.strip().splitlines()[-1])
    assert row == {"out": str(out), "prompt": "a red car", "codes": list(want.codes), "width": 64, "height": 48,
                   "seconds": want.seconds}
    r = CliRunner().invoke(main, ["imagine", "a red car", "--model", "painter", "--out", str(tmp_path / "car.bmp")])
    assert r.exit_code == 2 and "give a .png, .jpg or .webp file name" in r.output
    assert not (tmp_path / "car.bmp").exists()


def test_server_generates_images_as_openai_does(tiny):
    openai = pytest.importorskip("openai")
    requests = pytest.importorskip("requests")
    import vlmzoo
    from serving import running
    from vlmzoo.serve import build_app

    with running(build_app({"painter": Painter(), "clip": vlmzoo.load(tiny["clip"])})) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        r = client.images.generate(model="painter", prompt="a red car", response_format="b64_json")
        got = Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json)))
        assert np.array_equal(np.asarray(got), np.asarray(Painter().imagine("a red car").image))
        seeded = requests.post(f"{url}/v1/images/generations", json={"model": "painter", "prompt": "a red car",
                                                                       "seed": 5}, timeout=60).json()
        got = Image.open(io.BytesIO(base64.b64decode(seeded["data"][0]["b64_json"])))
        assert np.array_equal(np.asarray(got), np.asarray(Painter().imagine("a red car", seed=5).image))
        cases = [({"model": "painter", "prompt": "x", "response_format": "url"}, "response_format: this server returns"),
                 ({"model": "painter", "prompt": "x", "size": "1024x1024"}, "size: painter makes images of its own size"),
                 ({"model": "painter", "prompt": "x", "n": 2}, "n: "),
                 ({"model": "painter", "prompt": ""}, "prompt: "),
                 ({"model": "clip", "prompt": "x"}, "model 'clip' does not make images")]
        for body, message in cases:
            r = requests.post(f"{url}/v1/images/generations", json=body, timeout=60)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["message"].startswith(message), r.json()["error"]["message"]
