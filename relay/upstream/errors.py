"""Upstream failures as one family of exceptions, whichever path raised them.

The types are LiteLLM's (re-exported by the bridge), because its translation functions raise them
too: dispatch then reads `status_code`, `message` and `retry_after` the same way for a provider's
non-2xx answer, a socket failure, a timeout, an in-band stream error or a translation refusal.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from relay.upstream.litellm_bridge import APIConnectionError, APIError, Timeout


def provider_message(raw: bytes) -> str:
    """The human part of an error body, in OpenAI's or Anthropic's shape, else the text itself."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    text = message if isinstance(message, str) and message else raw.decode("utf-8", "replace")
    return text[:500]


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from providers, and the backoff applies anyway


def status_error(status: int, raw: bytes, headers: Mapping[str, str], provider: str, model: str) -> APIError:
    error = APIError(status_code=status, message=provider_message(raw), llm_provider=provider, model=model)
    error.retry_after = retry_after_s(headers)  # type: ignore[attr-defined]
    return error


def timeout_error(provider: str, model: str, detail: str | None = None, stalled: bool = False) -> Timeout:
    """`detail` says which deadline passed (shown to the client); `stalled`: a stream that had started."""
    error = Timeout(f"the provider did not answer in time: {detail or 'the attempt timed out'}", model=model,
                    llm_provider=provider)
    error.deadline = detail  # type: ignore[attr-defined]
    error.stalled = stalled  # type: ignore[attr-defined]
    return error


def deadline_of(exc: BaseException) -> str | None:
    value: Any = getattr(exc, "deadline", None)
    return value if isinstance(value, str) else None


def connection_error(exc: BaseException, provider: str, model: str) -> APIConnectionError:
    return APIConnectionError(f"{type(exc).__name__}: {exc}", llm_provider=provider, model=model)


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, Timeout)


def is_connection_failure(exc: BaseException) -> bool:
    return isinstance(exc, APIConnectionError)


def retry_after_of(exc: BaseException) -> float | None:
    value: Any = getattr(exc, "retry_after", None)
    return value if isinstance(value, (int, float)) else None
