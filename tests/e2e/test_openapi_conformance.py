"""The relay's OpenAI-protocol answers validate against OpenAI's published OpenAPI document
(tests/openapi_schema.py), on both dispatch paths: passed through (OpenAI models) and translated
(Claude models through LiteLLM's transformation layer). Raw HTTP, so no SDK fills in what the relay
left out. A failure names every offending path, e.g.
    not a valid CreateChatCompletionResponse:
      choices/0: 'logprobs' is a required property

Extra fields: no schema reachable from the ones checked here sets `additionalProperties: false`, so
the relay's additions (`usage.cost`, a model's `mode`, `pricing`, `pricing_per_1m`) and LiteLLM's
(`reasoning_content`, `thinking_blocks`, `provider_specific_fields`) are allowed as the document
stands; `test_the_schemas_allow_the_relays_additions` fails if a new version of it forbids them."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from relay import accounts
from tests.openapi_schema import check, problems

PASSED_THROUGH, TRANSLATED = "gpt-4o-mini", "claude-sonnet-4-6"
PATHS = pytest.mark.parametrize("model", [PASSED_THROUGH, TRANSLATED], ids=["passthrough", "translated"])
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def post(relay, key: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(relay.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def chat_body(model: str, **extra) -> dict:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello spec"}], **extra}


def stream_data(relay, key: str, body: dict) -> list[str]:
    """The `data:` payloads of a chat stream, [DONE] included."""
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def stream_chunks(relay, key: str, body: dict) -> list[dict]:
    lines = stream_data(relay, key, body)
    assert lines and lines[-1] == "[DONE]", lines[-3:]
    return [json.loads(line) for line in lines[:-1]]


def check_chunks(chunks: list[dict], model: str) -> None:
    """Every chunk, each failure reported with its chunk's index."""
    found = [f"chunk {i}: {p}" for i, chunk in enumerate(chunks)
             for p in problems(chunk, "CreateChatCompletionStreamResponse")]
    assert not found, "chunks that are not a valid CreateChatCompletionStreamResponse:\n  " + "\n  ".join(found[:12])
    assert {chunk["model"] for chunk in chunks} == {model}
    assert len({chunk["id"] for chunk in chunks}) == 1  # "Each chunk has the same ID."


# -- chat ---------------------------------------------------------------------------------------------

@PATHS
@pytest.mark.parametrize("tools", [False, True], ids=["text", "tools"])
def test_chat_completion(relay, account, model, tools) -> None:
    extra = {"tools": [WEATHER], "tool_choice": "required"} if tools else {}
    response = post(relay, account.key, "/v1/chat/completions", chat_body(model, **extra))
    assert response.status_code == 200, response.text
    answer = response.json()
    check(answer, "CreateChatCompletionResponse")
    assert answer["object"] == "chat.completion" and answer["model"] == model
    assert isinstance(answer["usage"]["cost"], float)
    assert bool(answer["choices"][0]["message"].get("tool_calls")) == tools
    assert answer["choices"][0]["finish_reason"] == ("tool_calls" if tools else "stop")


def test_chat_completion_with_reasoning_translated(relay, account) -> None:
    """Claude's thinking comes back through the translation; the answer still conforms."""
    response = post(relay, account.key, "/v1/chat/completions",
                    chat_body(TRANSLATED, max_tokens=2048, reasoning_effort="low"))
    assert response.status_code == 200, response.text
    answer = response.json()
    check(answer, "CreateChatCompletionResponse")
    assert answer["choices"][0]["message"]["reasoning_content"]  # LiteLLM's name for it, an allowed extra
    assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


@PATHS
@pytest.mark.parametrize("include_usage", [False, True], ids=["no_usage", "include_usage"])
def test_every_stream_chunk(relay, account, model, include_usage) -> None:
    body = chat_body(model, stream=True, **({"stream_options": {"include_usage": True}} if include_usage else {}))
    chunks = stream_chunks(relay, account.key, body)
    assert len(chunks) >= 3
    check_chunks(chunks, model)
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == (1 if include_usage else 0)
    if include_usage:  # the usage chunk is last, with no choices, as OpenAI sends it
        assert chunks[-1] is with_usage[0] and chunks[-1]["choices"] == []
        check(chunks[-1]["usage"], "CompletionUsage")
    finishes = [choice["finish_reason"] for c in chunks for choice in c["choices"]]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"


