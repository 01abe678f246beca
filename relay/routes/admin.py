"""/admin/*: the operator's CLI over HTTP, behind `Authorization: Bearer $RELAY_ADMIN_KEY`.
Disabled (404) while RELAY_ADMIN_KEY is unset. Errors in OpenAI's shape. Bodies are validated
(relay.schemas.admin) before any operator action runs: a wrong type or value is a 400 naming it."""

from __future__ import annotations

import hmac
from typing import Any, Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay import accounts, key_admin, operator
from relay.errors import RelayError, render
from relay.jsonresponse import JSONBody
from relay.routes.usage import parse_time
from relay.schemas.admin import AccountIn, AlertIn, HoldPolicyIn, KeyIn, TierIn, TopupIn
from relay.schemas.body import read_json, validate
from relay.schemas.keys import KeyControlsIn, KeyCreateIn
from relay.schemas.byok import CredentialIn
from relay.schemas.limits import check_params, parse_id

Action = Callable[[Any, Request, dict], Any]
MAX_PATH_NAME_CHARS = 200  # an account name in a path: longer ones cannot exist (64 at most)


def _authorize(request: Request) -> None:
    admin_key = request.app.state.relay.settings.admin_key
    if not admin_key:
        raise RelayError(404, "The admin API is disabled: set RELAY_ADMIN_KEY to enable it.", "admin_disabled")
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    # Compared as bytes: compare_digest refuses non-ASCII str, and a header may carry Latin-1.
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), admin_key.encode()):
        raise RelayError(401, "Invalid admin key: send 'Authorization: Bearer $RELAY_ADMIN_KEY'.",
                         "invalid_admin_key")


def admin(action: Action, status: int = 200) -> Callable:
    """Wrap an operator action: admin auth, JSON body, a worker thread, errors to statuses."""

    async def endpoint(request: Request) -> Response:
        state = request.app.state.relay
        try:
            _authorize(request)
            check_params(request.path_params, request.query_params)
            body = await read_json(request, state.settings.max_body_bytes) if request.method in ("POST", "PUT", "PATCH") else {}
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
    name = request.path_params["name"]
    if len(name) > MAX_PATH_NAME_CHARS:
        raise accounts.NotFound(f"no account named {name[:40]!r}… (names have at most 64 characters)")
    return name


def _query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise ValueError(f"'{name}' must be a whole number")
    return int(value)


def _id(request: Request, name: str) -> int:
    return parse_id(request.path_params[name], name)


# --- actions: (state, request, body) → JSON-ready result ------------------------------------------

def create_account(s: Any, r: Request, b: dict) -> dict:
    spec = validate(AccountIn, b)
    return operator.create_account(s.engine, spec.name, spec.tier)


def set_tier(s: Any, r: Request, b: dict) -> dict:
    return operator.set_tier(s.engine, _name(r), validate(TierIn, b).tier)


def set_limits(s: Any, r: Request, b: dict) -> dict:
    return operator.set_limits(s.engine, _name(r), b.get("rpm", operator.KEEP), b.get("tpm", operator.KEEP))


def set_alert(s: Any, r: Request, b: dict) -> dict:
    return operator.set_alert(s.engine, _name(r), validate(AlertIn, b).low_balance_usd)


def set_hold_policy(s: Any, r: Request, b: dict) -> dict:
    spec = validate(HoldPolicyIn, b)
    return operator.set_hold_policy(s.engine, _name(r), spec.policy, spec.overdraft_usd,
                                    s.settings.overdraft_limit_usd)


def create_key(s: Any, r: Request, b: dict) -> dict:
    spec = validate(KeyCreateIn, b)
    return key_admin.create_key(s.engine, s.catalog, _name(r), spec.label, **spec.given())


def update_key(s: Any, r: Request, b: dict) -> dict:
    return key_admin.update_key(s.engine, s.catalog, _id(r, "key_id"), **validate(KeyControlsIn, b).given())


def topup(s: Any, r: Request, b: dict) -> dict:
    spec = validate(TopupIn, b)
    return operator.topup(s.engine, _name(r), spec.amount_usd, spec.note, r.headers.get("idempotency-key"))


def add_credential(s: Any, r: Request, b: dict, account: str | None = None) -> dict:
    spec = validate(CredentialIn, b)
    return operator.add_credential(s.credentials, spec.provider, spec.api_key, account, spec.base_url, spec.label)


routes = [
    Route("/accounts", admin(lambda s, r, b: operator.list_accounts(
        s.engine, _query_int(r, "limit", 100), _query_int(r, "after", 0))), methods=["GET"]),
    Route("/accounts", admin(create_account, 201), methods=["POST"]),
    Route("/accounts/{name}", admin(lambda s, r, b: operator.show_account(s.engine, _name(r))), methods=["GET"]),
    Route("/accounts/{name}/tier", admin(set_tier), methods=["PUT"]),
    Route("/accounts/{name}/limits", admin(set_limits), methods=["PUT"]),
    Route("/accounts/{name}/hold-policy", admin(set_hold_policy), methods=["PUT"]),
    Route("/accounts/{name}/alert", admin(set_alert), methods=["PUT"]),
    Route("/accounts/{name}/keys", admin(lambda s, r, b: operator.list_keys(s.engine, _name(r))), methods=["GET"]),
    Route("/accounts/{name}/keys", admin(create_key, 201), methods=["POST"]),
    Route("/keys/{key_id}", admin(lambda s, r, b: operator.revoke_key(s.engine, _id(r, "key_id"))),
          methods=["DELETE"]),
    Route("/keys/{key_id}", admin(update_key), methods=["PATCH"]),  # controls: absent kept, null cleared
    Route("/keys/{key_id}", admin(lambda s, r, b: key_admin.show_key(s.engine, _id(r, "key_id"))), methods=["GET"]),
    Route("/accounts/{name}/balance", admin(lambda s, r, b: operator.balance(s.engine, _name(r))), methods=["GET"]),
    # A retried top-up with the same Idempotency-Key is answered 200 with the original, not counted twice.
    Route("/accounts/{name}/topup", admin(topup, 201), methods=["POST"]),
    Route("/accounts/{name}/usage",
          admin(lambda s, r, b: operator.usage(s.engine, _name(r), parse_time(r.query_params.get("since"), "since"))),
          methods=["GET"]),
    Route("/pool", admin(lambda s, r, b: operator.list_credentials(s.credentials)), methods=["GET"]),
    Route("/pool", admin(add_credential, 201), methods=["POST"]),
    Route("/pool/{cid}", admin(lambda s, r, b: operator.remove_credential(s.credentials, _id(r, "cid"))),
          methods=["DELETE"]),
    Route("/accounts/{name}/byok", admin(lambda s, r, b: operator.list_credentials(s.credentials, _name(r))),
          methods=["GET"]),
    Route("/accounts/{name}/byok", admin(lambda s, r, b: add_credential(s, r, b, _name(r)), 201), methods=["POST"]),
    Route("/accounts/{name}/byok/{cid}",
          admin(lambda s, r, b: operator.remove_credential(s.credentials, _id(r, "cid"), _name(r))),
          methods=["DELETE"]),
]
