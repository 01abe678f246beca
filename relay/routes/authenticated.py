"""The wrapper of every authenticated route outside the inference pipeline (model lists, usage,
credential management): authenticate, run, answer errors in OpenAI's shape, and carry the
caller's rate-limit standing like every other authenticated answer (read, not counted)."""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from relay.auth import Caller
from relay.errors import RelayError, render
from relay.limit_headers import rate_limit_headers
from relay.limits import Limits
from relay.pipeline import api_key_of
from relay.schemas.limits import check_params
from relay.state import RelayState

Work = Callable[[Request, RelayState, Caller], Awaitable[Response]]
PublicWork = Callable[[Request, RelayState, "Caller | None"], Awaitable[Response]]


def authenticated(work: Work | PublicWork, *, key_optional: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """`key_optional`: answer without a key too (the public model list); a key that is sent must
    still be valid."""

    async def serve(request: Request) -> Response:
        state: RelayState = request.app.state.relay
        caller = None
        try:
            key = api_key_of(request, "openai")
            if key or not key_optional:
                caller = await state.auth.authenticate(key)
            check_params(request.path_params, request.query_params)
            response = await work(request, state, caller)  # type: ignore[arg-type]
        except RelayError as error:
            response = render(error, "openai")
        if caller is not None:
            standing = await state.limiter.peek(str(caller.account_id), Limits(caller.rpm, caller.tpm))
            response.headers.update(rate_limit_headers(standing, "openai"))
        return response

    serve.__name__ = getattr(work, "__name__", "authenticated")
    return serve
