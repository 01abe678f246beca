"""One usage shape for every protocol, so billing and limits read a single set of numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class Usage:
    """Token counts of one request, by kind.

    `input_tokens` counts the uncached text prompt only: cache reads and cache writes are counted
    apart because they are priced apart. `cache_creation_tokens` counts every cache write;
    `cache_creation_1h_tokens` (Anthropic's 1-hour TTL) and `cache_creation_12h_tokens` (OpenAI's
    12-hour retention) are the subsets written to longer-lived caches, priced apart; the rest are
    writes at the base TTL (Anthropic 5 minutes, OpenAI 30 minutes). `output_tokens` includes
    reasoning tokens; `reasoning_tokens` is that subset (priced apart where the model says so).
    Image tokens are counted apart from text. `tier_above_tokens` is set when the usage is priced
    (relay.billing.price): the threshold of the long-context price tier that applied, 0 for base.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    cache_creation_12h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    image_input_tokens: int = 0
    image_cached_input_tokens: int = 0
    image_output_tokens: int = 0
    estimated: bool = False
    tier_above_tokens: int = 0

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
        # Every field is a plain int or bool: a shallow copy is dataclasses.asdict() at 1/100 the
        # CPU (asdict deep-copies; this runs once per request for its usage record).
        return dict(self.__dict__)

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


def cache_writes(total: Any, details: Any) -> tuple[int, int, int]:
    """(all writes, 1-hour writes, 12-hour writes) from a reported total and its TTL breakdown.

    Anthropic writes `cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}`,
    LiteLLM `cache_creation_token_details` with the same keys (and ephemeral_12h/30m for OpenAI),
    OpenAI `cache_write_tokens_details: {ttl_30m_tokens, ttl_12h_tokens}`. A breakdown larger than
    the total wins (each token reported by TTL is billed at its TTL's price, as LiteLLM does)."""
    one_hour = _int(_get(details, "ephemeral_1h_input_tokens"))
    twelve_hours = _int(_get(details, "ephemeral_12h_input_tokens")) or _int(_get(details, "ttl_12h_tokens"))
    short = (_int(_get(details, "ephemeral_5m_input_tokens")) + _int(_get(details, "ephemeral_30m_input_tokens"))
             + _int(_get(details, "ttl_30m_tokens")))
    return max(_int(total), short + one_hour + twelve_hours), one_hour, twelve_hours


def from_openai(usage: Any) -> Usage:
    """From an OpenAI chat/embeddings `usage` (dict or LiteLLM object)."""
    prompt = _int(_get(usage, "prompt_tokens"))
    details = _get(usage, "prompt_tokens_details")
    cached = _int(_get(details, "cached_tokens"))
    # OpenAI reports cache writes in prompt_tokens_details; LiteLLM also at the top level when it
    # translated an Anthropic call, with the TTL split in cache_creation_token_details.
    written = _int(_get(details, "cache_write_tokens")) or _int(_get(usage, "cache_creation_input_tokens"))
    ttl = _get(details, "cache_write_tokens_details") or _get(details, "cache_creation_token_details")
    cache_write, one_hour, twelve_hours = cache_writes(written, ttl)
    completion = _int(_get(usage, "completion_tokens"))
    reasoning = _int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
    return Usage(
        input_tokens=max(prompt - cached - cache_write, 0),
        cached_input_tokens=cached,
        cache_creation_tokens=cache_write,
        cache_creation_1h_tokens=one_hour,
        cache_creation_12h_tokens=twelve_hours,
        output_tokens=completion,
        reasoning_tokens=reasoning,
    )


def from_anthropic(usage: Any) -> Usage:
    """From an Anthropic Messages `usage`: input_tokens already excludes cache reads and writes;
    `cache_creation` splits the writes by TTL (5 minutes, 1 hour)."""
    cache_write, one_hour, _ = cache_writes(_get(usage, "cache_creation_input_tokens"), _get(usage, "cache_creation"))
    return Usage(
        input_tokens=_int(_get(usage, "input_tokens")),
        cached_input_tokens=_int(_get(usage, "cache_read_input_tokens")),
        cache_creation_tokens=cache_write,
        cache_creation_1h_tokens=one_hour,
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
