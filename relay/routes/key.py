"""GET /v1/key: the calling key's own controls and standing (as OpenRouter's GET /api/v1/key),
authenticated by the key itself: prefix, label, budget, period, spent, held, remaining, reset
time, allowed models, rpm, tpm; nulls where unset. USD amounts are decimal strings."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from relay.auth import Caller
from relay.db.engine import read_scope
from relay.db.models import ApiKey
from relay.errors import unauthorized
from relay.jsonresponse import JSONBody
from relay.key_admin import controls_view
from relay.routes.authenticated import authenticated
from relay.state import RelayState


def _read(state: RelayState, key_id: int) -> dict | None:
    with read_scope(state.engine) as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            return None
        return {"id": record.id, "prefix": record.prefix, "label": record.label, **controls_view(record)}


async def _key(request: Request, state: RelayState, caller: Caller) -> Response:
    view = await anyio.to_thread.run_sync(_read, state, caller.key_id)
    if view is None:  # deleted since the caller was cached
        raise unauthorized("Invalid API key. Check the key, or create one with `relay keys create`.")
    return JSONBody({"data": {**view, "account": caller.account_name}})


key = authenticated(_key)
