"""Conversation state: answers kept with `store` (the default) continue with previous_response_id
for every model and on any relay process sharing the database; GET/DELETE /v1/responses/{id} and
its input_items; another account's ids are 404s."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e.test_responses import CLAUDE, GPT, MODELS, WEATHER, client, stream_events
from tests.openapi_schema import check


def texts(items: list) -> str:
    return json.dumps(items)


@MODELS
def test_previous_response_id_continues_on_another_process(relay, account, emulator, spawn_relay, model) -> None:
    other = spawn_relay().start()
    first = client(relay, account.key).responses.create(model=model, input="My name is Ada, remember it.")
    second = client(other, account.key).responses.create(model=model, input="What is my name?",
                                                          previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text
    sent = texts(emulator.requests[-1].json.get("input") or emulator.requests[-1].json.get("messages"))
    assert "My name is Ada" in sent and first.output_text in sent and "What is my name?" in sent
    third = client(relay, account.key).responses.create(model=model, input="And again?", previous_response_id=second.id)
    sent = texts(emulator.requests[-1].json.get("input") or emulator.requests[-1].json.get("messages"))
    assert all(text in sent for text in ("My name is Ada", "What is my name?", second.output_text, "And again?"))
    assert third.previous_response_id == second.id


@MODELS
def test_function_call_output_continues_a_stored_turn(relay, account, emulator, model) -> None:
    """Codex's loop: the tool's output alone, after previous_response_id, streamed."""
    events = stream_events(relay, account.key, {"model": model, "input": "weather in Rome? use get_weather",
                                                "tools": [WEATHER], "tool_choice": "required"})
    first = events[-1]["response"]
    call = next(item for item in first["output"] if item["type"] == "function_call")
    events = stream_events(relay, account.key, {
        "model": model, "tools": [WEATHER], "previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "rainy, 12C"}]})
    final = events[-1]["response"]
    assert final["previous_response_id"] == first["id"]
    assert "rainy" in final["output"][-1]["content"][0]["text"]


def test_get_delete_and_input_items(relay, account) -> None:
    sdk = client(relay, account.key)
    first = sdk.responses.create(model=GPT, input="first turn")
    second = sdk.responses.create(model=CLAUDE, input=[{"role": "user", "content": "second turn"}],
                                  previous_response_id=first.id)
    headers = {"Authorization": f"Bearer {account.key}"}
    got = httpx.get(f"{relay.url}/v1/responses/{second.id}", headers=headers)
    assert got.status_code == 200 and got.json()["id"] == second.id
    check(got.json(), "Response")
    assert sdk.responses.retrieve(second.id).output_text == second.output_text
    listed = httpx.get(f"{relay.url}/v1/responses/{second.id}/input_items", headers=headers).json()
    check(listed, "ResponseItemList")
    # newest first: the new user message, the first answer, the first user message
    assert [item["role"] for item in listed["data"]] == ["user", "assistant", "user"]
    assert listed["data"][0]["content"][0]["text"] == "second turn"
    page = sdk.responses.input_items.list(second.id, order="asc", limit=1)
    assert page.data[0].content[0].text == "first turn" and page.has_more
    assert httpx.get(f"{relay.url}/byok/v1/responses/{first.id}", headers=headers).status_code == 200
    sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model=GPT, input="after delete", previous_response_id=first.id)


def test_store_false_keeps_nothing(relay, account, emulator) -> None:
    sdk = client(relay, account.key)
    kept_not = sdk.responses.create(model=CLAUDE, input="ephemeral", store=False)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(kept_not.id)


@pytest.mark.parametrize("model", [GPT, CLAUDE], ids=["gpt", "claude"])
def test_another_accounts_response_is_404(relay, make_account, emulator, model) -> None:
    owner, stranger = make_account(), make_account()
    mine = client(relay, owner.key).responses.create(model=model, input="private")
    emulator.reset()
    headers = {"Authorization": f"Bearer {stranger.key}"}
    for method, path in [("GET", ""), ("DELETE", ""), ("GET", "/input_items")]:
        response = httpx.request(method, f"{relay.url}/v1/responses/{mine.id}{path}", headers=headers)
        assert response.status_code == 404, (method, path, response.text)
        check(response.json(), "ErrorResponse")
    response = httpx.post(f"{relay.url}/v1/responses", headers=headers, timeout=30,
                          json={"model": model, "input": "continue", "previous_response_id": mine.id})
    assert response.status_code == 404 and response.json()["error"]["code"] == "response_not_found"
    assert emulator.requests == []  # refused before anything was sent or held
    assert client(relay, owner.key).responses.retrieve(mine.id).id == mine.id
