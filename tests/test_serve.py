"""vlmzoo serve against the official openai client, on 127.0.0.1, with tiny checkpoints.

Served answers are held to what the same model object returns through the Python API, so a
passing test means the server carried the request through faithfully, not just that it replied.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

openai = pytest.importorskip("openai")

import vlmzoo  # noqa: E402
from serving import data_uri, image_part, running, user  # noqa: E402
from vlmzoo.serve import Limits, build_app  # noqa: E402
from vlmzoo.tasks import ImagePart, Message  # noqa: E402

MAX_TOKENS = 6


@pytest.fixture(scope="module")
def models(tiny, tiny_chat):
    return {"qwen": vlmzoo.load(tiny_chat["qwen2_vl"]), "clip": vlmzoo.load(tiny["clip"])}


@pytest.fixture(scope="module")
def server(models):
    app = build_app(models, limits=Limits(max_images=3, max_pixels=300_000, max_tokens=64,
                                          max_body_bytes=2_000_000), window=0.05)
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def _reference(model, chat, **gen):
    return model.ask(messages=chat, max_new_tokens=MAX_TOKENS, **gen)


# -- chat ------------------------------------------------------------------------------------------


def test_chat_with_an_image_matches_the_python_api(client, models, photos):
    r = client.chat.completions.create(model="qwen", messages=user(image_part(photos[0]), "What is shown?"),
                                       max_tokens=MAX_TOKENS)
    expected = _reference(models["qwen"], [Message.user(ImagePart(Image.open(photos[0])), "What is shown?")])
    assert r.object == "chat.completion" and r.model == "qwen" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == expected.text
    assert r.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert r.usage.completion_tokens == expected.num_tokens and r.usage.prompt_tokens == expected.prompt_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_several_images_in_one_message_keep_their_order(client, models, photos):
    a, b = Image.open(photos[1]), Image.open(photos[2])
    served = [client.chat.completions.create(model="qwen", messages=user(image_part(x), image_part(y), "Compare."),
                                             max_tokens=MAX_TOKENS).choices[0].message.content
              for x, y in ((a, b), (b, a))]
    expected = [_reference(models["qwen"], [Message.user(ImagePart(x), ImagePart(y), "Compare.")]).text
                for x, y in ((a, b), (b, a))]
    assert served == expected
    assert served[0] != served[1]  # the random tiny model does see which image comes first


def test_system_message_and_earlier_turns_are_part_of_the_prompt(client, models, photos):
    chat = [{"role": "system", "content": "Answer briefly."},
            *user(image_part(photos[0]), "What is this?"),
            {"role": "assistant", "content": "A picture."},
            {"role": "user", "content": "And the colour?"}]
    r = client.chat.completions.create(model="qwen", messages=chat, max_tokens=MAX_TOKENS)
    expected = _reference(models["qwen"], [
        Message("system", ("Answer briefly.",)), Message.user(ImagePart(Image.open(photos[0])), "What is this?"),
        Message("assistant", ("A picture.",)), Message("user", ("And the colour?",))])
    assert r.choices[0].message.content == expected.text
    assert r.usage.prompt_tokens == expected.prompt_tokens


def test_stream_pieces_join_to_the_answer_and_usage_comes_last(client, photos):
    messages = user(image_part(photos[3]), "Describe it.")
    whole = client.chat.completions.create(model="qwen", messages=messages, max_tokens=MAX_TOKENS)
    chunks = list(client.chat.completions.create(model="qwen", messages=messages, max_tokens=MAX_TOKENS,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_wire_format_ends_with_done(server, photos):
    body = {"model": "qwen", "messages": user(image_part(photos[0]), "Hi"), "max_tokens": 3, "stream": True}
    with requests.post(f"{server}/v1/chat/completions", json=body, stream=True, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines(decode_unicode=True) if ln]
    assert all(ln.startswith("data: ") for ln in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "usage" not in chunks[-1]  # include_usage not asked


def test_concurrent_chats_are_batched_and_answers_match_single_requests(server, client, models, photos):
    questions = [f"Question {i}: what is here?" for i in range(6)]
    before = requests.get(f"{server}/health").json()["models"]["qwen"]

    def ask(i):
        return client.chat.completions.create(model="qwen", messages=user(image_part(photos[i % 3]), questions[i]),
                                              max_tokens=MAX_TOKENS).choices[0].message.content

    barrier = threading.Barrier(len(questions))

    def together(i):
        barrier.wait()
        return ask(i)

    with ThreadPoolExecutor(len(questions)) as pool:
        served = list(pool.map(together, range(len(questions))))
    after = requests.get(f"{server}/health").json()["models"]["qwen"]
    assert after["requests"] - before["requests"] == len(questions)
    assert after["batches"] - before["batches"] < len(questions)  # some answered together
    assert after["largest_batch"] > 1
    expected = [_reference(models["qwen"], [Message.user(ImagePart(Image.open(photos[i % 3])), q)]).text
                for i, q in enumerate(questions)]
    assert served == expected


def test_a_bad_request_in_a_batch_fails_alone(client, photos):
    too_long = "word " * 600  # over the tiny model's 512 positions

    def ask(question):
        try:
            return client.chat.completions.create(model="qwen", messages=user(image_part(photos[0]), question),
                                                  max_tokens=MAX_TOKENS).choices[0].message.content
        except openai.BadRequestError as e:
            return e

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ask, ["What?", too_long, "Where?", "Who?"]))
    assert isinstance(results[1], openai.BadRequestError) and "positions" in str(results[1])
    assert all(isinstance(r, str) for i, r in enumerate(results) if i != 1)


# -- embeddings ------------------------------------------------------------------------------------


def test_text_embeddings_in_both_encodings_equal_the_python_api(client, server, models):
    texts = ["a photo of a cat", "a red car"]
    expected = models["clip"].embed_texts(texts).vectors
    floats = client.embeddings.create(model="clip", input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    np.testing.assert_allclose(np.array([d.embedding for d in floats.data]), expected, rtol=1e-5, atol=1e-6)
    # the openai client asks for base64 by default and decodes it itself; read the wire form too
    raw = requests.post(f"{server}/v1/embeddings", json={"model": "clip", "input": texts,
                                                         "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
    np.testing.assert_array_equal(decoded, expected.astype(np.float32))
    default = client.embeddings.create(model="clip", input=texts)
    np.testing.assert_allclose(np.array([d.embedding for d in default.data]), expected, rtol=1e-6)
    assert floats.usage.prompt_tokens > 0 and raw["usage"]["total_tokens"] == raw["usage"]["prompt_tokens"]


def test_images_and_texts_embed_in_request_order(client, models, photos):
    image = Image.open(photos[0])
    r = client.embeddings.create(model="clip", encoding_format="float",
                                 input=["a cat", {"type": "image_url", "image_url": {"url": data_uri(image)}}, "a dog"])
    got = np.array([d.embedding for d in r.data])
    np.testing.assert_allclose(got[[0, 2]], models["clip"].embed_texts(["a cat", "a dog"]).vectors, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(got[1], models["clip"].embed_images([image]).vectors[0], rtol=1e-4, atol=1e-5)


# -- models, health, docs --------------------------------------------------------------------------


def test_models_health_and_openapi(client, server):
    assert [m.id for m in client.models.list().data] == ["qwen", "clip"]
    assert client.models.retrieve("clip").id == "clip"
    health = requests.get(f"{server}/health").json()
    assert health["status"] == "ok" and set(health["models"]) == {"qwen", "clip"}
    spec = requests.get(f"{server}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health"} <= set(spec["paths"])
    assert requests.get(f"{server}/docs").status_code == 200


# -- errors ----------------------------------------------------------------------------------------


def _post(server, path, body=None, **kw):
    r = requests.post(f"{server}{path}", json=body, timeout=60, **kw)
    return r.status_code, r.json()


def _chat(server, **fields):
    return _post(server, "/v1/chat/completions", {"model": "qwen", "messages": user("hi"), "max_tokens": 2, **fields})


@pytest.mark.parametrize("fields, param, words", [
    ({"model": "nope"}, "model", "not served"),
    ({"messages": []}, "messages", "at least 1"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role", "system"),
    ({"max_tokens": 65}, "max_tokens", "limit of 64"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"temperature": 3}, "temperature", "less than or equal to 2"),
    ({"n": 2}, "n", "does not support"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "up to 4"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]},
     "messages.0.content.0.image_url", "data URI"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x.org/a.png"}}]}]},
     "messages.0.content.0.image_url", "image URLs are off"),
    ({"messages": [{"role": "user", "content": "   "}]}, "messages.0.content", "empty"),
    ({"messages": [{"role": "assistant", "content": "I said"}]}, "messages", "assistant"),
])
def test_bad_chat_requests_get_openai_style_4xx(server, fields, param, words):
    status, body = _chat(server, **fields)
    assert 400 <= status < 500, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and words in err["message"]


def test_bad_images_name_what_was_wrong(server, photos):
    status, body = _chat(server, messages=user({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                               "x"))
    assert status == 400 and body["error"]["code"] == "invalid_image"
    too_many = user(*[image_part(Image.new("RGB", (8, 8))) for _ in range(4)], "x")
    status, body = _chat(server, messages=too_many)
    assert status == 400 and "at most 3" in body["error"]["message"]
    status, body = _chat(server, messages=user(image_part(Image.new("RGB", (800, 600))), "x"))
    assert status == 400 and "over the limit of 300,000" in body["error"]["message"]


def test_wrong_model_for_the_task_and_bad_embedding_input(server):
    status, body = _chat(server, model="clip")
    assert status == 400 and "does not chat" in body["error"]["message"]
    for payload, words in [({"model": "qwen", "input": "x"}, "does not embed"),
                           ({"model": "clip", "input": []}, "empty"),
                           ({"model": "clip", "input": ""}, "empty"),
                           ({"model": "clip", "input": "x", "dimensions": 3}, "cannot shorten"),
                           ({"model": "clip", "input": "x", "encoding_format": "int8"}, "float")]:
        status, body = _post(server, "/v1/embeddings", payload)
        assert status == 400 and words in body["error"]["message"], (payload, body)


def test_malformed_bodies_unknown_routes_and_size_limit(server):
    r = requests.post(f"{server}/v1/chat/completions", data=b'{"model": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = requests.post(f"{server}/v1/chat/completions", data=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = requests.get(f"{server}/v1/nothing")
    assert r.status_code == 404 and "no route" in r.json()["error"]["message"]
    r = requests.get(f"{server}/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    big = b'{"model": "qwen", "messages": [], "pad": "' + b"x" * 2_100_000 + b'"}'
    r = requests.post(f"{server}/v1/chat/completions", data=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit still holds while reading
        for _ in range(30):
            yield b"x" * 100_000

    r = requests.post(f"{server}/v1/embeddings", data=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_api_key_is_required_when_set(models):
    app = build_app({"clip": models["clip"]}, api_key="s3cret")
    with running(app) as url:
        assert requests.get(f"{url}/v1/models").status_code == 401
        assert requests.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert requests.get(f"{url}/health").status_code == 200  # liveness stays open
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="API key"):
            wrong.embeddings.create(model="clip", input="x")
        right = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert len(right.embeddings.create(model="clip", input="x").data) == 1


def test_image_urls_when_allowed_still_refuse_loopback(models, photos):
    app = build_app({"qwen": models["qwen"]}, limits=Limits(allow_image_urls=True))
    with running(app) as url:
        status, body = _post(url, "/v1/chat/completions", {
            "model": "qwen", "max_tokens": 2,
            "messages": user({"type": "image_url", "image_url": {"url": f"{url}/health"}}, "x")})
    assert status == 400 and "loopback" in body["error"]["message"], body


# -- load and the command line ---------------------------------------------------------------------


def test_load_of_16_clients_and_200_requests_has_no_failure(server, client, photos):
    uri = data_uri(Image.open(photos[0]).resize((64, 64)))
    before = requests.get(f"{server}/health").json()["models"]["qwen"]

    def one(i):
        r = client.chat.completions.create(model="qwen", max_tokens=2, messages=user(
            {"type": "image_url", "image_url": {"url": uri}}, f"Request {i}?"))
        return r.choices[0].message.content is not None and r.usage.completion_tokens >= 1

    with ThreadPoolExecutor(16) as pool:
        ok = list(pool.map(one, range(200)))
    after = requests.get(f"{server}/health").json()["models"]["qwen"]
    assert all(ok) and len(ok) == 200
    assert after["requests"] - before["requests"] == 200
    assert after["batches"] - before["batches"] < 200


def test_cli_serve_prints_its_address_and_answers(tiny):
    proc = subprocess.Popen([sys.executable, "-m", "vlmzoo", "serve", "--model", f"clip={tiny['clip']}", "--port", "0",
                             "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for line in proc.stderr:
            if "listening on" in line:
                break
        assert "listening on http://127.0.0.1:" in line, line
        base = line.split("listening on ")[1].split()[0]
        r = openai.OpenAI(base_url=base, api_key="x", max_retries=0).embeddings.create(model="clip", input="a cat")
        assert len(r.data[0].embedding) > 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_stream_the_client_leaves_stops_generating(server, client, photos):
    before = requests.get(f"{server}/health").json()["models"]["qwen"]["cancelled_streams"]
    body = {"model": "qwen", "messages": user(image_part(photos[0]), "Tell me everything."), "max_tokens": 64,
            "stream": True}
    with requests.post(f"{server}/v1/chat/completions", json=body, stream=True, timeout=60) as r:
        next(r.iter_lines())  # the first event arrived: generation is under way; then hang up
    deadline = time.monotonic() + 30
    while requests.get(f"{server}/health").json()["models"]["qwen"]["cancelled_streams"] == before:
        assert time.monotonic() < deadline, "the stream was not cancelled"
        time.sleep(0.05)
    # the model's thread is free again for the next request
    r = client.chat.completions.create(model="qwen", messages=user("Hi"), max_tokens=2)
    assert r.choices[0].message.content is not None


def test_vlmzoo_as_an_openai_compatible_api_model_of_itself(server, models, photos):
    """The loop closed: an openai-compatible API model pointed at vlmzoo serve answers what the
    served model answers locally, plainly and streamed."""
    remote = vlmzoo.load(f"openai-compatible:{server}/v1#qwen")
    image = Image.open(photos[2])
    local = models["qwen"].ask(image, "What is in the picture?", max_new_tokens=MAX_TOKENS)
    answer = remote.ask(image, "What is in the picture?", max_new_tokens=MAX_TOKENS)
    assert answer.text == local.text
    assert (answer.prompt_tokens, answer.num_tokens) == (local.prompt_tokens, local.num_tokens)
    assert answer.cost_usd is None  # no price is known for a self-hosted model
    stream = remote.ask(image, "What is in the picture?", max_new_tokens=MAX_TOKENS, stream=True)
    assert "".join(stream) == local.text == stream.result.text
