"""The relay's OpenAI-protocol answers validate against OpenAI's published OpenAPI document, on both
dispatch paths: passed through (OpenAI models) and translated (Claude models through LiteLLM's
transformation layer). Raw HTTP, so no SDK fills in what the relay left out."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.openapi_schema import check, problems

PASSED_THROUGH, TRANSLATED = "gpt-4o-mini", "claude-sonnet-4-6"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def post(relay, key: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(relay.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def chat_body(model: str, **extra) -> dict:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello spec"}], **extra}


def stream_chunks(relay, key: str, body: dict) -> list[dict]:
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200, response.read()
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("model", [PASSED_THROUGH, TRANSLATED])
@pytest.mark.parametrize("tools", [False, True])
def test_chat_completion(relay, account, model, tools) -> None:
    extra = {"tools": [WEATHER], "tool_choice": "required"} if tools else {}
    response = post(relay, account.key, "/v1/chat/completions", chat_body(model, **extra))
    assert response.status_code == 200, response.text
    answer = response.json()
    check(answer, "CreateChatCompletionResponse")
    assert answer["model"] == model and isinstance(answer["usage"]["cost"], float)
    assert bool(answer["choices"][0]["message"].get("tool_calls")) == tools


@pytest.mark.parametrize("model", [PASSED_THROUGH, TRANSLATED])
@pytest.mark.parametrize("include_usage", [False, True])
def test_every_stream_chunk(relay, account, model, include_usage) -> None:
    body = chat_body(model, stream=True, **({"stream_options": {"include_usage": True}} if include_usage else {}))
    chunks = stream_chunks(relay, account.key, body)
    assert len(chunks) >= 3
    for chunk in chunks:
        check(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["model"] == model
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == (1 if include_usage else 0)
    if include_usage:
        assert chunks[-1] is with_usage[0] and chunks[-1]["choices"] == []
    finishes = [choice["finish_reason"] for c in chunks for choice in c["choices"]]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])


@pytest.mark.parametrize("model", [PASSED_THROUGH, TRANSLATED])
def test_tool_call_stream(relay, account, model) -> None:
    chunks = stream_chunks(relay, account.key, chat_body(model, stream=True, tools=[WEATHER], tool_choice="required"))
    for chunk in chunks:
        check(chunk, "CreateChatCompletionStreamResponse")
    calls = [call for c in chunks for choice in c["choices"] for call in choice["delta"].get("tool_calls") or []]
    assert calls and calls[0]["id"] and calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(call["function"].get("arguments") or "" for call in calls)
    assert isinstance(json.loads(arguments), dict)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(relay, account, encoding) -> None:
    response = post(relay, account.key, "/v1/embeddings",
                    {"model": "text-embedding-3-small", "input": ["one", "two"], "encoding_format": encoding})
    assert response.status_code == 200, response.text
    answer = response.json()
    if encoding == "base64":
        # The document types `embedding` as numbers only; base64 answers (what the official SDK asks
        # for) carry strings. Checked as strings here, the rest of the answer against the schema.
        assert all(isinstance(item["embedding"], str) for item in answer["data"])
        answer = {**answer, "data": [{**item, "embedding": [0.0]} for item in answer["data"]]}
    check(answer, "CreateEmbeddingResponse")


def test_image_generation(relay, account) -> None:
    response = post(relay, account.key, "/v1/images/generations",
                    {"model": "gpt-image-2", "prompt": "a teapot", "size": "1024x1024", "quality": "low"})
    assert response.status_code == 200, response.text
    check(response.json(), "ImagesResponse")


def test_model_list(relay, account) -> None:
    response = httpx.get(relay.url + "/v1/models", headers={"Authorization": f"Bearer {account.key}"})
    assert response.status_code == 200
    listing = response.json()
    check(listing, "ListModelsResponse")
    assert {PASSED_THROUGH, TRANSLATED} <= {m["id"] for m in listing["data"]}


@pytest.mark.parametrize("path, body, key, status", [
    ("/v1/chat/completions", chat_body("no-such-model"), "valid", 404),
    ("/v1/chat/completions", {"model": PASSED_THROUGH}, "valid", 400),
    ("/v1/chat/completions", chat_body(PASSED_THROUGH), "sk-rr-not-a-key", 401),
    ("/v1/embeddings", {"model": PASSED_THROUGH, "input": "x"}, "valid", 400),
])
def test_errors(relay, account, path, body, key, status) -> None:
    response = post(relay, account.key if key == "valid" else key, path, body)
    assert response.status_code == status, response.text
    check(response.json(), "ErrorResponse")


def test_the_validator_catches_what_the_relay_once_dropped() -> None:
    """The check has teeth: the fields the old re-serialization lost are required by the schema."""
    answer = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}]}
    found = problems(answer, "CreateChatCompletionResponse")
    assert any("logprobs" in p for p in found) and any("refusal" in p for p in found)
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    assert any("finish_reason" in p for p in problems(chunk, "CreateChatCompletionStreamResponse"))
