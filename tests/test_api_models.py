"""API models (OpenAI, Gemini, OpenAI-compatible) through the official SDKs against fake servers
on 127.0.0.1 that speak each service's wire format (tests/fake_apis.py): request shapes, tasks,
streaming, concurrency, retries, timeouts, key handling, token and cost accounting, loading,
and an evaluation run that a rerun answers from the store."""

import base64
import io
import json
import logging
import sys
import time
import traceback
from email.utils import formatdate

import numpy as np

import pytest
from PIL import Image

import vlmzoo
from fake_apis import FakeAPI, Fail, Stall
from vlmzoo.errors import APIError, InputError, MissingAPIKeyError, UnknownModelError
from vlmzoo.families.api import retry
from vlmzoo.families.api.base import APIModel
from vlmzoo.families.api.retry import retry_after_seconds
from vlmzoo.loading import resolve
from vlmzoo.names import parse_api_name, read_name

OPENAI_KEY = "sk-test-0123456789abcdef"
GEMINI_KEY = "AIza-test-fedcba9876543210"


@pytest.fixture
def openai_fake(monkeypatch):
    with FakeAPI("openai") as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        yield fake


@pytest.fixture
def gemini_fake(monkeypatch):
    with FakeAPI("gemini") as fake:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
        yield fake


@pytest.fixture(params=["openai", "gemini"])
def provider(request, openai_fake, gemini_fake):
    """(loaded model, its fake server) for each provider."""
    if request.param == "openai":
        return vlmzoo.load("openai:gpt-4o"), openai_fake
    return vlmzoo.load("gemini:gemini-2.0-flash"), gemini_fake


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch):
    monkeypatch.setattr(APIModel, "backoff", 0.02)


def _image(seed: int, size=(40, 30)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _sent_images(kind: str, body: dict) -> list[np.ndarray]:
    """The images of a request body, decoded, in the order they were sent."""
    out = []
    if kind == "openai":
        for m in body["messages"]:
            for part in m["content"] if isinstance(m["content"], list) else []:
                if part["type"] == "image_url":
                    head, data = part["image_url"]["url"].split(",", 1)
                    assert head == "data:image/png;base64"
                    out.append(_pixels(base64.b64decode(data)))
    else:
        for c in body["contents"]:
            for part in c["parts"]:
                blob = part.get("inline_data") or part.get("inlineData")
                if blob:
                    assert (blob.get("mime_type") or blob.get("mimeType")) == "image/png"
                    # proto JSON takes standard or URL-safe base64; the SDK sends URL-safe
                    out.append(_pixels(base64.b64decode(blob["data"], altchars=b"-_")))
    return out


# -- request shapes --------------------------------------------------------------------------------


def test_openai_ask_with_several_images_sends_them_in_order(openai_fake):
    model = vlmzoo.load("openai:gpt-4o", detail="low")
    first, second = _image(1), _image(2, (20, 50))
    answer = model.ask([first, second], "What changed?", max_new_tokens=5, stop=["\n"], seed=7)
    sent = openai_fake.received[-1]
    assert sent.path == "/v1/chat/completions" and sent.key == OPENAI_KEY
    body = sent.body
    assert body["model"] == "gpt-4o"
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body
    assert body["stop"] == ["\n"] and body["seed"] == 7 and body["temperature"] == 0  # greedy, as locally
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"] and parts[2]["text"] == "What changed?"
    assert all(p["image_url"]["detail"] == "low" for p in parts[:2])
    images = _sent_images("openai", body)
    assert np.array_equal(images[0], first) and np.array_equal(images[1], second)  # lossless, in order
    # 6 reply words, 5 allowed: cut, and said so
    assert answer.text == "A cat sits on a" and answer.finish_reason == "length" and answer.num_tokens == 5
    assert answer.prompt_tokens == 1000 and answer.question == "What changed?" and len(answer.images) == 2


def test_gemini_ask_sends_inline_data_config_and_key_header(gemini_fake):
    model = vlmzoo.load("gemini:gemini-2.0-flash")
    first, second = _image(3), _image(4)
    answer = model.ask([first, second], "Which is brighter?", max_new_tokens=4, stop=["END"], temperature=0.5,
                       top_k=20)
    sent = gemini_fake.received[-1]
    assert sent.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY and "authorization" not in sent.headers
    config = sent.body["generationConfig"]
    assert config["maxOutputTokens"] == 4 and config["stopSequences"] == ["END"]
    assert config["temperature"] == 0.5 and config["topK"] == 20
    images = _sent_images("gemini", sent.body)
    assert np.array_equal(images[0], first) and np.array_equal(images[1], second)
    assert sent.body["contents"][0]["parts"][-1] == {"text": "Which is brighter?"}
    assert answer.text == "A cat sits on" and answer.finish_reason == "length" and answer.num_tokens == 4


def test_caption_one_and_many(provider):
    model, fake = provider
    one = model.caption(_image(5))
    assert one.text == "A cat sits on a mat." and one.finish_reason == "stop" and one.cost_usd > 0
    many = model.caption([_image(6), _image(7)], prompt="Name the main object.")
    assert [c.prompt for c in many] == ["Name the main object.", "Name the main object."]
    body = fake.received[-1].body
    text = body["messages"][0]["content"][-1]["text"] if fake.kind == "openai" else body["contents"][0]["parts"][-1]["text"]
    assert text == "Name the main object."
    assert len(fake.received) == 3


def test_chat_messages_keep_roles_and_system(provider):
    model, fake = provider
    img = _image(8)
    model.ask(messages=[
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "Noise."},
        {"role": "user", "content": "Are you sure?"}])
    body = fake.received[-1].body
    if fake.kind == "openai":
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
        assert body["messages"][0]["content"] == "Answer in one word."
        assert body["messages"][2]["content"] == "Noise."
    else:
        assert body["systemInstruction"]["parts"] == [{"text": "Answer in one word."}]
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert np.array_equal(_sent_images(fake.kind, body)[0], img)


