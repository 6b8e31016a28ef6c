"""Bounded cost per request, and inputs that never reach dangerous decoders (issue 16).

Each test here failed before its fix: long texts were tokenized whole before any check, a
1x100000 image was resized into a huge tensor, option values broke the sampling math, a chat
kept generating for a client that had left, EPS reached Pillow's PostScript plugin, long base64
was read as a file name, a folder's path leaked into errors, and Rich markup in a file name
crashed the CLI.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image

import vlmzoo
from serving import running, user
from vlmzoo.engine.generation import GenerationOptions
from vlmzoo.errors import ImageError, InputError
from vlmzoo.images import MAX_ASPECT_RATIO, check_shape, load_image, resized_size
from vlmzoo.serve import Limits, build_app


@pytest.fixture(scope="module")
def models(tiny, tiny_chat):
    return {"qwen": vlmzoo.load(tiny_chat["qwen2_vl"]), "clip": vlmzoo.load(tiny["clip"])}


@pytest.fixture(scope="module")
def server(models):
    app = build_app(models, limits=Limits(max_tokens=64, max_body_bytes=8_000_000), window=0.01)
    with running(app) as url:
        yield url


def _post(url: str, path: str, body) -> tuple[int, dict]:
    r = requests.post(f"{url}{path}", data=body if isinstance(body, (bytes, str)) else json.dumps(body),
                      headers={"Content-Type": "application/json"}, timeout=120)
    return r.status_code, r.json() if r.content else {}


def _png_uri(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# -- 1. long text is refused before it is tokenized -------------------------------------------------


def test_a_chat_longer_than_the_context_can_hold_is_refused_before_tokenizing(server, models):
    limit = models["qwen"].max_text_chars()
    assert limit == max(models["qwen"].context_tokens() * 32, 16_384)
    before = requests.get(f"{server}/health").json()["models"]["qwen"]["requests"]
    status, body = _post(server, "/v1/chat/completions",
                         {"model": "qwen", "messages": user("x" * (limit - 10), "y" * 20), "max_tokens": 2})
    assert status == 400, body
    assert body["error"]["code"] == "context_length_exceeded" and f"at most {limit:,}" in body["error"]["message"]
    assert requests.get(f"{server}/health").json()["models"]["qwen"]["requests"] == before  # no model time spent


def test_a_huge_embedding_input_is_a_400_not_a_500(server, models):
    limit = models["clip"].max_text_chars()
    status, body = _post(server, "/v1/embeddings", {"model": "clip", "input": ["a cat", "z" * 2_000_000]})
    assert status == 400, body
    assert "input.1" in body["error"]["message"] and f"{limit:,}" in body["error"]["message"]


def test_embedding_texts_are_tokenized_once(server, models):
    tokenizer = models["clip"].processor.tokenizer
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, texts, *args, **kwargs):
            calls.append(list(texts) if not isinstance(texts, str) else [texts])
            return tokenizer(texts, *args, **kwargs)

    models["clip"].processor.tokenizer = Counting()
    try:
        status, body = _post(server, "/v1/embeddings", {"model": "clip", "input": ["a cat", "two dogs"]})
    finally:
        models["clip"].processor.tokenizer = tokenizer
    assert status == 200, body
    assert calls == [["a cat", "two dogs"]]
    expected = sum(len(tokenizer(t)["input_ids"]) for t in ("a cat", "two dogs"))
    assert body["usage"]["prompt_tokens"] == expected


# -- 2. image shapes checked before any resize ------------------------------------------------------


def test_an_extreme_aspect_ratio_is_refused_from_the_header(server, models):
    status, body = _post(server, "/v1/embeddings",
                         {"model": "clip", "input": [{"type": "image_url", "image_url": {"url": _png_uri(1, 100_000)}}]})
    assert status == 400 and f"over the limit of {MAX_ASPECT_RATIO}:1" in body["error"]["message"], body
    with pytest.raises(ImageError, match="aspect ratio of 100,000:1"):
        models["clip"].embed_images(Image.new("RGB", (1, 100_000)))


def test_what_the_models_resize_would_make_is_checked_first(models, monkeypatch):
    """A CLIP-style resize by the shortest edge grows with the aspect ratio: a 1x150 image is
    within the ratio limit, but at SigLIP-so400m's 384 it would become 384x57,600 pixels."""
    clip = models["clip"]
    assert resized_size({"shortest_edge": 384}, 1, 150) == (384, 57_600)
    assert resized_size({"height": 224, "width": 224}, 1, 150) is None  # a fixed size bounds itself
    assert resized_size({"shortest_edge": 3136, "longest_edge": 7056}, 1, 150) is None  # a pixel budget
    monkeypatch.setattr(clip.processor.image_processor.size, "shortest_edge", 384)
    with pytest.raises(ImageError, match="would be resized to 384x57600"):
        clip.classify(Image.new("RGB", (1, 150)), ["a", "b"])
    taken = load_image(Image.new("RGB", (1, 150)))  # taken in elsewhere, with no rule: checked again
    with pytest.raises(ImageError, match="would be resized"):
        clip.take_image(taken)
    check_shape(150, 150, "square", None, {"shortest_edge": 384})  # an ordinary image passes


