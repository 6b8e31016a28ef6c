"""OpenAI's chat completions API (GPT-4o, GPT-4o mini), and any server that speaks it
(vLLM, Ollama, llama.cpp server, ``vlmzoo serve``) as ``openai-compatible:<base-url>#<model>``.

Only the wire format lives here: turns as chat messages with images as ``image_url`` data URIs,
options as request fields, the SDK's replies and errors read back. The rest is families/api/base.py.
"""

from __future__ import annotations

from typing import ClassVar, Iterator
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from vlmzoo.engine.generation import GenerationOptions
from vlmzoo.errors import InputError
from vlmzoo.families.api.base import APIModel, EncodedImage, Piece, Reply, Turn, sampling
from vlmzoo.families.api.retry import Failure, retry_after_seconds

DETAILS = ("auto", "low", "high")


class OpenAIModel(APIModel):
    family = "openai"
    provider = "openai"
    key_env_vars = ("OPENAI_API_KEY",)
    base_url_env = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    unsupported_options = (*APIModel.unsupported_options, "top_k")
    finish_reasons = {"stop": "stop", "length": "length"}
    # detail: how finely OpenAI looks at each image (and bills it); None sends nothing ("auto")
    provider_options = {"detail": None}
    # OpenAI deprecated max_tokens for max_completion_tokens, which its newer models require.
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    sdk_module: ClassVar[str] = "openai"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.options["detail"] not in (None, *DETAILS):
            raise InputError(f"detail must be one of {', '.join(DETAILS)}, got {self.options['detail']!r}")

    def make_client(self, api_key):
        import openai

        # A base URL's query (``?api_key=...``) goes on every request: the SDK would append the
        # request path after it instead. A user name and password in it are sent as HTTP basic auth.
        parts = urlsplit(self.target.base_url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True)) or None
        base_url = urlunsplit(parts._replace(query="", fragment="")) if query else self.target.base_url
        # a placeholder where no key is needed: the SDK refuses to start without one
        return openai.OpenAI(api_key=api_key or "no-key", base_url=base_url, default_query=query,
                             timeout=self.timeout, max_retries=0)

    def messages(self, turns: list[Turn]) -> list[dict]:
        out = []
        for t in turns:
            if t.role != "user":
                out.append({"role": t.role, "content": t.text})
                continue
            content = []
            for p in t.parts:
                if isinstance(p, EncodedImage):
                    image = {"url": p.data_uri}
                    if self.options["detail"] is not None:
                        image["detail"] = self.options["detail"]
                    content.append({"type": "image_url", "image_url": image})
                else:
                    content.append({"type": "text", "text": p})
            out.append({"role": "user", "content": content})
        return out

    def request(self, turns: list[Turn], opts: GenerationOptions) -> dict:
        fields = sampling(opts)
        fields[self.max_tokens_field] = fields.pop("max_tokens")
        return {"model": self.target.model, "messages": self.messages(turns), **fields}

    def send(self, turns, opts) -> Reply:
        r = self.client.chat.completions.create(**self.request(turns, opts))
        choice = r.choices[0]
        usage = r.usage
        return Reply(choice.message.content or "", choice.finish_reason,
                     usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None)

    def send_stream(self, turns, opts) -> Iterator[Piece]:
        chunks = self.client.chat.completions.create(**self.request(turns, opts), stream=True,
                                                     stream_options={"include_usage": True})
        with chunks:
            for chunk in chunks:
                for choice in chunk.choices:
                    yield Piece(text=(choice.delta.content if choice.delta else None) or "",
                                finish_reason=choice.finish_reason)
                if chunk.usage is not None:
                    yield Piece(prompt_tokens=chunk.usage.prompt_tokens,
                                completion_tokens=chunk.usage.completion_tokens)

    def failure(self, error: Exception) -> Failure | None:
        import openai

        if isinstance(error, openai.APITimeoutError):
            return Failure(None, f"no response within the {self.timeout:g} s timeout")
        if isinstance(error, openai.APIConnectionError):
            return Failure(None, f"connection failed ({error.__cause__ or error})")
        if isinstance(error, openai.APIStatusError):
            body = error.body
            message = body.get("message") if isinstance(body, dict) and body.get("message") else error.message
            return Failure(error.status_code, str(message), retry_after_seconds(error.response.headers))
        if isinstance(error, openai.APIError):  # e.g. an error event inside a stream
            return Failure(None, error.message)
        return None


class OpenAICompatibleModel(OpenAIModel):
    """A self-hosted OpenAI-compatible server: no key needed, no price known."""

    family = "openai_compatible"
    provider = "openai-compatible"
    key_env_vars = ("VLMZOO_OPENAI_COMPATIBLE_API_KEY",)
    key_required = False
    base_url_env = None
    default_base_url = None
    # llama.cpp server, Ollama and older vLLM know only max_tokens (vLLM takes both)
    max_tokens_field = "max_tokens"