def test_options_an_api_cannot_honour_are_refused(openai_fake):
    model = vlmzoo.load("openai:gpt-4o")
    with pytest.raises(InputError, match="cannot honour num_beams"):
        model.ask(_image(1), "q", num_beams=2)
    with pytest.raises(InputError, match="cannot honour top_k"):
        model.ask(_image(1), "q", top_k=5, temperature=0.7)
    with pytest.raises(InputError, match="unknown generation option"):
        model.ask(_image(1), "q", beams=2)
    with pytest.raises(InputError, match="detail must be one of auto, low, high"):
        vlmzoo.load("openai:gpt-4o", detail="huge")
    with pytest.raises(InputError, match="unknown option"):
        vlmzoo.load("openai:gpt-4o", temperature=0.3)
    assert openai_fake.received == []


# -- batches, streams ------------------------------------------------------------------------------


def test_a_batch_runs_at_most_max_concurrency_at_once_and_keeps_order(openai_fake):
    openai_fake.delay = 0.15
    openai_fake.reply = lambda body: body["messages"][0]["content"][-1]["text"]  # echo the question
    model = vlmzoo.load("openai:gpt-4o", max_concurrency=3)
    questions = [f"question-{i}" for i in range(8)]
    t0 = time.monotonic()
    answers = model.ask([_image(i) for i in range(8)], questions)
    elapsed = time.monotonic() - t0
    assert [a.text for a in answers] == questions
    assert openai_fake.max_in_flight == 3  # concurrent, and never more than the limit
    assert elapsed < 8 * 0.15  # faster than one by one
    assert model.usage.requests == 8


def test_stream_pieces_join_to_the_answer_with_usage_and_cost(provider):
    model, fake = provider
    stream = model.ask(_image(9), "Describe it.", stream=True)
    pieces = list(stream)
    answer = stream.result
    assert len(pieces) > 1 and "".join(pieces) == answer.text == "A cat sits on a mat."
    assert answer.num_tokens == 6 and answer.prompt_tokens == 1000 and answer.cost_usd > 0
    assert 0 < answer.ttft <= answer.seconds and answer.finish_reason == "stop"
    sent = fake.received[-1]
    if fake.kind == "openai":
        assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    else:
        assert sent.path.endswith(":streamGenerateContent") and "alt=sse" in sent.query
    with pytest.raises(InputError, match="one request"):
        model.ask([_image(1), _image(2)], ["a", "b"], stream=True)


