"""Helpers for the BYOK tests: fresh provider keys, storing them over the API, and one request per
inference route (the same request goes to /v1 and /byok/v1)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.emulator.images import make_png

PROVIDER_OF = {"gpt-4o-mini": "openai", "claude-haiku-4-5": "anthropic", "claude-sonnet-4-6": "anthropic",
               "text-embedding-3-small": "openai", "gpt-image-2": "openai"}
OTHER_PROVIDER = {"openai": "anthropic", "anthropic": "openai"}


def fresh_key(provider: str) -> str:
    return ("sk-ant-byok-" if provider == "anthropic" else "sk-byok-") + uuid.uuid4().hex


def auth(key: str, protocol: str = "openai") -> dict[str, str]:
    if protocol == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {key}"}


def add_credential(relay: Any, account: Any, provider: str, api_key: str, **extra: Any) -> dict:
    response = httpx.post(relay.url + "/byok/credentials", headers=auth(account.key), timeout=30,
                          json={"provider": provider, "api_key": api_key, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def list_credentials(relay: Any, account: Any) -> list[dict]:
    response = httpx.get(relay.url + "/byok/credentials", headers=auth(account.key))
    assert response.status_code == 200, response.text
    return response.json()["data"]


@dataclass(frozen=True)
class RouteCase:
    """One request on one inference route (`path` is under /v1 and /byok/v1)."""

    id: str
    path: str
    model: str
    protocol: str  # the error shape the route answers in
    upstream: str  # the emulator path the request reaches
    body: dict = field(default_factory=dict)
    multipart: bool = False

    @property
    def provider(self) -> str:
        return PROVIDER_OF[self.model]

    def send(self, relay: Any, prefix: str, key: str) -> httpx.Response:
        url = f"{relay.url}{prefix}{self.path}"
        body = {"model": self.model, **self.body}
        headers = auth(key, self.protocol)
        if self.multipart:
            files = {"image": ("input.png", make_png(b"byok"), "image/png")}
            return httpx.post(url, data=body, files=files, headers=headers, timeout=30)
        return httpx.post(url, json=body, headers=headers, timeout=30)


HELLO = [{"role": "user", "content": "hello byok"}]
ROUTE_CASES = [
    RouteCase("chat-openai", "/chat/completions", "gpt-4o-mini", "openai", "/v1/chat/completions",
              {"messages": HELLO}),
    RouteCase("chat-openai-stream", "/chat/completions", "gpt-4o-mini", "openai", "/v1/chat/completions",
              {"messages": HELLO, "stream": True}),
    RouteCase("chat-claude", "/chat/completions", "claude-haiku-4-5", "openai", "/v1/messages",
              {"messages": HELLO}),
    RouteCase("messages", "/messages", "claude-sonnet-4-6", "anthropic", "/v1/messages",
              {"messages": HELLO, "max_tokens": 32}),
    RouteCase("messages-stream", "/messages", "claude-sonnet-4-6", "anthropic", "/v1/messages",
              {"messages": HELLO, "max_tokens": 32, "stream": True}),
    RouteCase("count-tokens", "/messages/count_tokens", "claude-sonnet-4-6", "anthropic",
              "/v1/messages/count_tokens", {"messages": HELLO}),
    RouteCase("embeddings", "/embeddings", "text-embedding-3-small", "openai", "/v1/embeddings",
              {"input": "hello byok"}),
    RouteCase("image-generation", "/images/generations", "gpt-image-2", "openai", "/v1/images/generations",
              {"prompt": "a teapot", "size": "1024x1024", "quality": "low"}),
    RouteCase("image-edit", "/images/edits", "gpt-image-2", "openai", "/v1/images/edits",
              {"prompt": "studio background", "quality": "low"}, multipart=True),
    RouteCase("responses-openai", "/responses", "gpt-4o-mini", "openai", "/v1/responses", {"input": "hello byok"}),
    RouteCase("responses-claude-stream", "/responses", "claude-haiku-4-5", "openai", "/v1/messages",
              {"input": "hello byok", "stream": True}),
]