@PATHS
def test_tool_call_stream(relay, account, model) -> None:
    chunks = stream_chunks(relay, account.key, chat_body(model, stream=True, tools=[WEATHER], tool_choice="required"))
    check_chunks(chunks, model)
    calls = [call for c in chunks for choice in c["choices"] for call in choice["delta"].get("tool_calls") or []]
    assert calls and calls[0]["id"] and calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(call["function"].get("arguments") or "" for call in calls)
    assert isinstance(json.loads(arguments), dict)
    assert [choice["finish_reason"] for c in chunks for choice in c["choices"]][-1] == "tool_calls"


@PATHS
def test_stream_that_fails_midway_ends_with_an_error_body(relay, account, emulator, model) -> None:
    """Chunks before the failure conform; the final event is an ErrorResponse, and no [DONE]."""
    emulator.set_mode("drop_mid_stream")
    lines = stream_data(relay, account.key, chat_body(model, stream=True))
    assert lines and lines[-1] != "[DONE]"
    *chunks, last = [json.loads(line) for line in lines]
    check_chunks(chunks, model)
    check(last, "ErrorResponse")


# -- embeddings, images, models -----------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(relay, account, encoding) -> None:
    response = post(relay, account.key, "/v1/embeddings",
                    {"model": "text-embedding-3-small", "input": ["one", "two"], "encoding_format": encoding})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [item["index"] for item in answer["data"]] == [0, 1]
    if encoding == "base64":
        # The document types `embedding` as an array of numbers only, though the API answers
        # `encoding_format: "base64"` (what the official SDK asks for by default) with a base64
        # string of little-endian float32s. Checked as such here; the rest against the schema.
        for item in answer["data"]:
            assert isinstance(item["embedding"], str) and len(base64.b64decode(item["embedding"])) % 4 == 0
        answer = {**answer, "data": [{**item, "embedding": [0.0]} for item in answer["data"]]}
    check(answer, "CreateEmbeddingResponse")


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
def test_image_generation(relay, account, response_format) -> None:
    response = post(relay, account.key, "/v1/images/generations",
                    {"model": "gpt-image-2", "prompt": "a teapot", "size": "1024x1024", "quality": "low",
                     "response_format": response_format})
    assert response.status_code == 200, response.text
    answer = response.json()
    check(answer, "ImagesResponse")
    assert answer["data"] and all(response_format in item for item in answer["data"])
    if response_format == "url":  # `format: uri` is not checked by jsonschema without rfc3987
        assert all(item["url"].startswith(("http://", "https://")) for item in answer["data"])


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "teal").save(buffer, "PNG")
    return buffer.getvalue()


def test_image_edit_multipart(relay, account) -> None:
    response = httpx.post(relay.url + "/v1/images/edits", headers={"Authorization": f"Bearer {account.key}"},
                          data={"model": "gpt-image-2", "prompt": "studio background", "quality": "low"},
                          files=[("image", ("input.png", png(), "image/png"))], timeout=30)
    assert response.status_code == 200, response.text
    check(response.json(), "ImagesResponse")


def test_image_edit_json(relay, account) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png()).decode()
    response = post(relay, account.key, "/v1/images/edits",
                    {"model": "gpt-image-2", "prompt": "night", "images": [{"image_url": data_url}], "quality": "low"})
    assert response.status_code == 200, response.text
    check(response.json(), "ImagesResponse")


@pytest.mark.parametrize("authenticated", [True, False], ids=["with_key", "public"])
def test_model_list(relay, account, authenticated) -> None:
    headers = {"Authorization": f"Bearer {account.key}"} if authenticated else {}
    response = httpx.get(relay.url + "/v1/models", headers=headers)
    assert response.status_code == 200
    listing = response.json()
    check(listing, "ListModelsResponse")
    assert {PASSED_THROUGH, TRANSLATED} <= {m["id"] for m in listing["data"]}
    for model in listing["data"]:
        check(model, "Model")


# -- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, key, status", [
    ("/v1/chat/completions", chat_body("no-such-model"), "valid", 404),
    ("/v1/embeddings", {"model": "no-such-embedder", "input": "x"}, "valid", 404),
    ("/v1/chat/completions", {"model": PASSED_THROUGH}, "valid", 400),
    ("/v1/chat/completions", {"model": PASSED_THROUGH, "messages": "hello"}, "valid", 400),
    ("/v1/chat/completions", chat_body("text-embedding-3-small"), "valid", 400),  # wrong mode
    ("/v1/embeddings", {"model": PASSED_THROUGH, "input": "x"}, "valid", 400),
    ("/v1/chat/completions", chat_body(PASSED_THROUGH), "sk-rr-not-a-key", 401),
    ("/v1/chat/completions", chat_body(PASSED_THROUGH), None, 401),
    ("/v1/chat/completions", chat_body(TRANSLATED), "sk-rr-not-a-key", 401),
], ids=["404-chat", "404-embeddings", "400-no-messages", "400-bad-messages", "400-wrong-mode",
        "400-chat-model-on-embeddings", "401-bad-key", "401-no-key", "401-translated"])