# -- retries, timeouts, errors ---------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(provider):
    model, fake = provider
    fake.script.append(Fail(429, "slow down", headers={"Retry-After": "1"}))
    t0 = time.monotonic()
    answer = model.ask(_image(1), "q")
    waited = time.monotonic() - t0
    assert answer.text == "A cat sits on a mat."
    assert 0.9 <= waited < 3  # Retry-After, not the 0.02 s backoff
    assert len(fake.received) == 2 and model.usage.retries == 1 and model.usage.requests == 1


def test_server_errors_are_retried_then_succeed(provider):
    model, fake = provider
    fake.script.extend([Fail(500), Fail(503)])
    assert model.ask(_image(1), "q").text == "A cat sits on a mat."
    assert len(fake.received) == 3 and model.usage.retries == 2


def test_a_bad_request_fails_at_once_with_the_providers_message(provider):
    model, fake = provider
    fake.script.append(Fail(400, "Invalid image: too small"))
    with pytest.raises(APIError, match="HTTP 400: .*Invalid image: too small") as caught:
        model.ask(_image(1), "q")
    assert caught.value.status == 400 and caught.value.attempts == 1 and not caught.value.retryable
    assert len(fake.received) == 1 and model.usage.retries == 0


def test_retries_run_out_with_the_attempts_and_last_status(provider, monkeypatch):
    model, fake = provider
    model.max_retries = 2
    fake.script.extend([Fail(503)] * 3)
    with pytest.raises(APIError, match="gave up after 3 attempts; last error: HTTP 503") as caught:
        model.ask(_image(1), "q")
    assert caught.value.attempts == 3 and len(fake.received) == 3


def test_a_server_echoing_the_key_does_not_leak_it(provider, caplog):
    model, fake = provider
    key = OPENAI_KEY if fake.kind == "openai" else GEMINI_KEY
    fake.script.append(Fail(401, "Incorrect API key provided: {key}. See your account."))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(APIError, match=r"HTTP 401: .*Incorrect API key provided: \[redacted\]") as caught:
        model.ask(_image(1), "q")
    assert fake.received[-1].key == key  # the server did see it, and said it back
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + repr(model) + caplog.text
    assert key not in shown
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert len(fake.received) == 1  # 401 is not retried


def test_a_slow_server_times_out_and_the_retries_run_out(openai_fake, gemini_fake):
    for name, fake in (("openai:gpt-4o", openai_fake), ("gemini:gemini-2.0-flash", gemini_fake)):
        model = vlmzoo.load(name, timeout=0.5, max_retries=1)
        fake.script.extend([Stall(1.2), Stall(1.2)])
        t0 = time.monotonic()
        with pytest.raises(APIError, match=r"gave up after 2 attempts; last error: no response: .*0\.5 s timeout") as caught:
            model.ask(_image(1), "q")
        assert caught.value.status is None and time.monotonic() - t0 < 2.5
        assert len(fake.received) == 2


