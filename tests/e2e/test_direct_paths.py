"""relay.app.RelayApp: a POST to an inference endpoint's exact path goes straight to the
pipeline, past Starlette's middleware and router; what they did for it is done there (the count
in flight, the 500 of an unexpected error in the protocol's shape). Everything else still takes
the full stack."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import orjson
import pytest

from relay import in_flight
from relay.app import RelayApp, build_app
from relay.routes import anthropic, openai
from relay.settings import Settings
from tests.e2e.asgi_support import asgi_call, body_of, status_of

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
MESSAGES = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


def _run(settings: Settings, exchanges: list[tuple[str, str, dict[str, str], bytes]],
         watch_stack: list[str] | None = None) -> list[list[dict[str, Any]]]:
    """The exchanges, one after another, on a fresh app; `watch_stack` collects the paths that
    went through Starlette's middleware stack."""

    async def run() -> list[list[dict[str, Any]]]:
        app = build_app(settings)
        assert isinstance(app, RelayApp)
        async with app.router.lifespan_context(app):
            if watch_stack is not None:
                stack = app.build_middleware_stack()

                async def watched(scope: Any, receive: Any, send: Any) -> None:
                    watch_stack.append(scope["path"])
                    await stack(scope, receive, send)

                app.middleware_stack = watched  # type: ignore[assignment]
            return [await asgi_call(app, *exchange) for exchange in exchanges]

    return asyncio.run(run())


def test_inference_posts_skip_the_stack_and_the_rest_take_it(settings: Settings, relay, account) -> None:  # type: ignore[no-untyped-def]
    auth = {"authorization": f"Bearer {account.key}", "content-type": "application/json"}
    through_stack: list[str] = []
    chat, byok_chat, models, wrong_method, slash = _run(settings, [
        ("POST", "/v1/chat/completions", auth, CHAT),
        ("POST", "/byok/v1/chat/completions", auth, CHAT),  # no BYOK key: the pipeline's own 400
        ("GET", "/v1/models", auth, b""),
        ("GET", "/v1/chat/completions", auth, b""),
        ("POST", "/v1/chat/completions/", auth, CHAT),
    ], through_stack)
    assert status_of(chat) == 200 and orjson.loads(body_of(chat))["object"] == "chat.completion"
    assert status_of(byok_chat) == 400
    assert orjson.loads(body_of(byok_chat))["error"]["code"] == "byok_credential_missing"
    assert status_of(models) == 200
    assert status_of(wrong_method) == 405  # Starlette's answer, as before
    assert status_of(slash) in (307, 404)
    assert through_stack == ["/v1/models", "/v1/chat/completions", "/v1/chat/completions/"]


@pytest.mark.parametrize("path, body, protocol", [("/v1/chat/completions", CHAT, "openai"),
                                                  ("/v1/messages", MESSAGES, "anthropic")])
def test_an_unexpected_error_is_a_500_in_the_protocols_shape_and_the_count_goes_back(
        settings: Settings, relay, account, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
        path: str, body: bytes, protocol: str) -> None:
    seen_in_flight: list[int] = []

    async def broken(request: Any, limit: int) -> Any:
        seen_in_flight.append(in_flight.count())
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(openai if protocol == "openai" else anthropic, "read_json_sized", broken)
    caplog.set_level(logging.ERROR, logger="relay")
    before = in_flight.count()
    [answer] = _run(settings, [("POST", path, {"authorization": f"Bearer {account.key}",
                                               "x-api-key": account.key, "content-type": "application/json"}, body)])
    assert status_of(answer) == 500
    error = orjson.loads(body_of(answer))
    if protocol == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
    else:
        assert error["error"]["code"] == "internal_error"
    assert "a bug" not in body_of(answer).decode()  # no traceback or message of the bug reaches the client
    assert any("unhandled error" in r.getMessage() and r.exc_info for r in caplog.records)
    assert seen_in_flight == [before + 1] and in_flight.count() == before
