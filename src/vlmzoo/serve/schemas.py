"""Request and response bodies of the OpenAI API subset vlmzoo serves, as pydantic models.

They are the OpenAPI document too, so clients and fuzzers see the same shapes the handlers
check. Field names and meanings follow OpenAI's API reference; fields vlmzoo cannot honour are
accepted only at their neutral value (see ``chat.options_of``) rather than silently ignored.
Unknown extra fields are ignored, as OpenAI-compatible servers commonly do, so clients that
send ``user`` or vendor fields keep working. Known fields are strict: a string is never read as a
number or a boolean.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # strict: a number must be a JSON number ("max_tokens": "5" is refused, not read as 5); and
    # NaN or Infinity, which Python's JSON reader accepts, are refused as numbers
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


# -- chat completions ------------------------------------------------------------------------------


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageURL(_Body):
    url: str = Field(description="A data URI (data:image/png;base64,...) or, when the server allows it, an http(s) URL.")
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class ChatCompletionRequest(_Body):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0, ge=-2, le=2)
    logprobs: bool = False
    user: str | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


# -- embeddings ------------------------------------------------------------------------------------


class ImageInput(_Body):
    """An image to embed (vlmzoo extension for dual encoders such as CLIP and SigLIP)."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class InputAudio(_Body):
    data: str = Field(description="The audio file's bytes, base64-encoded.")
    format: Literal["wav", "flac", "ogg", "mp3", "aiff"]


class AudioInput(_Body):
    """A sound to embed, in OpenAI's input_audio shape (models embedding audio: ImageBind)."""

    type: Literal["input_audio"]
    input_audio: InputAudio


class MapURL(_Body):
    url: str = Field(description="A data URI of a PNG: depth as 16-bit millimetres, thermal as 8-bit grey levels.")


class DepthInput(_Body):
    type: Literal["depth_url"]
    depth_url: MapURL


class ThermalInput(_Body):
    type: Literal["thermal_url"]
    thermal_url: MapURL


class IMUData(_Body):
    data: list[list[float]] = Field(description="6 channels (accelerometer x, y, z, gyroscope x, y, z) x 2000 samples.")


class IMUInput(_Body):
    type: Literal["imu"]
    imu: IMUData


EmbeddingInput = ImageInput | AudioInput | DepthInput | ThermalInput | IMUInput


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str | EmbeddingInput] = Field(
        description="A text, or a list of texts and objects: images ({'type': 'image_url', 'image_url': {'url': ...}}), "
                    "and for models embedding more modalities (ImageBind) sounds ({'type': 'input_audio', "
                    "'input_audio': {'data': <base64>, 'format': 'wav'}}), depth and thermal maps ({'type': "
                    "'depth_url', 'depth_url': {'url': 'data:image/png;base64,...'}}, likewise thermal_url) and IMU "
                    "series ({'type': 'imu', 'imu': {'data': [[...], ...]}})."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# -- image generation ------------------------------------------------------------------------------


class ImageGenerationRequest(_Body):
    """OpenAI's images.generate, for models that make pictures (SEED-LLaMA). One image per
    request, returned inline; the size is the model's own."""

    model: str
    prompt: str = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=1, description="Images per request: 1.")
    response_format: Literal["b64_json", "url"] = "b64_json"
    size: str | None = Field(default=None, description="'auto' or left out: the model makes its own size.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="vlmzoo extension: makes the image repeatable.")
    user: str | None = None


class GeneratedImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[GeneratedImageData]


# -- models, health, errors ------------------------------------------------------------------------


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "vlmzoo"
    tasks: list[str] = []


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class ModelStats(BaseModel):
    requests: int
    batches: int
    largest_batch: int
    cancelled_streams: int
    cancelled_chats: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    models: dict[str, ModelStats]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
