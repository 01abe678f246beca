"""GET /v1/models and GET /v1/models/{id} as the official SDKs read them: OpenAI's shape for OpenAI
callers, Anthropic's (with its cursor pages) for callers that send `anthropic-version` or
`x-api-key`; every model once under its public name, aliases resolved to the model they name;
errors in the caller's protocol; /byok/v1 limited to the caller's providers."""

from __future__ import annotations

from datetime import datetime

import anthropic
import httpx
import openai
import pytest

from relay.money import decimal_str
from tests.e2e.byok_support import add_credential, auth, fresh_key

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


def chat_names(relay) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.name for m in relay.state.catalog.models.values() if m.mode == "chat"]


# --- OpenAI shape ----------------------------------------------------------------------------------


def test_openai_sdk_lists_every_model_once_with_its_aliases(relay, openai_client) -> None:
    listed = list(openai_client.models.list())
    ids = [m.id for m in listed]
    assert ids == list(relay.state.catalog.models)  # catalog order, each model once
    assert not set(ids) & set(relay.state.catalog.aliases)  # an alias is not a model of its own
    haiku = next(m for m in listed if m.id == "claude-haiku-4-5")
    assert haiku.object == "model" and haiku.owned_by == "anthropic" and isinstance(haiku.created, int)
    assert "claude-haiku-4-5-20251001" in haiku.model_extra["aliases"]
    for required in ("claude-opus-4-8", "claude-sonnet-5", "gpt-5.6", "gpt-image-2", "text-embedding-3-large"):
        assert required in ids


def test_openai_sdk_retrieves_a_model_and_an_alias(relay, openai_client) -> None:
    gpt = openai_client.models.retrieve("gpt-5.6")
    assert (gpt.id, gpt.object, gpt.owned_by) == ("gpt-5.6", "model", "openai")
    assert gpt.model_extra["pricing_per_1m"]["input"] == decimal_str(relay.state.catalog.get("gpt-5.6").sell.input)
    pinned = openai_client.models.retrieve("claude-haiku-4-5-20251001")
    assert pinned.id == "claude-haiku-4-5"  # the model the alias names, as listed and billed
    assert "claude-haiku-4-5-20251001" in pinned.model_extra["aliases"]
    assert openai_client.models.retrieve("gpt-mini-latest").id == "gpt-5.4-mini"


def test_openai_sdk_unknown_model_is_a_404_in_openai_shape(openai_client) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.models.retrieve("gpt-nonexistent-9")
    error = raised.value.body
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "gpt-nonexistent-9" in error["message"]


