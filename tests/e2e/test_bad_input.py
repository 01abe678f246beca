"""Issue #14: every bad input is a deliberate 4xx in its route's protocol shape, admin input is
validated like customer input, and refused requests never reach a provider."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_errors import assert_openai_error

ADMIN = {"Authorization": "Bearer admin-test-key"}


def auth(account) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {account.key}"}


def nested(depth: int) -> str:
    """A JSON content list nested `depth` deep, as text (json.dumps itself cannot go that deep)."""
    return "[" * depth + '{"type": "text", "text": "deep"}' + "]" * depth


# --- customer routes ------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["since=111111111111111111111111111111", "until=99999999999999",
                                   "since=9999-12-31T23:59:59-05:00", "limit=99999999999999999999",
                                   "after=" + "x" * 500, "since=" + "1" * 5000])
def test_usage_query_out_of_range_is_400(relay, account, query) -> None:
    response = httpx.get(f"{relay.url}/v1/usage?{query}", headers=auth(account), timeout=30)
    assert_openai_error(response, 400, response.json()["error"]["code"])


@pytest.mark.parametrize("path", ["/byok/credentials/99999999999999999999999", "/byok/credentials/" + "9" * 5000,
                                  "/byok/credentials?id=99999999999999999999999", "/byok/credentials/abc"])
def test_huge_credential_ids_are_400(relay, account, path) -> None:
    response = httpx.delete(relay.url + path, headers=auth(account), timeout=30)
    assert_openai_error(response, 400, "invalid_id")


def test_deep_nesting_is_400_in_each_protocol(relay, account, emulator) -> None:
    headers = {**auth(account), "content-type": "application/json"}
    chat = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": %s}]}' % nested(1000)
    response = httpx.post(relay.url + "/v1/chat/completions", content=chat, headers=headers, timeout=30)
    assert_openai_error(response, 400, "json_too_deep")
    messages = ('{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": '
                '[{"type": "tool_result", "content": %s}]}]}' % nested(1000))
    response = httpx.post(relay.url + "/v1/messages", content=messages, headers=headers, timeout=30)
    assert response.status_code == 400
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"
    assert emulator.requests == []
    shallow = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": %s}]}' % nested(40)
    response = httpx.post(relay.url + "/v1/chat/completions", content=shallow, headers=headers, timeout=30)
    assert response.status_code != 400 or response.json()["error"]["code"] != "json_too_deep"


def test_wrong_content_type_is_415(relay, account) -> None:
    response = httpx.post(relay.url + "/v1/chat/completions", content=b"model=gpt-4o-mini", timeout=30,
                          headers={**auth(account), "content-type": "application/x-www-form-urlencoded"})
    error = assert_openai_error(response, 415, "unsupported_content_type")
    assert "application/json" in error["message"]
    response = httpx.post(relay.url + "/v1/messages", content=b"{}", timeout=30,
                          headers={**auth(account), "content-type": "text/plain"})
    assert response.status_code == 415 and response.json()["type"] == "error"


def test_long_model_name_is_400_not_echoed(relay, account) -> None:
    body = {"model": "m" * 100_000, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(relay.url + "/v1/chat/completions", json=body, headers=auth(account), timeout=30)
    assert_openai_error(response, 400, "invalid_model")
    assert len(response.content) < 1000


def test_100k_embedding_inputs_are_refused_before_the_provider(relay, account, emulator) -> None:
    body = {"model": "text-embedding-3-small", "input": ["x"] * 100_000}
    response = httpx.post(relay.url + "/v1/embeddings", json=body, headers=auth(account), timeout=30)
    error = assert_openai_error(response, 400, "invalid_request")
    assert "2048" in error["message"]
    long_input = {"model": "text-embedding-3-small", "input": ["word " * 9000]}
    response = httpx.post(relay.url + "/v1/embeddings", json=long_input, headers=auth(account), timeout=30)
    assert_openai_error(response, 400, "input_too_long")
    assert [r for r in emulator.requests if r.path.endswith("/embeddings")] == []


def test_json_image_edit_over_2_mib_is_413(relay, account, emulator) -> None:
    body = {"model": "gpt-image-2", "prompt": "x",
            "images": [{"image_url": "data:image/png;base64," + "A" * (3 * 2**20)}]}
    response = httpx.post(relay.url + "/v1/images/edits", json=body, headers=auth(account), timeout=30)
    error = assert_openai_error(response, 413, "request_too_large")
    assert "multipart" in error["message"]


@pytest.mark.parametrize("key", ["\u0000", "a\u0000b", "\u202e", "ключ", "sk abc", "", "   ", True, 5, None])
def test_byok_keys_that_cannot_be_sent_are_refused(relay, account, key) -> None:
    response = httpx.post(relay.url + "/byok/credentials", json={"provider": "openai", "api_key": key},
                          headers=auth(account), timeout=30)
    error = assert_openai_error(response, 400, "invalid_request")
    assert error["param"] == "api_key"


# --- admin ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["\u0000", "a\u0000b", "\u202e", "ключ", True, 5, None, ""])
def test_pool_keys_that_cannot_be_sent_are_refused(relay, key) -> None:
    response = httpx.post(relay.url + "/admin/pool", json={"provider": "openai", "api_key": key}, headers=ADMIN)
    assert_openai_error(response, 400, "invalid_request")
    assert "Traceback" not in response.text


@pytest.mark.parametrize("name", ["", 1.5, 7, None, "x" * 65, "<script>", "a b", "\u202eabc", "-lead"])
def test_bad_account_names_are_400(relay, name) -> None:
    response = httpx.post(relay.url + "/admin/accounts", json={"name": name}, headers=ADMIN)
    assert_openai_error(response, 400, "invalid_request")


@pytest.mark.parametrize("amount", ["1_000", "NaN", "Infinity", "-Infinity", "1e3", "-5", "0", True, None,
                                    "9" * 30, 1e300, [1]])
def test_bad_amounts_are_400(relay, make_account, amount) -> None:
    account = make_account(balance=None)
    url = f"{relay.url}/admin/accounts/{account.name}/topup"
    assert_openai_error(httpx.post(url, json={"amount_usd": amount}, headers=ADMIN), 400, "invalid_request")
    shown = httpx.get(f"{relay.url}/admin/accounts/{account.name}/balance", headers=ADMIN).json()
    assert shown["balance_usd"] == "0"


@pytest.mark.parametrize("header", ["XXXXXXXadmin-test-key", "Basic admin-test-key", "admin-test-key",
                                    "Bearer", "Bearer admin-test-keyX", "Bearer \u00e9"])
def test_admin_needs_the_bearer_scheme(relay, header) -> None:
    response = httpx.get(relay.url + "/admin/pool", headers={"Authorization": header.encode("latin-1")})
    assert_openai_error(response, 401, "invalid_admin_key")


@pytest.mark.parametrize("path, body", [
    ("/admin/pool", {"provider": "openai", "api_key": True}),
    ("/admin/pool", {"provider": ["openai"], "api_key": "sk-x"}),
    ("/admin/pool", {"provider": "openai", "api_key": "sk-x", "base_url": "http://a:99999"}),
    ("/admin/pool", {"provider": "openai", "api_key": "sk-x", "label": 5}),
    ("/admin/accounts", {"name": "ok-name", "tier": 5}),
    ("/admin/accounts", {"name": "ok-name", "tier": "platinum"}),
])
def test_admin_wrong_types_are_400(relay, path, body) -> None:
    assert_openai_error(httpx.post(relay.url + path, json=body, headers=ADMIN), 400, "invalid_request")


def test_admin_huge_ints_are_400(relay, make_account) -> None:
    account = make_account(balance=None)
    base = f"{relay.url}/admin/accounts/{account.name}"
    for body in ({"rpm": 2**63}, {"tpm": 2**64 - 1}, {"rpm": -1}, {"rpm": 1.5}, {"rpm": "9" * 5000}):
        assert_openai_error(httpx.put(base + "/limits", json=body, headers=ADMIN), 400, "invalid_request")
    for path in ("/admin/keys/99999999999999999999999", "/admin/pool/" + "9" * 5000,
                 f"/admin/accounts/{account.name}/byok/9223372036854775808"):
        assert_openai_error(httpx.delete(relay.url + path, headers=ADMIN), 400, "invalid_id")
    assert_openai_error(httpx.get(relay.url + "/admin/accounts?after=9999999999999999999", headers=ADMIN),
                        400, "invalid_request")


def test_admin_valid_input_still_works(relay) -> None:
    created = httpx.post(relay.url + "/admin/accounts", json={"name": "ok.name-1@corp"}, headers=ADMIN)
    assert created.status_code in (201, 409)
    pool = httpx.post(relay.url + "/admin/pool", json={"provider": "openai", "api_key": "  sk-valid-key-123  "},
                      headers=ADMIN)
    assert pool.status_code == 201, pool.text
    assert httpx.delete(f"{relay.url}/admin/pool/{pool.json()['id']}", headers=ADMIN).status_code == 200


def test_output_token_fields_and_dimensions_are_bounded(relay, account, emulator) -> None:
    chat = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2**63}
    response = httpx.post(relay.url + "/v1/chat/completions", json=chat, headers=auth(account), timeout=30)
    assert_openai_error(response, 400, "invalid_request")["param"] == "max_tokens"
    messages = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2**64 - 1}
    response = httpx.post(relay.url + "/v1/messages", json=messages, headers=auth(account), timeout=30)
    assert response.status_code == 400 and response.json()["type"] == "error"
    embeddings = {"model": "text-embedding-3-small", "input": "x", "dimensions": 2**64 - 1}
    response = httpx.post(relay.url + "/v1/embeddings", json=embeddings, headers=auth(account), timeout=30)
    assert_openai_error(response, 400, "invalid_request")
    assert emulator.requests == []


def test_nul_in_ids_is_400_not_a_driver_error(relay, account) -> None:
    response = httpx.get(relay.url + "/v1/responses/%00/input_items", headers=auth(account), timeout=30)
    assert_openai_error(response, 400, "invalid_parameter")
    response = httpx.get(relay.url + "/admin/accounts/a%00b", headers=ADMIN, timeout=30)
    assert_openai_error(response, 400, "invalid_parameter")