def test_errors(relay, account, emulator, path, body, key, status) -> None:
    headers = {"Authorization": f"Bearer {account.key if key == 'valid' else key}"} if key else {}
    response = httpx.post(relay.url + path, json=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    check(response.json(), "ErrorResponse")
    assert emulator.requests == []


def test_invalid_json_body_is_an_error_response(relay, account) -> None:
    response = httpx.post(relay.url + "/v1/chat/completions", content=b'{"model": ', timeout=30,
                          headers={"Authorization": f"Bearer {account.key}", "content-type": "application/json"})
    assert response.status_code == 400
    check(response.json(), "ErrorResponse")


def test_model_list_with_a_bad_key_is_401(relay) -> None:
    response = httpx.get(relay.url + "/v1/models", headers={"Authorization": "Bearer sk-rr-not-a-key"})
    assert response.status_code == 401
    check(response.json(), "ErrorResponse")


def test_insufficient_balance_is_402(relay, make_account) -> None:
    broke = make_account(balance=None)
    response = post(relay, broke.key, "/v1/chat/completions", chat_body(PASSED_THROUGH))
    assert response.status_code == 402, response.text
    check(response.json(), "ErrorResponse")


def test_rate_limited_is_429(relay, make_account) -> None:
    limited = make_account()
    accounts.update_account(relay.state.engine, limited.name, rpm_limit=1)
    assert post(relay, limited.key, "/v1/chat/completions", chat_body(PASSED_THROUGH)).status_code == 200
    response = post(relay, limited.key, "/v1/chat/completions", chat_body(PASSED_THROUGH))
    assert response.status_code == 429, response.text
    check(response.json(), "ErrorResponse")


@PATHS
@pytest.mark.parametrize("mode, status", [("error_400", 400), ("error_500", 502)])
def test_upstream_errors(relay, account, emulator, model, mode, status) -> None:
    """A provider's refusal or failure, in OpenAI's error shape whichever provider it came from."""
    emulator.set_mode(mode)
    response = post(relay, account.key, "/v1/chat/completions", chat_body(model))
    assert response.status_code == status, response.text
    check(response.json(), "ErrorResponse")


# -- the checker itself -------------------------------------------------------------------------------

def test_the_validator_catches_what_the_relay_once_dropped() -> None:
    """The check has teeth: the fields the old re-serialization lost are required by the schema."""
    answer = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}]}
    found = problems(answer, "CreateChatCompletionResponse")
    assert "choices/0: 'logprobs' is a required property" in found
    assert "choices/0/message: 'refusal' is a required property" in found
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    assert problems(chunk, "CreateChatCompletionStreamResponse") == [
        "choices/0: 'finish_reason' is a required property"]
    # `nullable: true` (OpenAPI 3.0) is honoured: null where the document allows it, not elsewhere.
    assert problems({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": None, "logprobs": None}],
                     "usage": None}, "CreateChatCompletionStreamResponse") == []
    assert problems({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "done"}]},
                    "CreateChatCompletionStreamResponse")
    assert problems({**chunk, "id": None, "choices": []}, "CreateChatCompletionStreamResponse")
    assert problems({"error": {"message": "m", "type": "t"}}, "ErrorResponse")  # param and code required
    assert problems({"object": "list", "data": [{"id": "m", "object": "model", "created": 1, "owned_by": "o",
                                                 "shutdown_date": "soon"}]}, "ListModelsResponse")  # format: date


def test_the_schemas_allow_the_relays_additions() -> None:
    answer = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                           "message": {"role": "assistant", "content": "hi", "refusal": None}}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost": 0.001}}
    assert problems(answer, "CreateChatCompletionResponse") == []
    model = {"id": "m", "object": "model", "created": 1, "owned_by": "o", "mode": "chat",
             "pricing": {"prompt": "0.000001", "completion": "0.000002"}, "pricing_per_1m": {"input": "1"}}
    assert problems(model, "Model") == []
