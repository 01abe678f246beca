"""Image edits go to the provider over the relay's own HTTP client (LiteLLM cannot forward them
faithfully), still through dispatch: retries on another key, error mapping, hold release."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from tests.e2e.billing_support import balance, settled_balance
from tests.e2e.conftest import POOL_KEYS

MODEL = "gpt-image-2"


def edit(relay, account, timeout: float = 30) -> httpx.Response:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "orange").save(buffer, "PNG")
    return httpx.post(relay.url + "/v1/images/edits", headers={"Authorization": f"Bearer {account.key}"},
                      data={"model": MODEL, "prompt": "studio light", "quality": "low"},
                      files={"image": ("input.png", buffer.getvalue(), "image/png")}, timeout=timeout)


def attempts(emulator) -> list:
    return [r for r in emulator.requests if r.path == "/v1/images/edits"]


def test_transient_failure_is_retried_on_another_key_with_the_same_bytes(relay, account, emulator) -> None:
    emulator.set_mode("error_503", count=1)
    response = edit(relay, account)
    assert response.status_code == 200, response.text
    first, second = attempts(emulator)
    assert {first.api_key, second.api_key} == set(POOL_KEYS["openai"])
    assert first.form == second.form  # the retry resends every field and byte


def test_persistent_failure_is_502_without_secrets_and_charges_nothing(relay, account, emulator) -> None:
    emulator.set_mode("error_500")
    before = balance(relay, account.id)
    response = edit(relay, account)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"
    for key in POOL_KEYS["openai"]:
        assert key not in response.text  # the emulator echoes the key in its 500 message
    assert len(attempts(emulator)) == relay.settings.upstream_retries + 1
    assert settled_balance(relay, account.id) == before


def test_provider_400_is_400_with_its_reason(relay, account, emulator) -> None:
    emulator.set_mode("error_400")
    response = edit(relay, account)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("The upstream provider (openai) rejected the request") and "emulated" in message


def test_upstream_timeout_is_504(relay, account, emulator, monkeypatch) -> None:
    monkeypatch.setattr(relay.state.settings, "upstream_timeout_s", 1.0)
    emulator.set_mode("timeout", delay=5)
    response = edit(relay, account)
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    assert len(attempts(emulator)) == 1  # a timeout already used the whole budget: not retried
