"""/admin/*: the operator's CLI over HTTP, behind `Authorization: Bearer $RELAY_ADMIN_KEY`.
Disabled (404) while RELAY_ADMIN_KEY is unset. Errors in OpenAI's shape."""

from __future__ import annotations

import hmac
from typing import Any, Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay import accounts, operator
from relay.errors import RelayError, render
from relay.jsonresponse import JSONBody
from relay.routes.usage import parse_time
from relay.schemas.body import read_json

Action = Callable[[Any, Request, dict], Any]


def _authorize(request: Request) -> None:
    admin_key = request.app.state.relay.settings.admin_key
    if not admin_key:
        raise RelayError(404, "The admin API is disabled: set RELAY_ADMIN_KEY to enable it.", "admin_disabled")
    sent = request.headers.get("authorization", "")[7:].strip()
    if not hmac.compare_digest(sent.encode(), admin_key.encode()):
        raise RelayError(401, "Invalid admin key.", "invalid_admin_key")


def admin(action: Action, status: int = 200) -> Callable:
    """Wrap an operator action: admin auth, JSON body, a worker thread, errors to statuses."""

    async def endpoint(request: Request) -> Response:
        state = request.app.state.relay
        try:
            _authorize(request)
            body = await read_json(request, state.settings.max_body_bytes) if request.method in ("POST", "PUT") else {}
            result = await anyio.to_thread.run_sync(lambda: action(state, request, body))
        except RelayError as error:
            return render(error, "openai")
        except accounts.NotFound as exc:
            return render(RelayError(404, str(exc), "not_found"), "openai")
        except accounts.AlreadyExists as exc:
            return render(RelayError(409, str(exc), "already_exists"), "openai")
        except (ValueError, KeyError, TypeError) as exc:
            message = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            return render(RelayError(400, f"Invalid request: {message}.", "invalid_request"), "openai")
        replayed = isinstance(result, dict) and result.get("replayed")
        return JSONBody(result, status_code=200 if replayed else status)

    return endpoint


def _name(request: Request) -> str:
    return request.path_params["name"]


def _query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 19:
        raise ValueError(f"'{name}' must be a whole number")
    return int(value)


def _int_param(request: Request, name: str) -> int:
    return int(request.path_params[name])


routes = [
    Route("/accounts", admin(lambda s, r, b: operator.list_accounts(
        s.engine, _query_int(r, "limit", 100), _query_int(r, "after", 0))), methods=["GET"]),
    Route("/accounts", admin(lambda s, r, b: operator.create_account(s.engine, b["name"], b.get("tier", "starter")), 201),
          methods=["POST"]),
    Route("/accounts/{name}", admin(lambda s, r, b: operator.show_account(s.engine, _name(r))), methods=["GET"]),
    Route("/accounts/{name}/tier", admin(lambda s, r, b: operator.set_tier(s.engine, _name(r), b["tier"])),
          methods=["PUT"]),
    Route("/accounts/{name}/limits",
          admin(lambda s, r, b: operator.set_limits(s.engine, _name(r), b.get("rpm", operator.KEEP),
                                                    b.get("tpm", operator.KEEP))), methods=["PUT"]),
    Route("/accounts/{name}/keys", admin(lambda s, r, b: operator.list_keys(s.engine, _name(r))), methods=["GET"]),
    Route("/accounts/{name}/keys", admin(lambda s, r, b: operator.create_key(s.engine, _name(r), b.get("label")), 201),
          methods=["POST"]),
    Route("/keys/{key_id:int}", admin(lambda s, r, b: operator.revoke_key(s.engine, _int_param(r, "key_id"))),
          methods=["DELETE"]),
    Route("/accounts/{name}/balance", admin(lambda s, r, b: operator.balance(s.engine, _name(r))), methods=["GET"]),
    # A retried top-up with the same Idempotency-Key is answered 200 with the original, not counted twice.
    Route("/accounts/{name}/topup",
          admin(lambda s, r, b: operator.topup(s.engine, _name(r), b["amount_usd"], b.get("note"),
                                               r.headers.get("idempotency-key")), 201), methods=["POST"]),
    Route("/accounts/{name}/usage",
          admin(lambda s, r, b: operator.usage(s.engine, _name(r), parse_time(r.query_params.get("since"), "since"))),
          methods=["GET"]),
    Route("/pool", admin(lambda s, r, b: operator.list_credentials(s.credentials)), methods=["GET"]),
    Route("/pool", admin(lambda s, r, b: operator.add_credential(s.credentials, b["provider"], b["api_key"],
                                                                 base_url=b.get("base_url"), label=b.get("label")), 201),
          methods=["POST"]),
    Route("/pool/{cid:int}", admin(lambda s, r, b: operator.remove_credential(s.credentials, _int_param(r, "cid"))),
          methods=["DELETE"]),
    Route("/accounts/{name}/byok", admin(lambda s, r, b: operator.list_credentials(s.credentials, _name(r))),
          methods=["GET"]),
    Route("/accounts/{name}/byok",
          admin(lambda s, r, b: operator.add_credential(s.credentials, b["provider"], b["api_key"], _name(r),
                                                        b.get("base_url"), b.get("label")), 201), methods=["POST"]),
    Route("/accounts/{name}/byok/{cid:int}",
          admin(lambda s, r, b: operator.remove_credential(s.credentials, _int_param(r, "cid"), _name(r))),
          methods=["DELETE"]),
]
