"""Checking a stored credential against its provider, on request (POST /byok/credentials with
"verify": true, or POST /byok/credentials/{id}/verify).

The check is one free call: the provider's model list, with the credential's own key and base URL.
A rejection (401/403) marks the credential failing with the reason, as a rejection in traffic
does; success clears a failing mark; anything else (unreachable, no model list at that base URL)
leaves the status alone and says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import asyncio

import aiohttp
import anyio.to_thread

from relay.credentials import Credential, CredentialStore
from relay.crypto import InvalidToken
from relay.db.models import ProviderCredential
from relay.upstream import client
from relay.upstream.wire import ANTHROPIC_VERSION


@dataclass(frozen=True)
class Verification:
    result: str  # ok | rejected | unverified
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def _request(credential: Credential, default_base: str) -> tuple[str, dict[str, str]]:
    """The model-list URL and auth headers, built the way LiteLLM builds its calls to that base."""
    base = (credential.base_url or default_base).rstrip("/")
    if credential.provider == "anthropic":
        return base + "/v1/models", {"x-api-key": credential.api_key, "anthropic-version": ANTHROPIC_VERSION}
    return base + "/models", {"Authorization": f"Bearer {credential.api_key}"}


async def probe(credential: Credential, default_base: str, timeout: float) -> Verification:
    url, headers = _request(credential, default_base)
    provider = credential.provider
    try:
        status = await client.get_status(url, headers, timeout, own_endpoint=credential.own_endpoint)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        # The exception's text names the URL at most (never the headers), but keep it to its type.
        return Verification("unverified", f"{provider} could not be reached ({type(exc).__name__})")
    if status in (401, 403):
        return Verification("rejected", f"{provider} rejected the credential (HTTP {status})")
    if 200 <= status < 300:
        return Verification("ok", f"{provider} accepted the credential")
    return Verification("unverified", f"{provider} answered HTTP {status} to a model list request")


async def verify(store: CredentialStore, record: ProviderCredential, default_base: str,
                 timeout: float) -> tuple[ProviderCredential, Verification]:
    """Probe one stored credential and record the result; returns the updated record."""
    assert record.id is not None
    try:
        credential = store.unlock(record)
    except InvalidToken:
        return record, Verification("unverified", "the stored key cannot be decrypted with RELAY_SECRET_KEY")
    outcome = await probe(credential, default_base, timeout)
    if outcome.result == "rejected":
        await anyio.to_thread.run_sync(store.mark_failing, record.id, outcome.detail)
    elif outcome.result == "ok":
        await anyio.to_thread.run_sync(store.mark_ok, record.id)
    updated = await anyio.to_thread.run_sync(store.find, record.id, record.account_id)
    return updated or record, outcome
