"""Provider endpoints and headers, as data: where a path lives under a base URL, and how a key is sent."""

from __future__ import annotations

from typing import Any, Callable

import orjson

from relay.upstream.base import Target
from relay.usage import Usage

# The Messages API version the relay speaks when the client named none.
ANTHROPIC_VERSION = "2023-06-01"
JSON = "application/json"


def openai_url(target: Target, path: str) -> str:
    """OpenAI base URLs include the version (`…/v1`), as OpenAI's SDK and LiteLLM take them."""
    return target.api_base.rstrip("/") + path


def anthropic_url(target: Target, path: str) -> str:
    """Anthropic base URLs are taken with or without `/v1` (or a full `/v1/messages`)."""
    base = target.api_base.rstrip("/").removesuffix("/v1/messages").removesuffix("/v1")
    return base + "/v1" + path


def openai_headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.credential.api_key}", "Content-Type": JSON}


def anthropic_headers(target: Target, forwarded: dict[str, str] | None = None) -> dict[str, str]:
    """`forwarded`: the client's anthropic-version / anthropic-beta (they mean nothing to OpenAI)."""
    headers = {"x-api-key": target.credential.api_key, "anthropic-version": ANTHROPIC_VERSION, "Content-Type": JSON}
    if forwarded:
        headers.update(forwarded)
    return headers


def forwarded_body(body: dict, own: dict[str, Any], dropped: frozenset[str]) -> bytes:
    """The client's body with the relay's own fields set (`own`) and `dropped` names left out."""
    fields = {k: v for k, v in body.items() if k not in dropped and not k.startswith("_")}
    fields.update(own)
    return orjson.dumps(fields)


def usage_with_cost(reported: Any, usage: Usage, cost_usd: float | None,
                    own: Callable[[Usage, float | None], dict]) -> dict:
    """The provider's own `usage` object as it sent it, plus the relay's `cost`; the relay's own
    shape (`own`) where the provider reported none and the usage was estimated."""
    if isinstance(reported, dict) and not usage.estimated:
        return {**reported, "cost": cost_usd}
    return own(usage, cost_usd)
