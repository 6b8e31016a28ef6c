"""Schema-driven fuzzing of vlmzoo serve (schemathesis): no request the OpenAPI document allows,
or almost allows, gets a 5xx, and every refusal is an OpenAI-style error body."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import vlmzoo  # noqa: E402
from serving import running  # noqa: E402
from vlmzoo.serve import Limits, build_app  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tiny, tiny_chat):
    models = {"qwen": vlmzoo.load(tiny_chat["qwen2_vl"]), "clip": vlmzoo.load(tiny["clip"])}
    # small caps keep every fuzzed generation short
    app = build_app(models, limits=Limits(max_tokens=4, default_max_tokens=4, max_images=2, max_pixels=200_000))
    with running(app) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


# per operation; VLMZOO_FUZZ_EXAMPLES=2000 for a deeper run by hand
EXAMPLES = int(os.environ.get("VLMZOO_FUZZ_EXAMPLES", 150))
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
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case, served):
            _name_a_served_model(case, served)
            response = case.call(timeout=60)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["message"] and error["type"], response.text[:500]

        check()
    assert {"POST /v1/chat/completions", "POST /v1/embeddings", "GET /v1/models"} <= set(seen)