# -- 3. generation options in range, numbers as numbers --------------------------------------------


@pytest.mark.parametrize("gen, message", [
    ({"top_p": 1e-46, "temperature": 0.7}, r"top_p must be in \[1e-30, 1\]"),
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"temperature": 1e9}, r"temperature must be in \[0, 100\]"),
    ({"seed": 2**70}, "seed must be an integer from"),
    ({"max_new_tokens": True}, "max_new_tokens must be an integer"),
    ({"max_new_tokens": "5"}, "max_new_tokens must be an integer"),
    ({"top_k": 2.5}, "top_k must be an integer"),
    ({"repetition_penalty": 0}, "repetition_penalty must be in"),
    ({"num_beams": 10_000}, "num_beams must be an integer from 1 to 32"),
    ({"min_new_tokens": 10, "max_new_tokens": 5}, "min_new_tokens must be an integer from 0 to 5"),
    ({"stop": 3}, "stop must be a string or a list"),
    ({"do_sample": "yes"}, "do_sample must be true or false"),
])
def test_generation_options_out_of_range_are_input_errors(gen, message):
    with pytest.raises(InputError, match=message):
        GenerationOptions.from_kwargs(gen)


def test_a_temperature_too_close_to_zero_is_greedy():
    assert not GenerationOptions.from_kwargs({"temperature": 1e-300}).sampling


@pytest.mark.parametrize("field, value", [
    ("max_tokens", "5"), ("temperature", "0.5"), ("top_p", "1"), ("stream", "true"), ("seed", 1.5),
    ("temperature", "NaN"), ("top_p", "Infinity"),
])
def test_strings_and_non_finite_numbers_are_refused_where_numbers_are_meant(server, field, value):
    raw = json.dumps({"model": "qwen", "messages": user("Hi"), "max_tokens": 2})[:-1]
    literal = value if value in ("NaN", "Infinity") else json.dumps(value)
    status, body = _post(server, "/v1/chat/completions", f'{raw}, "{field}": {literal}}}')
    assert status == 400 and body["error"]["param"] == field, body


def test_a_top_p_that_rounds_to_zero_is_a_400_not_a_500(server):
    status, body = _post(server, "/v1/chat/completions",
                         {"model": "qwen", "messages": user("Hi"), "max_tokens": 2, "temperature": 0.9, "top_p": 7e-46})
    assert status == 400 and "top_p" in body["error"]["message"], body


# -- 4. a chat whose client leaves stops generating --------------------------------------------------


def test_a_chat_the_client_leaves_stops_generating(models):
    qwen = models["qwen"]
    chat = [{"role": "user", "content": "Tell me everything."}]
    full = qwen.ask(messages=chat, max_new_tokens=400)
    assert full.num_tokens > 100  # long enough to be worth stopping
    lean = qwen._lean_decoder(GenerationOptions.from_kwargs({}))
    steps, step = [], lean.step

    def slow_step(*args, **kwargs):  # each token takes 20 ms, as a real model's would
        steps.append(time.monotonic())
        time.sleep(0.02)
        return step(*args, **kwargs)

    lean.step = slow_step
    app = build_app({"qwen": qwen}, limits=Limits(max_tokens=400), window=0.01)
    try:
        with running(app) as url:
            host, port = url.removeprefix("http://").split(":")
            body = json.dumps({"model": "qwen", "messages": chat, "max_tokens": 400}).encode()
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                deadline = time.monotonic() + 30
                while len(steps) < 5:  # generation is under way
                    assert time.monotonic() < deadline, "generation did not start"
                    time.sleep(0.01)
            left = time.monotonic()  # the client hung up
            deadline = left + 30
            while requests.get(f"{url}/health").json()["models"]["qwen"]["cancelled_chats"] == 0:
                assert time.monotonic() < deadline, "the chat was not cancelled"
                time.sleep(0.05)
            assert len(steps) < full.num_tokens - 20, "generation ran on to its end"
            assert not steps or steps[-1] < left + 2  # no step long after the client left
            r = requests.post(f"{url}/v1/chat/completions", json={"model": "qwen", "messages": user("Hi"),
                                                                  "max_tokens": 2}, timeout=60)
            assert r.status_code == 200  # the model's thread is free for the next request
    finally:
        lean.step = step


