"""``POST /v1/embeddings`` with sounds, depth and thermal maps and IMU series (ImageBind), on a
real server on 127.0.0.1: each vector equals the Python API's for the same input, in request
order, and bad inputs get a 400 naming where they were in the request."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
requests = pytest.importorskip("requests")

import vlmzoo  # noqa: E402
from serving import data_uri, running  # noqa: E402
from vlmzoo.modalities import IMU, Audio, Depth, Thermal  # noqa: E402
from vlmzoo.serve import build_app  # noqa: E402

DATA = Path(__file__).parent / "data" / "imagebind"


@pytest.fixture(scope="module")
def models(tiny, tmp_path_factory):
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))  # the pickle's conversion
    try:
        yield {"imagebind": vlmzoo.load(DATA / "checkpoint", dtype="float32"), "clip": vlmzoo.load(tiny["clip"])}
    finally:
        os.environ.pop("XDG_CACHE_HOME") if old is None else os.environ.__setitem__("XDG_CACHE_HOME", old)


@pytest.fixture(scope="module")
def server(models):
    with running(build_app(models)) as url:
        yield url


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _audio(path: Path) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(path.read_bytes()).decode(), "format": "wav"}}


def _post(server, model, inputs):
    return requests.post(f"{server}/v1/embeddings", json={"model": model, "input": inputs}, timeout=120)


def test_every_modality_embeds_as_the_python_api_in_request_order(server, models, photos):
    imu = np.load(DATA / "imu.npy")[0]
    inputs = [_audio(DATA / "tone-16k-mono.wav"), "a dog barking",
              {"type": "depth_url", "depth_url": {"url": _png(DATA / "depth-room.png")}},
              {"type": "image_url", "image_url": {"url": data_uri(photos[0])}},
              {"type": "thermal_url", "thermal_url": {"url": _png(DATA / "thermal-blobs.png")}},
              {"type": "imu", "imu": {"data": imu.tolist()}},
              _audio(DATA / "chirp-44k-stereo.wav")]
    r = _post(server, "imagebind", inputs)
    assert r.status_code == 200, r.text
    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    m = models["imagebind"]
    from PIL import Image

    want = np.concatenate([
        m.embed(Audio(str(DATA / "tone-16k-mono.wav"))).vectors, m.embed_texts(["a dog barking"]).vectors,
        m.embed(Depth(str(DATA / "depth-room.png"))).vectors, m.embed_images(Image.open(photos[0]).convert("RGB")).vectors,
        m.embed(Thermal(str(DATA / "thermal-blobs.png"))).vectors, m.embed(IMU(imu)).vectors,
        m.embed(Audio(str(DATA / "chirp-44k-stereo.wav"))).vectors])
    np.testing.assert_allclose(got, want, atol=2e-6)  # the image went through PNG: same pixels
    assert [d["index"] for d in r.json()["data"]] == list(range(7))


def test_bad_inputs_are_400s_naming_them(server):
    cases = [
        ([{"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv", "format": "wav"}}],
         "input.0: not audio in a format"),
        (["x", {"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}], "input.1: input_audio.data is not base64"),
        ([{"type": "depth_url", "depth_url": {"url": data_uri(DATA / "thermal-blobs.png")}}],
         "input.0: .*a depth map must be a single-channel 16-bit PNG"),
        ([{"type": "thermal_url", "thermal_url": {"url": "http://example.com/x.png"}}], "input.0: .*base64 data URI"),
        ([{"type": "imu", "imu": {"data": [[0.0] * 10] * 6}}], r"input.0: .*2000 samples.*\(6, 10\)"),
        ([{"type": "imu", "imu": {"data": [[0.0] * 3, [0.0] * 2]}}], "input.0: imu.data rows differ"),
    ]
    import re

    for inputs, pattern in cases:
        r = _post(server, "imagebind", inputs)
        assert r.status_code == 400, (inputs, r.text)
        assert re.search(pattern, r.json()["error"]["message"]), r.json()["error"]["message"]


def test_a_model_without_the_modality_says_so(server):
    r = _post(server, "clip", ["a cat", _audio(DATA / "tone-16k-mono.wav")])
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "input: clip embeds text and image, not audio"
