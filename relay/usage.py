"""One usage shape for every protocol, so billing and limits read a single set of numbers."""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Any, Mapping


@dataclass
class Usage:
    """Token counts of one request, by kind.

    `input_tokens` counts the uncached text prompt only: cache reads and cache writes are counted
    apart because they are priced apart. `output_tokens` includes reasoning tokens;
    `reasoning_tokens` is the informational subset. Image tokens are counted apart from text.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    image_input_tokens: int = 0
    image_cached_input_tokens: int = 0
    image_output_tokens: int = 0
    estimated: bool = False

    @property
    def prompt_tokens(self) -> int:
        """Every input token, cached or not, text or image (OpenAI's `prompt_tokens`)."""
        return (
            self.input_tokens
            + self.cached_input_tokens
            + self.cache_creation_tokens
            + self.image_input_tokens
            + self.image_cached_input_tokens
        )

    @property
    def completion_tokens(self) -> int:
        return self.output_tokens + self.image_output_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Usage":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and value > 0 else 0


def from_openai(usage: Any) -> Usage:
    """From an OpenAI chat/embeddings `usage` (dict or LiteLLM object)."""
    prompt = _int(_get(usage, "prompt_tokens"))
    details = _get(usage, "prompt_tokens_details")
    cached = _int(_get(details, "cached_tokens"))
    # LiteLLM reports Anthropic cache writes here when it translated the call.
    cache_write = _int(_get(usage, "cache_creation_input_tokens"))
    completion = _int(_get(usage, "completion_tokens"))
    reasoning = _int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
    return Usage(
        input_tokens=max(prompt - cached - cache_write, 0),
        cached_input_tokens=cached,
        cache_creation_tokens=cache_write,
        output_tokens=completion,
        reasoning_tokens=reasoning,
    )


def from_anthropic(usage: Any) -> Usage:
    """From an Anthropic Messages `usage`: input_tokens already excludes cache reads and writes."""
    return Usage(
        input_tokens=_int(_get(usage, "input_tokens")),
        cached_input_tokens=_int(_get(usage, "cache_read_input_tokens")),
        cache_creation_tokens=_int(_get(usage, "cache_creation_input_tokens")),
        output_tokens=_int(_get(usage, "output_tokens")),
    )


def from_openai_images(usage: Any) -> Usage:
    """From the Images API `usage` of gpt-image models (input split into text and image tokens)."""
    details = _get(usage, "input_tokens_details")
    text = _int(_get(details, "text_tokens"))
    image = _int(_get(details, "image_tokens"))
    cached = _int(_get(details, "cached_tokens"))
    if details is None:
        text = _int(_get(usage, "input_tokens"))
    # Cached tokens are a subset of the input; OpenAI does not split them by kind, so they are
    # taken from the image side first (the expensive side is where caching applies to edits).
    cached_image = min(cached, image)
    cached_text = cached - cached_image
    return Usage(
        input_tokens=max(text - cached_text, 0),
        cached_input_tokens=cached_text,
        image_input_tokens=image - cached_image,
        image_cached_input_tokens=cached_image,
        image_output_tokens=_int(_get(usage, "output_tokens")),
    )