def test_retrieve_is_public_but_a_sent_key_must_be_valid(relay) -> None:
    assert httpx.get(relay.url + "/v1/models/claude-sonnet-5").json()["id"] == "claude-sonnet-5"
    bad = httpx.get(relay.url + "/v1/models/claude-sonnet-5", headers={"Authorization": "Bearer sk-rr-nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"


# --- Anthropic shape -------------------------------------------------------------------------------


def test_anthropic_sdk_lists_chat_models_page_by_page(relay, anthropic_client) -> None:
    first = anthropic_client.models.list(limit=5)
    assert len(first.data) == 5 and first.has_more
    assert (first.first_id, first.last_id) == (first.data[0].id, first.data[-1].id)
    every = list(anthropic_client.models.list(limit=5))  # the SDK follows after_id = last_id
    assert [m.id for m in every] == chat_names(relay)  # chat models: what /v1/messages can use
    for model in every:
        assert model.type == "model" and model.display_name and model.lifecycle == "active"
        assert isinstance(model.created_at, datetime) and model.created_at.tzinfo is not None
    opus = next(m for m in every if m.id == "claude-opus-4-8")
    assert opus.display_name == "Claude Opus 4.8" and opus.max_tokens == 128000


def test_anthropic_list_before_id_and_bad_cursors(relay, account) -> None:
    headers = {**auth(account.key, "anthropic")}
    names = chat_names(relay)
    page = httpx.get(relay.url + "/v1/models", params={"before_id": names[4], "limit": 3}, headers=headers).json()
    assert [m["id"] for m in page["data"]] == names[1:4] and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (names[1], names[3])
    rest = httpx.get(relay.url + "/v1/models", params={"before_id": names[1]}, headers=headers).json()
    assert [m["id"] for m in rest["data"]] == names[:1] and rest["has_more"] is False
    last = httpx.get(relay.url + "/v1/models", params={"after_id": names[-1]}, headers=headers).json()
    assert last == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    for params in ({"limit": 0}, {"limit": "many"}, {"after_id": "nope"}, {"after_id": names[0], "before_id": names[2]}):
        refused = httpx.get(relay.url + "/v1/models", params=params, headers=headers)
        assert refused.status_code == 400, params
        assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_sdk_retrieves_a_model_and_an_alias(anthropic_client) -> None:
    model = anthropic_client.models.retrieve("claude-haiku-4-5-20251001")
    assert (model.type, model.id, model.display_name) == ("model", "claude-haiku-4-5", "Claude Haiku 4.5")
    assert isinstance(model.created_at, datetime)
    assert anthropic_client.models.retrieve("claude-sonnet-latest").id == "claude-sonnet-5-5"


def test_anthropic_sdk_unknown_model_is_a_404_in_anthropic_shape(relay, account, anthropic_client) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        anthropic_client.models.retrieve("claude-sonnet-4-5-20250929")  # retired: not in the catalog
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == "not_found_error"
    # an embedding model is no Messages model: not in Anthropic's view
    response = httpx.get(relay.url + "/v1/models/text-embedding-3-small", headers=auth(account.key, "anthropic"))
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_anthropic_caller_gets_anthropic_errors_and_rate_limit_headers(relay, account) -> None:
    bad = httpx.get(relay.url + "/v1/models", headers={"x-api-key": "sk-rr-nope", **ANTHROPIC_HEADERS})
    assert bad.status_code == 401
    assert bad.json() == {"type": "error", "error": {"type": "authentication_error", "message": bad.json()["error"]["message"]}}
    good = httpx.get(relay.url + "/v1/models", headers={"x-api-key": account.key})  # x-api-key alone is enough
    assert good.status_code == 200 and good.json()["data"][0]["type"] == "model"
    assert good.headers["anthropic-ratelimit-requests-limit"] and good.headers["X-RateLimit-Limit"]
    public = httpx.get(relay.url + "/v1/models", headers=ANTHROPIC_HEADERS)  # public in Anthropic's shape too
    assert public.status_code == 200 and "has_more" in public.json()


# --- /byok/v1 --------------------------------------------------------------------------------------


def test_byok_retrieve_shows_only_the_callers_providers(relay, make_account) -> None:
    account = make_account()
    url = relay.url + "/byok/v1/models/"
    assert httpx.get(url + "claude-opus-4-8").status_code == 401  # per caller: a key is required
    assert httpx.get(url + "claude-opus-4-8", headers=auth(account.key)).status_code == 404
    add_credential(relay, account, "anthropic", fresh_key("anthropic"))
    assert httpx.get(url + "claude-opus-4-8", headers=auth(account.key)).json()["id"] == "claude-opus-4-8"
    assert httpx.get(url + "gpt-5.6", headers=auth(account.key)).status_code == 404
    anthropic_view = httpx.get(url + "claude-haiku-4-5-20251001", headers=auth(account.key, "anthropic"))
    assert anthropic_view.json()["id"] == "claude-haiku-4-5" and anthropic_view.json()["type"] == "model"
    listed = httpx.get(relay.url + "/byok/v1/models", headers=auth(account.key, "anthropic")).json()
    assert {m["id"] for m in listed["data"]} <= {m.name for m in relay.state.catalog.models.values()
                                                 if m.provider == "anthropic"}
