"""Direct HTTP to a provider, for requests LiteLLM cannot forward faithfully (image edits,
Anthropic token counting) and for credential checks: one pooled client per event loop.

LiteLLM 1.110's image edit renames every image part to `image[]`, replaces filenames with
`image.png`/`mask.png`, rejects (filename, bytes, type) tuples, and has no JSON form (image URLs,
file ids). Adapters call this from their `send`, so dispatch still owns retries, key choice and
error mapping: failures are raised as the exception types dispatch already understands.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import httpx
import litellm

from relay.upstream.base import Target

# The Messages API version the relay's own direct calls to Anthropic speak.
ANTHROPIC_VERSION = "2023-06-01"

# One pooled client per event loop (a client must not outlive or cross its loop).
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()


class UpstreamHTTPError(Exception):
    """A non-2xx answer: dispatch reads `status_code` and `message` as it does LiteLLM's errors."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = _clients[loop] = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=50))
    return found


def upstream_model(target: Target) -> str:
    """The model id the provider knows (target.litellm_model is "provider/upstream")."""
    return target.litellm_model.split("/", 1)[1]


async def post(target: Target, path: str, **content: Any) -> dict:
    """POST `content` (httpx's json=, or data= and files=) to an OpenAI-wire target's `path`."""
    headers = {"Authorization": f"Bearer {target.credential.api_key}"}
    return await post_to(target.api_base.rstrip("/") + path, headers, target, **content)


async def post_to(url: str, headers: dict[str, str], target: Target, **content: Any) -> dict:
    """POST to `url` with the target's timeout; the JSON answer, or dispatch's exception types."""
    model, provider = upstream_model(target), target.litellm_model.split("/", 1)[0]
    try:
        response = await client().post(url, headers=headers, timeout=target.timeout, **content)
    except httpx.TimeoutException as exc:
        raise litellm.Timeout(f"{type(exc).__name__}", model=model, llm_provider=provider) from exc
    except httpx.TransportError as exc:
        raise litellm.APIConnectionError(f"{type(exc).__name__}: {exc}", llm_provider=provider, model=model) from exc
    if response.status_code >= 400:
        raise UpstreamHTTPError(response.status_code, _error_message(response))
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamHTTPError(502, "the provider answered with something other than a JSON object")
    return body


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text or f"HTTP {response.status_code}")[:500]