def test_retry_after_reads_seconds_milliseconds_and_dates():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 8 <= retry_after_seconds({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None
    assert retry.delay(1, 3600.0, backoff=0.5) == retry.MAX_RETRY_AFTER  # capped


def test_gemini_retry_info_in_the_error_body_is_honoured(gemini_fake):
    model = vlmzoo.load("gemini:gemini-2.0-flash")
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.6s"}
    gemini_fake.script.append(Fail(429, "quota", details=[info]))
    t0 = time.monotonic()
    model.ask(_image(1), "q")
    assert time.monotonic() - t0 >= 0.55 and model.usage.retries == 1


def test_a_missing_key_is_named_at_load_time(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="set OPENAI_API_KEY"):
        vlmzoo.load("gpt4o")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="set GEMINI_API_KEY \\(or GOOGLE_API_KEY\\)"):
        vlmzoo.load("gemini")


# -- cost and usage --------------------------------------------------------------------------------


def test_cost_comes_from_usage_and_the_cards_price(openai_fake, gemini_fake):
    mini = vlmzoo.load("openai:gpt-4o-mini")
    a = mini.ask(_image(1), "q")
    assert a.cost_usd == pytest.approx((1000 * 0.15 + 6 * 0.60) / 1e6)
    mini.caption([_image(2), _image(3)])
    usage = mini.usage
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (3, 3000, 18)
    assert usage.cost_usd == pytest.approx(3 * a.cost_usd)
    # Gemini 1.5 Pro: prompts over 128k tokens are billed at the long-prompt price
    gemini_fake.prompt_tokens = 200_000
    pro = vlmzoo.load("gemini:gemini-1.5-pro")
    assert pro.ask(_image(1), "q").cost_usd == pytest.approx((200_000 * 2.50 + 6 * 10.00) / 1e6)


def test_unknown_price_gives_none_not_zero(openai_fake, gemini_fake):
    with pytest.warns(UserWarning, match="no price"):
        model = vlmzoo.load("openai:gpt-future-vision")
    answer = model.ask(_image(1), "q")
    assert answer.cost_usd is None and answer.num_tokens == 6
    assert openai_fake.received[-1].body["model"] == "gpt-future-vision"
    assert model.usage.cost_usd is None and model.usage.completion_tokens == 6
    with pytest.warns(UserWarning, match="no price"):
        gem = vlmzoo.load("gemini:gemini-future-flash")
    assert gem.caption(_image(1)).cost_usd is None
    assert gemini_fake.received[-1].path == "/v1beta/models/gemini-future-flash:generateContent"


# -- openai-compatible, loading --------------------------------------------------------------------


def test_openai_compatible_needs_no_key_and_sends_max_tokens(openai_fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    model = vlmzoo.load(f"openai-compatible:{openai_fake.url}/v1#Qwen/Qwen2-VL-2B-Instruct")
    answer = model.ask(_image(1), "q", max_new_tokens=9)
    body = openai_fake.received[-1].body
    assert body["model"] == "Qwen/Qwen2-VL-2B-Instruct"
    assert body["max_tokens"] == 9 and "max_completion_tokens" not in body
    assert answer.cost_usd is None and model.usage.cost_usd is None
    monkeypatch.setenv("VLMZOO_OPENAI_COMPATIBLE_API_KEY", "local-secret")
    vlmzoo.load(f"openai-compatible:{openai_fake.url}/v1#m").ask(_image(1), "q")
    assert openai_fake.received[-1].key == "local-secret"


def test_api_names_parse_and_malformed_ones_say_the_form():
    assert parse_api_name("openai-compatible:http://gpu-1:8000/v1/#llava-hf/llava-1.5-7b-hf") == (
        "openai-compatible", "llava-hf/llava-1.5-7b-hf", "http://gpu-1:8000/v1")
    assert parse_api_name("openai:gpt-4o") == ("openai", "gpt-4o", None)
    assert parse_api_name("openai/clip-vit-base-patch32") is None and parse_api_name("blip-base") is None
    for bad in ("openai-compatible:localhost:8000#m", "openai-compatible:http://h:1/v1", "openai-compatible:http://h:1/v1#",
                "openai-compatible:ftp://h/v1#m"):
        with pytest.raises(UnknownModelError, match="expected openai-compatible:<base-url>#<model>"):
            vlmzoo.load(bad)


def test_api_names_resolve_without_hub_or_weights(monkeypatch):
    from vlmzoo import hub
    from vlmzoo.loading import resolve

    monkeypatch.setattr(hub, "resolve", lambda *a, **k: pytest.fail("touched the hub"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    r = resolve("gpt4o")
    assert r.name == "openai:gpt-4o" and r.path is None and r.entry.card.id == "gpt-4o"
    assert r.api.identity() == {"api": "openai", "model": "gpt-4o", "base_url": "https://api.openai.com/v1"}
    assert resolve("gemini").api.model == "gemini-2.5-flash"
    assert resolve("openai:gpt-4o-2024-08-06").entry.checkpoint.price.input_per_1m == 2.50


# -- evaluation ------------------------------------------------------------------------------------


def test_evaluate_an_api_model_then_rerun_from_the_store(openai_fake, tmp_path):
    from vlmzoo.evaluation.runner import EvalOptions, evaluate
    from vlmzoo.evaluation.spec import load_benchmark
    from vlmzoo.evaluation.store import Store

    bench = load_benchmark("sample")
    with Store(tmp_path / "r.db") as store:
        first = evaluate("openai:gpt-4o-mini", bench, store, EvalOptions(limit=3), progress=False)
        assert (first.predicted, first.resumed) == (3, 0)
        assert len(openai_fake.received) == 3
        run = store.run(first.run_id)
        assert run.config["checkpoint"] == {"api": "openai", "model": "gpt-4o-mini",
                                             "base_url": openai_fake.url + "/v1"}
        assert [p.raw for p in store.predictions(first.run_id)] == ["A cat sits on a mat."] * 3
        usage = run.resources["api_usage"]
        assert run.resources["weight_bytes"] is None  # the provider holds the weights
        assert usage["requests"] == 3 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        # gpt-4o-mini's card price: $0.15 per 1M input tokens, $0.60 per 1M output tokens
        assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1e6)
        from vlmzoo.evaluation.compare import leaderboard

        board = leaderboard(store, [run], resamples=20)
        assert board.entries[0].cost_usd == usage["cost_usd"]
        again = evaluate("openai:gpt-4o-mini", bench, store, EvalOptions(limit=3), progress=False)
        assert again.run_id == first.run_id and (again.predicted, again.resumed) == (0, 3)
        assert len(openai_fake.received) == 3  # no new request
        assert [s.value for s in again.scores] == [s.value for s in first.scores]


def test_card_prices_are_validated():
    import tomllib
    from importlib import resources

    from pydantic import ValidationError

    from vlmzoo.catalog.schema import Card

    cards = resources.files("vlmzoo.catalog").joinpath("cards")
    gemini = tomllib.loads(cards.joinpath("gemini.toml").read_text())
    del gemini["checkpoints"][1]["price"]["long_output_per_1m"]  # a long-prompt tier half given
    with pytest.raises(ValidationError, match="long_prompt_tokens, long_input_per_1m and long_output_per_1m"):
        Card.model_validate(gemini)
    clip = tomllib.loads(cards.joinpath("clip-vit-b-32.toml").read_text())
    clip["checkpoints"][0]["price"] = {"input_per_1m": 1.0, "output_per_1m": 1.0,
                                       "source": "https://example.com", "read_on": "2026-11-22"}
    with pytest.raises(ValidationError, match="only API checkpoints carry a price"):
        Card.model_validate(clip)


def test_a_missing_sdk_names_the_extra_that_installs_it(monkeypatch):
    from vlmzoo.errors import MissingDependencyError

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setitem(sys.modules, "openai", None)  # what Python does for a package not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'vlmzoo\[api\]'"):
        vlmzoo.load("openai:gpt-4o")


# -- credentials inside an openai-compatible base URL ----------------------------------------------

# (label, base URL after the host, the secret in it, the URL vlmzoo stores and shows)
URL_FORMS = [
    ("userinfo", "{user}:Pw-userinfo-5c1e@{host}/v1", "Pw-userinfo-5c1e", "{host}/v1"),
    ("api_key", "{host}/v1?api_key=Tok-api-key-71b2", "Tok-api-key-71b2", "{host}/v1"),
    ("key", "{host}/v1?key=Tok-key-0d93", "Tok-key-0d93", "{host}/v1"),
    ("token", "{host}/v1?token=Tok-token-4a6f", "Tok-token-4a6f", "{host}/v1"),
    ("access_token", "{host}/v1?access_token=Tok-access-88e0", "Tok-access-88e0", "{host}/v1"),
    ("among others", "{host}/v1?lang=en&X-Api-Key=Tok-xapi-19cd&auth_token=Tok-auth-5e2a&v=2",
     "Tok-xapi-19cd", "{host}/v1?lang=en&v=2"),
    ("plain", "{host}/v1", None, "{host}/v1"),
]
URL_USER = "alice-3f9d"  # a user name in a URL is part of the credential: it must not be kept either
URL_SECRETS = [secret for _, _, secret, _ in URL_FORMS if secret] + ["Tok-auth-5e2a", URL_USER]


def _forms(fake):
    host = fake.url.removeprefix("http://")
    for label, url, secret, public in URL_FORMS:
        yield (label, "http://" + url.format(user=URL_USER, host=host), secret,
               "http://" + public.format(host=host))


def test_public_url_strips_userinfo_and_credential_parameters():
    from vlmzoo.urls import public_url

    assert public_url("https://u:p@h.example:8443/v1?api_key=s&model=x#frag") == "https://h.example:8443/v1?model=x#frag"
    for param in ("api_key", "apikey", "api-key", "key", "token", "access_token", "auth_token", "id_token",
                  "password", "secret", "client_secret", "sig", "signature", "x-api-key", "Subscription-Key"):
        assert public_url(f"https://h/v1?{param}=s3cr3t&n=1") == "https://h/v1?n=1", param
    for plain in ("https://h/v1", "http://127.0.0.1:8000/v1/", "https://h/v1?model=x&monkeys=2&page=3"):
        assert public_url(plain) == plain  # kept exactly as written: stored run ids do not move


def test_credentials_in_a_base_url_are_used_but_never_shown(openai_fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    for label, url, secret, public in _forms(openai_fake):
        model = vlmzoo.load(f"openai-compatible:{url}#m")
        shown = repr(model) + repr(model.target) + model.name + repr(read_name(f"openai-compatible:{url}#m"))
        shown += repr(resolve(f"openai-compatible:{url}#m"))
        assert f"via {public} " in repr(model) and model.name == f"openai-compatible:{public}#m", label
        assert model.target.identity()["base_url"] == public, label
        # the requests still carry the credential, where the URL put it
        assert model.ask(_image(1), "q").text == "A cat sits on a mat.", label
        sent = openai_fake.received[-1]
        assert sent.path == "/v1/chat/completions", label
        if label == "userinfo":
            assert base64.b64decode(sent.headers["authorization"].removeprefix("Basic ")).decode() == \
                f"{URL_USER}:{secret}"
        elif secret is not None:
            assert secret in sent.query, label
        # a server that echoes the URL it was called on (and the model name) in its error
        openai_fake.script.append(Fail(400, f"no such model at {url}#m (secret {secret})"))
        with pytest.raises(APIError) as caught:
            model.ask(_image(1), "q")
        shown += "".join(traceback.format_exception(caught.value)) + repr(caught.value)
        assert public in str(caught.value), label
        assert not [s for s in URL_SECRETS if s in shown], (label, shown)


def test_a_malformed_compatible_name_does_not_echo_its_credentials():
    with pytest.raises(UnknownModelError, match="expected openai-compatible") as caught:
        vlmzoo.load("openai-compatible:ftp://alice:Pw-ftp-77aa@h/v1?token=Tok-ftp-4411#m")
    assert "Pw-ftp-77aa" not in str(caught.value) and "Tok-ftp-4411" not in str(caught.value)
    with pytest.raises(UnknownModelError) as caught:  # not an API prefix at all: still not echoed
        vlmzoo.load("openai-compat:https://alice:Pw-typo-2b2b@h/v1#m")
    assert "Pw-typo-2b2b" not in str(caught.value)


def _store_text(db) -> str:
    """Everything in a store file, as text: the raw bytes and every row."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    return dump + db.read_bytes().decode("latin-1")


def test_credentials_never_reach_the_store_compare_or_report(openai_fake, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from vlmzoo.cli import main
    from vlmzoo.evaluation.runner import EvalOptions, evaluate
    from vlmzoo.evaluation.spec import load_benchmark
    from vlmzoo.evaluation.store import Store

    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    bench = load_benchmark("sample")
    forms = list(_forms(openai_fake))
    db = tmp_path / "r.db"
    runs = {}
    with Store(db) as store:
        for label, url, secret, public in forms:
            result = evaluate(f"openai-compatible:{url}#m", bench, store, EvalOptions(limit=2, resamples=20),
                              progress=False)
            run = store.run(result.run_id)
            assert run.model == f"openai-compatible:{public}#m", label
            assert run.config["model"] == run.model and run.config["checkpoint"]["base_url"] == public, label
            runs[label] = result
        # the rule: credentials are not part of a run's identity. The same server with another
        # password or token, or none, is the same run (answered from the store, no request)...
        ids = {label: r.run_id for label, r in runs.items()}
        same = [label for label, _, _, public in forms if public == forms[-1][3]]
        assert len({ids[label] for label in same}) == 1 and len(same) == 6
        assert ids["among others"] != ids["plain"]  # ...other parameters are not credentials
        assert [runs[label].predicted for label in same] == [2, 0, 0, 0, 0, 0]
        other = evaluate(f"openai-compatible:{forms[0][1].replace('Pw-userinfo-5c1e', 'Another-pw-9')}#m", bench,
                         store, EvalOptions(limit=2, resamples=20), progress=False)
        assert other.run_id == ids["plain"] and other.predicted == 0
    secrets = URL_SECRETS
    text = _store_text(db)
    assert not [s for s in secrets if s in text]
    compare = CliRunner().invoke(main, ["compare", "sample", "--store", str(db), "--resamples", "20"])
    as_json = CliRunner().invoke(main, ["compare", "sample", "--store", str(db), "--resamples", "20", "--json"])
    out = tmp_path / "report.html"
    report = CliRunner().invoke(main, ["report", "sample", "--store", str(db), "--resamples", "20", "--out", str(out)])
    for res in (compare, as_json, report):
        assert res.exit_code == 0, res.output
    shown = compare.output + as_json.output + out.read_text(encoding="utf-8")
    assert f"openai-compatible:{forms[-1][3]}#m" in shown
    assert not [s for s in secrets if s in shown]


def test_a_store_written_with_credentials_shows_none_of_them(tmp_path):
    """A store from before credentials were stripped: compare and report still show none."""
    from click.testing import CliRunner

    from vlmzoo.cli import main
    from vlmzoo.evaluation.store import Score, Store, StoredPrediction

    db = tmp_path / "old.db"
    name = "openai-compatible:https://bob:Pw-old-6d6d@gpu-1:8000/v1?api_key=Tok-old-3c3c#m"
    with Store(db) as store:
        store.db.execute("INSERT INTO runs (run_id, model, benchmark, config, created, samples) VALUES (?,?,?,?,?,?)",
                         ("oldrun", name, "sample", json.dumps({"model": name, "task": "ask", "checkpoint": {
                             "api": "openai-compatible", "model": "m",
                             "base_url": "https://bob:Pw-old-6d6d@gpu-1:8000/v1?api_key=Tok-old-3c3c"}}), 1.0, 1))
        store.db.commit()
        store.add_predictions("oldrun", [StoredPrediction("s1", 0, "yes", "yes", 0.1, None,
                                                          {"id": "s1", "answers": ["yes"] * 10})])
        store.put_scores("oldrun", [Score("exact_match", 1.0, 1.0, 1.0, 1, "ok", None)], {"exact_match": {"s1": 1.0}})
        store.mark_finished("oldrun")
        run = store.run("oldrun")
        assert run.model == "openai-compatible:https://gpu-1:8000/v1#m"
        assert run.config["checkpoint"]["base_url"] == "https://gpu-1:8000/v1"
        assert store.find_runs(name) == [run]  # the name as the user types it still finds the run
    out = tmp_path / "old.html"
    compare = CliRunner().invoke(main, ["compare", "--store", str(db), "--json"])
    report = CliRunner().invoke(main, ["report", "--store", str(db), "--resamples", "20", "--out", str(out)])
    assert compare.exit_code == 0 and report.exit_code == 0, compare.output + report.output
    shown = compare.output + out.read_text(encoding="utf-8")
    assert "gpu-1:8000/v1#m" in shown and "Pw-old-6d6d" not in shown and "Tok-old-3c3c" not in shown
