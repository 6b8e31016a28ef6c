"""Google's Gemini API through the google-genai SDK.

Only the wire format lives here: turns as ``contents`` with images as ``inline_data`` parts and
system turns as the system instruction, options as the generation config, replies and errors
read back. The rest is families/api/base.py.
"""

from __future__ import annotations

import re
from typing import Iterator

from vlmzoo.families.api.base import APIModel, EncodedImage, Piece, Reply, Turn, sampling
from vlmzoo.families.api.retry import Failure, retry_after_seconds

_SECONDS = re.compile(r"^\s*([0-9]*\.?[0-9]+)s\s*$")


class GeminiModel(APIModel):
    family = "gemini"
    provider = "gemini"
    # the SDK's own order: GOOGLE_API_KEY wins when both are set
    key_env_vars = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    key_hint = "GEMINI_API_KEY (or GOOGLE_API_KEY)"
    base_url_env = "GOOGLE_GEMINI_BASE_URL"
    default_base_url = "https://generativelanguage.googleapis.com"
    sdk_module = "google.genai"
    finish_reasons = {"STOP": "stop", "MAX_TOKENS": "length"}

    def make_client(self, api_key):
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self.target.base_url,
            # v1beta carries every generation field used here (system instruction, seed); the
            # SDK's default "v1" lags behind it
            api_version="v1beta",
            timeout=int(self.timeout * 1000),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # ours, in families/api/retry.py
        )
        return genai.Client(vertexai=False, api_key=api_key, http_options=options)

    def request(self, turns: list[Turn], opts) -> dict:
        from google.genai import types

        fields = sampling(opts)
        config = types.GenerateContentConfig(
            max_output_tokens=fields["max_tokens"], temperature=fields.get("temperature"),
            top_p=fields.get("top_p"), top_k=fields.get("top_k"), seed=fields.get("seed"),
            stop_sequences=fields.get("stop"), candidate_count=1,
            system_instruction="\n".join(t.text for t in turns if t.role == "system") or None,
        )
        contents = [
            types.Content(role="user" if t.role == "user" else "model", parts=[
                types.Part(inline_data=types.Blob(mime_type=p.mime, data=p.data)) if isinstance(p, EncodedImage)
                else types.Part(text=p) for p in t.parts])
            for t in turns if t.role != "system"
        ]
        return {"model": self.target.model, "contents": contents, "config": config}

    def send(self, turns, opts) -> Reply:
        r = self.client.models.generate_content(**self.request(turns, opts))
        prompt, completion = _tokens(r)
        return Reply(_text(r), _finish(r), prompt, completion)

    def send_stream(self, turns, opts) -> Iterator[Piece]:
        for chunk in self.client.models.generate_content_stream(**self.request(turns, opts)):
            prompt, completion = _tokens(chunk)
            yield Piece(_text(chunk), _finish(chunk), prompt, completion)

    def failure(self, error: Exception) -> Failure | None:
        from google.genai import errors

        if isinstance(error, errors.APIError):
            headers = getattr(error.response, "headers", None)
            retry_after = retry_after_seconds(headers)
            if retry_after is None:
                retry_after = _retry_delay(error.details)
            return Failure(error.code, str(error.message or error), retry_after)
        timeouts, transport = _httpx_errors()
        if isinstance(error, timeouts):
            return Failure(None, f"no response within the {self.timeout:g} s timeout")
        if isinstance(error, transport):
            return Failure(None, f"connection failed ({error})")
        return None


def _text(response) -> str:
    """The first candidate's text parts (thoughts left out)."""
    if not response.candidates or not response.candidates[0].content or not response.candidates[0].content.parts:
        return ""
    return "".join(p.text for p in response.candidates[0].content.parts if p.text and not p.thought)


def _finish(response) -> str | None:
    if response.candidates and response.candidates[0].finish_reason is not None:
        reason = response.candidates[0].finish_reason
        return getattr(reason, "value", str(reason))
    block = getattr(response.prompt_feedback, "block_reason", None) if response.prompt_feedback else None
    return f"blocked: {getattr(block, 'value', block)}" if block is not None else None


def _tokens(response) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens; thinking tokens count as completion, as Google bills them."""
    usage = response.usage_metadata
    if usage is None or usage.prompt_token_count is None:
        return None, None
    return usage.prompt_token_count, (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)


def _retry_delay(details) -> float | None:
    """Gemini puts its wait in the error body (google.rpc.RetryInfo ``retryDelay: "7s"``)."""
    error = details.get("error", details) if isinstance(details, dict) else None
    for item in (error or {}).get("details") or []:
        if isinstance(item, dict) and "retryDelay" in item:
            match = _SECONDS.match(str(item["retryDelay"]))
            if match:
                return float(match.group(1))
    return None


def _httpx_errors() -> tuple[tuple, tuple]:
    """Timeout and transport error classes of whichever httpx the SDK runs on."""
    timeouts, transport = [], []
    for module in ("httpx2", "httpx"):
        try:
            lib = __import__(module)
        except ImportError:
            continue
        timeouts.append(lib.TimeoutException)
        transport.append(lib.TransportError)
    return tuple(timeouts), tuple(transport)