# -- 5, 6. image decoding: raster formats only; data told apart from paths --------------------------


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nnewpath 0 0 moveto showpage\n%%EOF\n"


def test_postscript_never_reaches_pillows_eps_plugin(monkeypatch):
    from PIL import EpsImagePlugin

    opened = []
    original = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: (opened.append(1), original(self))[1])
    for source in (EPS, "data:image/png;base64," + base64.b64encode(EPS).decode()):
        with pytest.raises(ImageError, match="not an image in a format vlmzoo reads"):
            load_image(source)
    assert opened == []


def test_long_base64_is_data_not_a_file_name():
    noise = np.random.default_rng(0).integers(0, 255, (60, 60, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    assert len(b64) > 4096
    assert load_image(b64).image.size == (60, 60)
    with pytest.raises(ImageError, match="not an image"):
        load_image(base64.b64encode(b"hello " * 2000).decode())  # base64, but not of an image
    with pytest.raises(ImageError, match="no such file"):
        load_image("/no/such/" + "dir/" * 2000 + "x.png")  # too long for a file name, and not base64


def test_a_long_data_uri_goes_through_the_python_api(models):
    """Folder checks on such a string used to raise "File name too long" before any decoding."""
    uri = _png_uri(300, 200)
    assert len(uri) > 300 and "/" in uri
    assert models["clip"].embed_images(uri).vectors.shape[0] == 1
    assert models["clip"].embed_images([uri, uri]).vectors.shape[0] == 2


def test_a_signed_image_urls_token_is_never_named():
    url = ("https://bucket.s3.amazonaws.com/cat.png?X-Amz-Credential=AKIAEXAMPLE%2F20261206&X-Amz-Date=20261206"
           "&X-Amz-Signature=5f1c0ffee5f1c0ffee")
    with pytest.raises(ImageError) as off:
        load_image(url)  # URLs off: refused, and named without its credentials
    assert "AKIAEXAMPLE" not in str(off.value) and "5f1c0ffee" not in str(off.value)
    assert off.value.source == "https://bucket.s3.amazonaws.com/cat.png?X-Amz-Date=20261206"


def test_an_unreadable_image_file_is_an_image_error(tmp_path, monkeypatch):
    import vlmzoo.images as images

    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", refuse, raising=False)
    with pytest.raises(ImageError, match=r"a\.png.*Permission denied"):
        load_image(path)


# -- 8. errors name the served model, never its folder ----------------------------------------------


def test_errors_name_the_served_model_not_its_folder(tiny_chat):
    folder = str(tiny_chat["qwen2_vl"])
    model = vlmzoo.load(folder)
    app = build_app({"qwen-local": model}, limits=Limits(max_tokens=8))
    with running(app) as url:
        # more tokens than the tiny model's 512 positions, within the characters allowed
        status, body = _post(url, "/v1/chat/completions",
                             {"model": "qwen-local", "messages": user("word " * 600), "max_tokens": 2})
    assert status == 400 and "qwen-local" in body["error"]["message"], body
    assert folder not in json.dumps(body)


# -- 9. the CLI prints file names and messages as text, never as markup -----------------------------


def test_markup_in_a_file_name_or_message_is_printed_as_it_is(tiny):
    from vlmzoo.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["caption", "[/bold]missing.jpg", "--model", str(tiny["blip-caption"])])
    assert res.exit_code == 1 and "[/bold]missing.jpg" in res.output, res.output
    res = runner.invoke(main, ["show", "[redacted]"])
    assert res.exit_code == 2 and "'[redacted]'" in res.output, res.output
