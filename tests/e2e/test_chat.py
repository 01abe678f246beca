"""OpenAI chat through the relay with the official SDK, only the base URL swapped."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from relay.money import decimal_str
from tests.e2e.conftest import POOL_KEYS


def test_chat_non_stream(openai_client, emulator) -> None:
    reply = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello relay"}]
    )
    assert reply.choices[0].message.content.startswith("Hello from the emulator")
    assert reply.model == "gpt-4o-mini"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    sent = [r for r in emulator.requests if r.path == "/v1/chat/completions"]
    assert len(sent) == 1 and sent[0].api_key in POOL_KEYS["openai"]
    assert sent[0].json["model"] == "gpt-4o-mini"


def test_chat_stream_with_usage(openai_client, emulator) -> None:
    stream = openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream please"}],
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from the emulator")
    assert len([c for c in chunks if c.choices]) >= 4  # relayed chunk by chunk, not buffered
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    non_stream = openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream please"}]
    )
    assert chunks[-1].usage.prompt_tokens == non_stream.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == non_stream.usage.completion_tokens


def test_stream_without_include_usage_ends_with_done(relay, account) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {account.key}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert all(p["choices"] for p in payloads)  # no usage chunk the client did not ask for


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-6"])
def test_tool_call_round_trip(openai_client, model) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = openai_client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert "location" in json.loads(call.function.arguments)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    second = openai_client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert "Sunny, 21 C" in second.choices[0].message.content


def test_claude_through_openai_sdk(openai_client, emulator) -> None:
    reply = openai_client.chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Summarize our changelog"}],
    )
    assert reply.choices[0].message.content.startswith("Hello from the emulator")
    assert reply.model == "claude-sonnet-4-6"
    sent = [r for r in emulator.requests if r.path == "/v1/messages"]
    assert len(sent) == 1 and sent[0].api_key in POOL_KEYS["anthropic"]
    assert sent[0].json["system"]  # LiteLLM moved the system message where Anthropic wants it


def test_claude_stream_through_openai_sdk(openai_client) -> None:
    stream = openai_client.chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Hello")
    assert chunks[-1].usage.completion_tokens > 0


def test_models_list(openai_client, relay) -> None:
    models = {m.id: m for m in openai_client.models.list()}
    for name in ("gpt-5.5", "gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small", "gpt-image-2"):
        assert name in models
    assert models["claude-sonnet-4-6"].owned_by == "anthropic"
    raw = httpx.get(relay.url + "/v1/models").json()  # public: no key needed
    entry = next(m for m in raw["data"] if m["id"] == "gpt-4o-mini")
    assert entry["mode"] == "chat"
    assert set(entry["pricing"]) >= {"prompt", "completion"}
    assert isinstance(entry["pricing"]["prompt"], str) and isinstance(entry["pricing_per_1m"]["input"], str)
    image = next(m for m in raw["data"] if m["id"] == "gpt-image-2")
    assert {"image_input", "image_output"} <= set(image["pricing"])


def test_models_with_invalid_key_is_401(relay) -> None:
    response = httpx.get(relay.url + "/v1/models", headers={"Authorization": "Bearer sk-rr-nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_documentation_page_lists_the_live_catalog(relay) -> None:
    page = httpx.get(relay.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for model in relay.state.catalog.models.values():
        assert f"<code>{model.name}</code>" in html
    assert f"{relay.url}/byok/v1" in html and "Loading model catalog" not in html
    mini = relay.state.catalog.get("gpt-4o-mini").sell
    assert f"${decimal_str(mini.input)}" in html
