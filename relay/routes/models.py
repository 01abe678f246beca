"""GET /v1/models: the catalog with sell-side prices. Public without a key (as OpenRouter's is);
a key that is sent must be valid. Under /byok/v1 only providers the caller has a credential for."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from relay.auth import Caller
from relay.catalog import CatalogModel
from relay.errors import unauthorized
from relay.jsonresponse import JSONBody
from relay.pricing import pricing_fields
from relay.routes.authenticated import authenticated
from relay.state import RelayState


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
    async def list_models(request: Request, state: RelayState, caller: Caller | None) -> Response:
        models = list(state.catalog.models.values())
        if source == "byok":
            if caller is None:  # BYOK listings are per caller: a key is required
                raise unauthorized("Missing API key: /byok/v1/models lists the providers you hold keys for.")
            stored = await anyio.to_thread.run_sync(state.credentials.list, caller.account_id)
            mine = {c.provider for c in stored}
            models = [m for m in models if m.provider in mine]
        return JSONBody({"object": "list", "data": [model_entry(m) for m in models]})

    return authenticated(list_models, key_optional=True)
