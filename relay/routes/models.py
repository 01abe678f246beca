"""GET /v1/models and GET /v1/models/{id}: the catalog with sell-side prices.

OpenAI's shape by default; Anthropic's for callers that speak Anthropic (an `anthropic-version` or
`x-api-key` header: the Anthropic SDK sends both, the OpenAI SDK neither), errors included. Public
without a key (as OpenRouter's list is); a key that is sent must be valid. Under /byok/v1 a key is
required and only providers the caller holds a credential for are shown.

Each model appears once, under its public name, with its `aliases` (dated snapshots, `-latest`
pointers) as a relay extension; asking for an alias answers the model it names.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.auth import Caller
from relay.catalog import CatalogModel
from relay.errors import RelayError, bad_request, model_not_found, render
from relay.jsonresponse import JSONBody
from relay.limit_headers import rate_limit_headers
from relay.limits import Limits
from relay.pipeline import api_key_of
from relay.pricing import pricing_fields
from relay.state import RelayState

ANTHROPIC_PAGE_DEFAULT, ANTHROPIC_PAGE_MAX = 20, 1000  # Anthropic's `limit`: default 20, 1 to 1000

Work = Callable[[Request, RelayState, "Caller | None", str], Awaitable[Response]]


def protocol_of(request: Request) -> str:
    headers = request.headers
    return "anthropic" if "anthropic-version" in headers or "x-api-key" in headers else "openai"


# --- shapes ----------------------------------------------------------------------------------------


def model_entry(model: CatalogModel) -> dict[str, Any]:
    """OpenAI's Model object, plus the relay's mode, sell prices and aliases."""
    return {
        "id": model.name,
        "object": "model",
        "created": model.created,
        "owned_by": model.provider,
        "mode": model.mode,
        "aliases": list(model.aliases),
        **pricing_fields(model),
    }


def anthropic_entry(model: CatalogModel) -> dict[str, Any]:
    """Anthropic's ModelInfo (every model served is active), plus the relay's aliases and prices."""
    return {
        "type": "model",
        "id": model.name,
        "display_name": display_name(model.name),
        "created_at": rfc3339(model.created),
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "max_tokens": model.max_output_tokens,
        "aliases": list(model.aliases),
        **pricing_fields(model),
    }


def display_name(name: str) -> str:
    """Claude ids as Anthropic names them (claude-opus-4-8 → "Claude Opus 4.8", claude-3-5-haiku →
    "Claude 3.5 Haiku"); other ids as they are."""
    if not name.startswith("claude-"):
        return name
    words: list[str] = []
    for part in name.split("-"):
        if part.isdigit() and words and words[-1][-1:].isdigit():
            words[-1] += "." + part  # consecutive numbers are one version: 4-8 → 4.8
        else:
            words.append(part.capitalize() if not part.isdigit() else part)
    return " ".join(words)


def rfc3339(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


# --- what the caller sees --------------------------------------------------------------------------


async def visible_models(state: RelayState, caller: Caller | None, source: str, protocol: str) -> list[CatalogModel]:
    models = list(state.catalog.models.values())
    if protocol == "anthropic":
        # Anthropic's list names models the Messages API can use: the relay serves every chat model
        # there (GPT ones translated); embedding and image models cannot be used on /v1/messages.
        models = [m for m in models if m.mode == "chat"]
    if source == "byok":
        assert caller is not None  # a key is required under /byok/v1
        stored = await anyio.to_thread.run_sync(state.credentials.list, caller.account_id)
        mine = {c.provider for c in stored}
        models = [m for m in models if m.provider in mine]
    if caller is not None and caller.controls is not None and caller.controls.models is not None:
        models = [m for m in models if m.name in caller.controls.models]  # the key's allowlist
    return models


def find(models: Sequence[CatalogModel], state: RelayState, model_id: str) -> CatalogModel | None:
    """The visible model named `model_id` or having it as an alias."""
    entry = state.catalog.get(model_id)
    if entry is None:
        return None
    return next((m for m in models if m.name == entry.name), None)


def anthropic_page(models: Sequence[CatalogModel], state: RelayState, request: Request) -> dict[str, Any]:
    """Anthropic's cursor page: `limit`, then `after_id` (the page after it) or `before_id` (the
    page just before it); first_id/last_id are the cursors the SDK sends for the next page."""
    params = request.query_params
    limit = _limit(params.get("limit"))
    after, before = params.get("after_id"), params.get("before_id")
    if after and before:
        raise bad_request("Send after_id or before_id, not both.", "after_id")
    stages = {s for key in ("lifecycle", "lifecycle[]") for v in params.getlist(key) for s in v.split(",")}
    if stages and "active" not in stages:
        models = []  # every model the relay serves is active
    if before:
        end = _position(models, state, before, "before_id")
        start = max(end - limit, 0)
        page, has_more = models[start:end], start > 0
    else:
        start = _position(models, state, after, "after_id") + 1 if after else 0
        page, has_more = models[start : start + limit], start + limit < len(models)
    return {
        "data": [anthropic_entry(m) for m in page],
        "has_more": has_more,
        "first_id": page[0].name if page else None,
        "last_id": page[-1].name if page else None,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return ANTHROPIC_PAGE_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= ANTHROPIC_PAGE_MAX:
        raise bad_request(f"limit must be an integer from 1 to {ANTHROPIC_PAGE_MAX}, got {raw!r}.", "limit")
    return int(raw)


def _position(models: Sequence[CatalogModel], state: RelayState, model_id: str, param: str) -> int:
    found = find(models, state, model_id)
    if found is None:
        raise bad_request(f"{param} {model_id!r} is not a model in this list.", param)
    return models.index(found)


# --- endpoints -------------------------------------------------------------------------------------


def models_endpoint(source: str) -> Callable[[Request], Awaitable[Response]]:
    async def list_models(request: Request, state: RelayState, caller: Caller | None, protocol: str) -> Response:
        models = await visible_models(state, caller, source, protocol)
        if protocol == "anthropic":
            return JSONBody(anthropic_page(models, state, request))
        return JSONBody({"object": "list", "data": [model_entry(m) for m in models]})

    return _models_route(list_models, source)


def model_endpoint(source: str) -> Callable[[Request], Awaitable[Response]]:
    async def retrieve_model(request: Request, state: RelayState, caller: Caller | None, protocol: str) -> Response:
        model_id = request.path_params["model_id"]
        model = find(await visible_models(state, caller, source, protocol), state, model_id)
        if model is None:
            raise model_not_found(model_id)
        # An alias answers the model it names, under its public name: the id /v1/models lists, the
        # one usage records and bills show, and what Anthropic's API does for an alias (it answers
        # the model the alias points to). The alias is in `aliases`, so nothing is hidden.
        return JSONBody(anthropic_entry(model) if protocol == "anthropic" else model_entry(model))

    return _models_route(retrieve_model, source)


def routes(source: str) -> list[Route]:
    """Both model routes, for one prefix (/v1 or /byok/v1)."""
    return [
        Route("/models", models_endpoint(source), methods=["GET"]),
        Route("/models/{model_id:path}", model_endpoint(source), methods=["GET"]),
    ]


def _models_route(work: Work, source: str) -> Callable[[Request], Awaitable[Response]]:
    """relay.routes.authenticated's contract (key optional, a sent key must be valid, the caller's
    rate-limit standing on the answer), with errors and headers in the caller's protocol."""

    async def serve(request: Request) -> Response:
        state: RelayState = request.app.state.relay
        protocol = protocol_of(request)
        caller = None
        try:
            key = api_key_of(request, protocol)
            if key or source == "byok":  # BYOK listings are per caller: a key is required
                caller = await state.auth.authenticate(key)
            response = await work(request, state, caller, protocol)
        except RelayError as error:
            response = render(error, protocol)
        if caller is not None:
            standing = await state.limiter.peek(str(caller.account_id), Limits(caller.rpm, caller.tpm))
            response.headers.update(rate_limit_headers(standing, protocol))
        return response

    serve.__name__ = getattr(work, "__name__", "models")
    return serve
