"""GET /v1/models: the catalog with sell-side prices. Public without a key (as OpenRouter's is);
a key that is sent must be valid. Under /byok/v1 only providers the caller has a credential for."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from relay.catalog import CatalogModel
from relay.errors import RelayError, render
from relay.jsonresponse import JSONBody
from relay.pipeline import api_key_of
from relay.pricing import pricing_fields


def model_entry(model: CatalogModel) -> dict:
    return {
        "id": model.name,
        "object": "model",
        "created": model.created,
        "owned_by": model.provider,
        "mode": model.mode,
        **pricing_fields(model),
    }


def models_endpoint(source: str):  # type: ignore[no-untyped-def]
    async def list_models(request: Request) -> Response:
        state = request.app.state.relay
        key = api_key_of(request, "openai")
        try:
            caller = await state.auth.authenticate(key) if (key or source == "byok") else None
        except RelayError as error:
            return render(error, "openai")
        models = state.catalog.models.values()
        if source == "byok" and caller is not None:
            stored = await anyio.to_thread.run_sync(state.credentials.list, caller.account_id)
            mine = {c.provider for c in stored}
            models = [m for m in models if m.provider in mine]
        return JSONBody({"object": "list", "data": [model_entry(m) for m in models]})

    return list_models
