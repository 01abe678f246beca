"""OpenAI request schemas: just the fields the relay reads or must reject early; the rest pass
through to the provider untouched (extra="allow")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request
MAX_EMBEDDING_DIMENSIONS = 3072  # text-embedding-3-large, the widest OpenAI embedding


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=8)
    tools: list[dict[str, Any]] | None = None


class EmbeddingsRequest(_Open):
    model: str = Field(min_length=1)
    # A string, strings, a token array, or token arrays (OpenAI's four forms), never empty.
    input: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=MAX_EMBEDDING_DIMENSIONS)

    @field_validator("input")
    @classmethod
    def _within_openai_limits(cls, value: Any) -> Any:
        """OpenAI's own limits: 2,048 inputs per request, token ids that fit its 32-bit vocabulary
        (each input's 8,192 tokens are checked where they are counted, relay.tokens)."""
        if isinstance(value, str) or not value:
            return value
        if not isinstance(value[0], int) and len(value) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request, got {len(value)}; "
                             "split them over several requests")
        arrays = [value] if isinstance(value[0], int) else value if isinstance(value[0], list) else []
        if any(not 0 <= token < 2**31 for array in arrays for token in array):
            raise ValueError("token ids are whole numbers from 0 to 2147483647")
        return value


class ImageGenerationRequest(_Open):
    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None


class ImageRef(_Open):
    """An image input of a JSON image edit: a data/https URL or an uploaded file's id."""

    image_url: str | None = Field(default=None, min_length=1)
    file_id: str | None = Field(default=None, min_length=1)


class ImageEditRequest(ImageGenerationRequest):
    """JSON image edits; multipart edits are read into the same fields (files apart)."""

    images: list[ImageRef] | None = Field(default=None, min_length=1, max_length=16)
    mask: ImageRef | None = None


class ResponsesInputItem(_Open):
    """One item of a Responses `input`: a message (`type` "message" or omitted, with a role) or a
    typed item (function_call, function_call_output, reasoning, …)."""

    type: str | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[dict[str, Any]] | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    # A string, or items; with previous_response_id it may be empty (the stored turns are the input).
    input: str | list[ResponsesInputItem] | None = None
    instructions: str | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
