"""/byok/credentials: the caller's own provider credentials, authenticated with their sk-rr- key.
Keys go in once and come back only masked; another account's credential answers 404, exactly
like a missing one. Errors in OpenAI's shape.

GET    /byok/credentials                       list
POST   /byok/credentials                       add ({"provider", "api_key", "base_url"?, "label"?, "verify"?})
DELETE /byok/credentials/{id}                  remove (or DELETE /byok/credentials?id=N)
POST   /byok/credentials/{id}/verify           check the key against the provider now
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.auth import Caller
from relay.credentials import public_view
from relay.db.models import ProviderCredential
from relay.errors import RelayError, bad_request
from relay.jsonresponse import JSONBody
from relay.netguard import internal_target
from relay.routes.authenticated import authenticated
from relay.schemas.body import read_json, validate
from relay.schemas.byok import CredentialIn
from relay.schemas.limits import parse_id
from relay.state import RelayState
from relay.verify import verify

VERIFY_TIMEOUT_S = 15.0


def not_found(credential_id: object) -> RelayError:
    return RelayError(404, f"No BYOK credential with id {credential_id} on this account; "
                      "GET /byok/credentials lists yours.", "credential_not_found", "id")


async def _owned(state: RelayState, caller: Caller, credential_id: int) -> ProviderCredential:
    record = await anyio.to_thread.run_sync(state.credentials.find, credential_id, caller.account_id)
    if record is None:
        raise not_found(credential_id)
    return record


async def _verified(state: RelayState, record: ProviderCredential) -> dict:
    timeout = min(state.settings.upstream_timeout_s, VERIFY_TIMEOUT_S)
    record, outcome = await verify(state.credentials, record, state.settings.base_url_for(record.provider), timeout)
    return {**public_view(record), "verification": outcome.as_dict()}


async def list_credentials(request: Request, state: RelayState, caller: Caller) -> Response:
    records = await anyio.to_thread.run_sync(state.credentials.list, caller.account_id)
    return JSONBody({"object": "list", "data": [public_view(r) for r in records]})


async def add_credential(request: Request, state: RelayState, caller: Caller) -> Response:
    body = validate(CredentialIn, await read_json(request, state.settings.max_body_bytes))
    if body.base_url and not state.settings.allow_internal_base_urls:
        reason = await anyio.to_thread.run_sync(internal_target, body.base_url)  # DNS may block
        if reason:
            raise bad_request(f"base_url is not allowed: {reason}. Use the provider's public endpoint.",
                              "base_url", "base_url_not_allowed")
    record = await anyio.to_thread.run_sync(
        lambda: state.credentials.add(body.provider, body.api_key, account_id=caller.account_id,
                                      base_url=body.base_url, label=body.label)
    )
    view = await _verified(state, record) if body.verify else public_view(record)
    return JSONBody(view, status_code=201)


async def verify_credential(request: Request, state: RelayState, caller: Caller) -> Response:
    record = await _owned(state, caller, parse_id(request.path_params["credential_id"]))
    return JSONBody(await _verified(state, record))


async def remove_credential(request: Request, state: RelayState, caller: Caller) -> Response:
    path_id = request.path_params.get("credential_id")
    credential_id = parse_id(path_id) if path_id is not None else await _id_in_query_or_body(request, state)
    removed = await anyio.to_thread.run_sync(state.credentials.remove, credential_id, caller.account_id)
    if not removed:
        raise not_found(credential_id)
    return JSONBody({"id": credential_id, "object": "byok.credential", "deleted": True})


async def _id_in_query_or_body(request: Request, state: RelayState) -> int:
    """DELETE /byok/credentials names the credential as ?id=N or {"id": N}."""
    raw = request.query_params.get("id")
    if raw is None and request.headers.get("content-length", "0") != "0":
        raw = (await read_json(request, state.settings.max_body_bytes)).get("id")
    if raw is None:
        raise bad_request("Name the credential to remove: DELETE /byok/credentials/{id}, ?id=N or "
                          '{"id": N}.', "id", "missing_id")
    return parse_id(raw)


def routes() -> list[Route]:
    return [
        Route("/byok/credentials", authenticated(list_credentials), methods=["GET"]),
        Route("/byok/credentials", authenticated(add_credential), methods=["POST"]),
        Route("/byok/credentials", authenticated(remove_credential), methods=["DELETE"]),
        Route("/byok/credentials/{credential_id}", authenticated(remove_credential), methods=["DELETE"]),
        Route("/byok/credentials/{credential_id}/verify", authenticated(verify_credential), methods=["POST"]),
    ]
