"""The network guard at connection time: a BYOK base URL whose host resolved to a public address
when it was added and resolves to 127.0.0.1 later (DNS rebinding) is refused when a request would
connect there, with a 400 in the route's protocol shape, and the emulator behind it sees nothing.

A hosts table patched into socket.getaddrinfo stands in for DNS: the guard's resolver and the
check when a credential is added both use the system's lookup."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Iterator

import httpx
import pytest

from relay.netguard import GuardedResolver, InternalAddressRefused, literal_refusal
from tests.e2e.byok_support import add_credential, auth, fresh_key
from tests.e2e.relay_server import ThreadRelay

PUBLIC = "93.184.216.34"
HOST = "rebind.test"


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """name → address, consulted before the real resolver."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return real(table.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return table


@pytest.fixture(scope="module")
def guarded_relay(settings) -> Iterator[ThreadRelay]:  # type: ignore[no-untyped-def]
    """A relay outside dev rules: callers may not point credentials at internal addresses."""
    server = ThreadRelay(settings.model_copy(update={"allow_internal_base_urls_setting": False})).start()
    yield server
    server.stop()


def test_a_name_that_turns_internal_is_refused_at_request_time(guarded_relay, make_account, emulator, hosts) -> None:
    account = make_account()
    hosts[HOST] = PUBLIC
    add_credential(guarded_relay, account, "openai", fresh_key("openai"), base_url=f"http://{HOST}:{emulator.port}/v1")
    hosts[HOST] = "127.0.0.1"  # rebound: now it names the relay's own machine
    response = httpx.post(guarded_relay.url + "/byok/v1/chat/completions", headers=auth(account.key), timeout=30,
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "base_url_not_allowed" and error["param"] == "base_url"
    assert "127.0.0.1" in error["message"] and HOST in error["message"]
    assert emulator.requests == []


def test_rebinding_is_refused_in_anthropics_shape_and_for_streams(guarded_relay, make_account, emulator,
                                                                  hosts) -> None:
    account = make_account()
    hosts[HOST] = PUBLIC
    add_credential(guarded_relay, account, "anthropic", fresh_key("anthropic"), base_url=f"http://{HOST}:{emulator.port}")
    hosts[HOST] = "169.254.169.254"  # the cloud metadata address
    response = httpx.post(guarded_relay.url + "/byok/v1/messages", headers=auth(account.key, "anthropic"), timeout=30,
                          json={"model": "claude-haiku-4-5", "max_tokens": 20, "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "169.254.169.254" in body["error"]["message"]
    assert emulator.requests == []


def test_verify_refuses_a_rebound_name_too(guarded_relay, make_account, emulator, hosts) -> None:
    account = make_account()
    hosts[HOST] = PUBLIC
    credential = add_credential(guarded_relay, account, "openai", fresh_key("openai"),
                                base_url=f"http://{HOST}:{emulator.port}/v1")
    hosts[HOST] = "127.0.0.1"
    response = httpx.post(f"{guarded_relay.url}/byok/credentials/{credential['id']}/verify",
                          headers=auth(account.key), timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "base_url_not_allowed"
    assert emulator.requests == []


def test_pool_and_dev_urls_are_not_guarded(relay, make_account, emulator) -> None:
    """The session relay runs with dev rules: a BYOK base URL on 127.0.0.1 (the emulator) works."""
    account = make_account()
    add_credential(relay, account, "openai", fresh_key("openai"), base_url=emulator.url + "/v1")
    response = httpx.post(relay.url + "/byok/v1/chat/completions", headers=auth(account.key), timeout=30,
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200


# -- the resolver itself ----------------------------------------------------------------------

class FakeResolver:
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        return [{"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
                for a in self.addresses]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1", "224.0.0.1",
                                     "100.64.0.1", "0.0.0.0"])
def test_resolver_refuses_non_public_answers(address: str) -> None:
    resolver = GuardedResolver(FakeResolver(PUBLIC, address))  # type: ignore[arg-type]
    with pytest.raises(InternalAddressRefused) as refused:
        asyncio.run(resolver.resolve("evil.test", 443))
    assert address in str(refused.value)


def test_resolver_passes_public_answers() -> None:
    resolver = GuardedResolver(FakeResolver(PUBLIC))  # type: ignore[arg-type]
    assert [r["host"] for r in asyncio.run(resolver.resolve("ok.test", 443))] == [PUBLIC]


def test_ip_literals_are_checked_without_the_resolver() -> None:
    assert literal_refusal("http://127.0.0.1:8080/v1")
    assert literal_refusal("http://[::1]/v1")
    assert literal_refusal(f"https://{PUBLIC}/v1") is None
    assert literal_refusal("https://api.example.com/v1") is None
