"""Schema-driven fuzzing of vlmzoo serve (schemathesis): no request the OpenAPI document allows,
or almost allows, gets a 5xx, and every refusal is an OpenAI-style error body."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from serving import running

import vlmzoo
from vlmzoo.serve import Limits, build_app


@pytest.fixture(scope="module")
def api_schema(tiny, tiny_chat):
    models = {"qwen": vlmzoo.load(tiny_chat["qwen2_vl"]), "clip": vlmzoo.load(tiny["clip"])}
    # small caps keep every fuzzed generation short
    app = build_app(models, limits=Limits(max_tokens=4, default_max_tokens=4, max_images=2, max_pixels=200_000))
    with running(app) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


# per operation; VLMZOO_FUZZ_EXAMPLES=2000 for a deeper run by hand
EXAMPLES = int(os.environ.get("VLMZOO_FUZZ_EXAMPLES", "150"))
# the same draws every run by default, so a CI result is reproducible (the floors on how many
# bodies reach the model are then facts about those draws); VLMZOO_FUZZ_RANDOM=1 draws afresh
DERANDOMIZE = os.environ.get("VLMZOO_FUZZ_RANDOM") != "1"
# the model each operation is about: a chat model for chats, a dual encoder for embeddings
SERVED = {"/v1/chat/completions": "qwen", "/v1/embeddings": "clip", "/v1/models/{model_id}": "qwen"}


def _name_a_served_model(case, use_served: bool) -> None:
    """A generated model name is served nowhere (a 404 before any model runs); so that bodies
    reach the models, most cases name the served model of their operation instead."""
    served = SERVED.get(case.path)
    if not use_served or served is None:
        return
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = served
    if case.path_parameters and "model_id" in case.path_parameters:
        case.path_parameters["model_id"] = served


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


def test_no_request_gets_a_server_error(api_schema):
    """Every operation in the document, with valid and invalid bodies generated from it."""
    from hypothesis import given

    seen = []
    for operation in _operations(api_schema):
        seen.append(f"{operation.method.upper()} {operation.path}")

        cases = (operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE)
                 | operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE))

        @given(case=cases, served=st.sampled_from([True, True, True, False]))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=DERANDOMIZE)
        def check(case, served):
            _name_a_served_model(case, served)
            response = case.call(timeout=60)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["message"] and error["type"], response.text[:500]

        check()
    assert {"POST /v1/chat/completions", "POST /v1/embeddings", "GET /v1/models"} <= set(seen)


def _image_uri(width: int, height: int, fmt: str) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (width % 256, height % 256, 90)).save(buf, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _mostly(usual, rare, odds: int = 3):
    """``usual``, and ``rare`` about once in ``odds + 1`` draws (so most bodies still reach the model)."""
    # hypothesis leans towards the first choice, which here is the usual one
    return st.sampled_from([True] * odds + [False]).flatmap(lambda is_usual: usual if is_usual else rare)


# ordinary sizes, and the extreme shapes a hostile client sends (1-pixel lines, huge aspect ratios)
_shapes = _mostly(st.tuples(st.integers(1, 1200), st.integers(1, 40)),
                  st.sampled_from([(1, 1), (1, 100_000), (100_000, 1), (3000, 1), (1, 201), (201, 1), (4000, 20)]))
_images = st.builds(lambda shape, fmt: _image_uri(*shape, fmt if max(shape) <= 65_000 else "PNG"),  # JPEG's limit
                    _shapes, st.sampled_from(["PNG", "JPEG", "GIF"]))
# texts, now and then far longer than a tiny model's context (its character cap is 16,384)
_texts = _mostly(st.text(min_size=1, max_size=40), st.integers(15_000, 40_000).map(lambda n: "word " * (n // 5)),
                 odds=12)
# numbers at and past the edges of what the sampling math takes, NaN and infinities (sent as
# JSON's NaN/Infinity literals), and numbers sent as strings
_extreme = st.sampled_from([0.0, 5e-324, 1e-46, 7e-46, 1e-30, 1e-5, 1.0, 2.0, 1e308, float("nan"), float("inf"),
                            -float("inf"), -1.0, "0.5", "NaN", "1e400"])
_parts = st.lists(st.one_of(st.builds(lambda t: {"type": "text", "text": t}, _texts),
                            st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, _images)),
                  min_size=1, max_size=3)
_chats = st.fixed_dictionaries(
    {"model": st.just("qwen"),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "user", "assistant"]),
                                                 "content": st.one_of(_texts, _parts)}),
                          min_size=1, max_size=3)},
    optional={"max_tokens": _mostly(st.integers(1, 6), st.sampled_from([0, -1, 10**30, "5", 2.5]), odds=6),
              "temperature": _mostly(st.floats(0, 2), _extreme, odds=6),
              "top_p": _mostly(st.floats(1e-9, 1), _extreme, odds=6),
              "seed": _mostly(st.integers(0, 2**63 - 1), st.sampled_from([-(2**63), 2**64, "7", 1.5]), odds=6),
              "stop": st.lists(st.text(min_size=1, max_size=3), max_size=2),
              "stream": st.booleans()})
_embedding_inputs = st.one_of(
    _texts, _texts, st.lists(st.one_of(_texts, st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, _images)),
                     min_size=1, max_size=3))


def _post_raw(url: str, path: str, body: dict):
    """POST ``body`` as JSON, NaN and infinities written as the literals Python's reader accepts."""
    import json

    import requests

    return requests.post(f"{url}{path}", data=json.dumps(body, allow_nan=True),
                         headers={"Content-Type": "application/json"}, timeout=60)


def test_well_formed_chats_with_odd_images_and_options_get_no_server_error(api_schema):
    """Bodies aimed at the model: extreme aspect ratios, 1-pixel images, several image formats,
    texts past the context, sampling options at and past their edges, streams."""
    from hypothesis import given

    url = api_schema.get_base_url().rstrip("/")
    answered = []

    @given(body=_chats)
    @settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=DERANDOMIZE)
    def check(body):
        r = _post_raw(url, "/v1/chat/completions", body)
        assert r.status_code < 500, (body, r.text[:500])
        if r.status_code >= 400:
            assert r.json()["error"]["message"]
        elif body.get("stream"):
            assert r.text.rstrip().endswith("data: [DONE]")
        else:
            assert r.json()["choices"][0]["message"]["role"] == "assistant"
        answered.append(r.status_code == 200)

    check()
    # about 45% reach the model on average (the rest are refused on purpose); a fifth is a floor
    # the draws stay above with a wide margin (26 of 50 with the fixed draws)
    assert sum(answered) >= len(answered) // 5, f"only {sum(answered)} of {len(answered)} bodies reached the model"


def test_embeddings_of_odd_images_and_long_texts_get_no_server_error(api_schema):
    """The dual encoder's route with the same extreme shapes and long texts."""
    from hypothesis import given

    url = api_schema.get_base_url().rstrip("/")
    answered = []

    @given(inputs=_embedding_inputs, encoding=st.sampled_from(["float", "base64"]))
    @settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=DERANDOMIZE)
    def check(inputs, encoding):
        r = _post_raw(url, "/v1/embeddings", {"model": "clip", "input": inputs, "encoding_format": encoding})
        assert r.status_code < 500, (str(inputs)[:300], r.text[:500])
        if r.status_code >= 400:
            assert r.json()["error"]["message"]
        else:
            assert len(r.json()["data"]) == (1 if isinstance(inputs, str) else len(inputs))
        answered.append(r.status_code == 200)

    check()
    assert sum(answered) >= len(answered) // 4, f"only {sum(answered)} of {len(answered)} bodies reached the model"
