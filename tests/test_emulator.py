"""The provider emulator must speak OpenAI's and Anthropic's wire formats well enough for
the official SDKs and LiteLLM, and its failure modes must behave as the relay tests expect."""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Iterator

import anthropic
import httpx
import litellm
import openai
import pytest

from tests.emulator import Emulator
from tests.emulator.images import PNG_SIGNATURE, make_png

USER = [{"role": "user", "content": "What is the weather in Paris today?"}]
REPLY = "Hello from the emulator. You said: What is the weather in Paris today?"
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}}}}}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(emu: Emulator) -> None:
    emu.reset()


def test_openai_sdk_chat_plain_stream_and_tools(emu: Emulator) -> None:
    client = openai.OpenAI(base_url=emu.url + "/v1", api_key="sk-test", max_retries=0)
    plain = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert plain.choices[0].message.content == REPLY

    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 4 and "".join(deltas) == REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    no_usage = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert all(c.usage is None for c in no_usage)

    called = client.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER_TOOL])
    call = called.choices[0].message.tool_calls[0]
    assert called.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location":"test","days":1}')
    answered = client.chat.completions.create(model="gpt-4o", tools=[WEATHER_TOOL], messages=[
        *USER, called.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}])
    assert "sunny, 21C" in answered.choices[0].message.content
    assert emu.requests[0].api_key == "sk-test" and emu.requests[0].path == "/v1/chat/completions"


@pytest.mark.parametrize("model,base", [("openai/gpt-4o", "/v1"), ("anthropic/claude-sonnet-4-6", "")])
async def test_litellm_completion_usage_matches_between_stream_and_not(emu: Emulator, model: str, base: str) -> None:
    args = {"model": model, "api_base": emu.url + base, "api_key": "k", "messages": USER, "max_tokens": 50}
    plain = await litellm.acompletion(**args)
    assert plain.choices[0].message.content == REPLY
    stream = await litellm.acompletion(**args, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        usage = getattr(chunk, "usage", None) or usage
    assert text == REPLY
    assert (usage.prompt_tokens, usage.completion_tokens) == (plain.usage.prompt_tokens, plain.usage.completion_tokens)
    assert plain.usage.prompt_tokens > 0


async def test_litellm_anthropic_messages_over_responses(emu: Emulator) -> None:
    args = {"model": "openai/gpt-4o", "api_base": emu.url + "/v1", "api_key": "k", "messages": USER, "max_tokens": 50}
    plain = await litellm.anthropic_messages(**args)
    assert plain["content"][0]["text"] == REPLY and plain["usage"]["input_tokens"] > 0
    events = [e async for e in await litellm.anthropic_messages(**args, stream=True)]
    joined = b"".join(e if isinstance(e, bytes) else str(e).encode() for e in events)
    assert b"text_delta" in joined and b"message_stop" in joined
    assert {r.path for r in emu.requests} == {"/v1/responses"}


def test_anthropic_sdk_messages_stream_thinking_and_cache(emu: Emulator) -> None:
    client = anthropic.Anthropic(base_url=emu.url, api_key="ak-test", max_retries=0)
    system = [{"type": "text", "text": "You are helpful. " * 20, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER, system=system)
    assert first.content[0].text == REPLY and first.stop_reason == "end_turn"
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=USER, system=system) as stream:
        again = stream.get_final_message()
    assert again.content[0].text == REPLY
    assert again.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert again.usage.cache_creation_input_tokens == 0
    assert (again.usage.input_tokens, again.usage.output_tokens) == (first.usage.input_tokens, first.usage.output_tokens)

    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=2000, messages=USER, tools=[tool],
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "tool_use"] and message.stop_reason == "tool_use"
    assert message.content[0].signature and message.content[1].input == {"location": "test", "days": 1}
    assert client.messages.count_tokens(model="claude-sonnet-4-6", messages=USER).input_tokens > 0


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # LiteLLM types base64 as list[float]
async def test_embeddings_float_and_base64_agree(emu: Emulator) -> None:
    args = {"model": "openai/text-embedding-3-small", "api_base": emu.url + "/v1", "api_key": "k", "input": ["a", "b"]}
    floats = await litellm.aembedding(**args)
    encoded = await litellm.aembedding(**args, encoding_format="base64")
    vector = floats.data[0]["embedding"]
    assert len(vector) == 1536 and floats.usage.prompt_tokens == 2
    assert list(struct.unpack("<1536f", base64.b64decode(encoded.data[0]["embedding"]))) == vector
    client = openai.OpenAI(base_url=emu.url + "/v1", api_key="k", max_retries=0)
    tokens = client.embeddings.create(model="text-embedding-3-large", input=[[1, 2, 3]], dimensions=64)
    assert len(tokens.data[0].embedding) == 64 and tokens.usage.prompt_tokens == 3


async def test_image_generation_returns_png(emu: Emulator) -> None:
    result = await litellm.aimage_generation(model="openai/gpt-image-1", api_base=emu.url + "/v1", api_key="k",
                                             prompt="a cat", quality="low", size="1024x1024")
    assert base64.b64decode(result.data[0].b64_json).startswith(PNG_SIGNATURE)
    assert result.usage.output_tokens == 272
    client = openai.OpenAI(base_url=emu.url + "/v1", api_key="k", max_retries=0)
    url = client.images.generate(model="dall-e-3", prompt="a dog", response_format="url").data[0].url
    assert url.startswith(emu.url + "/_emulator/files/") and httpx.get(url).content.startswith(PNG_SIGNATURE)


def test_multipart_edit_records_files_exactly(emu: Emulator) -> None:
    one, two = make_png(b"one"), make_png(b"two") + b"\0"
    response = httpx.post(emu.url + "/v1/images/edits", headers={"Authorization": "Bearer k"},
                          data={"model": "gpt-image-1", "prompt": "paint it blue"},
                          files=[("image[]", ("a.png", one, "image/png")), ("image[]", ("b.png", two, "image/png")),
                                 ("mask", ("m.png", one, "image/png"))])
    assert response.status_code == 200
    assert response.json()["usage"]["input_tokens_details"]["image_tokens"] == 200
    form = emu.requests[0].form
    assert form["prompt"] == ["paint it blue"]
    assert [(f["filename"], f["size"], f["sha256"]) for f in form["image[]"]] == [
        ("a.png", len(one), hashlib.sha256(one).hexdigest()), ("b.png", len(two), hashlib.sha256(two).hexdigest())]
    as_json = httpx.post(emu.url + "/v1/images/edits", headers={"Authorization": "Bearer k"}, json={
        "model": "gpt-image-1", "prompt": "x", "images": [{"file_id": "file-1"}]})
    assert as_json.json()["usage"]["input_tokens_details"]["image_tokens"] == 100


def test_auth_errors_in_provider_shapes(emu: Emulator) -> None:
    chat = httpx.post(emu.url + "/v1/chat/completions", json={"model": "m", "messages": USER})
    assert chat.status_code == 401 and set(chat.json()["error"]) == {"message", "type", "param", "code"}
    emu.fail_key("revoked", 401)
    msg = httpx.post(emu.url + "/v1/messages", headers={"x-api-key": "revoked"}, json={})
    assert msg.status_code == 401 and msg.json()["error"]["type"] == "authentication_error"


def test_error_mode_applies_count_times_then_recovers(emu: Emulator) -> None:
    httpx.post(emu.url + "/_emulator/mode", json={"mode": "error_500", "count": 1}).raise_for_status()
    body = {"model": "m", "messages": USER}
    failed = httpx.post(emu.url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-secret"}, json=body)
    assert failed.status_code == 500 and "internal error for key sk-secret" in failed.text
    assert httpx.post(emu.url + "/v1/chat/completions", headers={"Authorization": "Bearer k"}, json=body).is_success
    emu.set_mode("error_429", count=1)
    limited = httpx.post(emu.url + "/v1/messages", headers={"x-api-key": "k"}, json={**body, "max_tokens": 5})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "0"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert len(httpx.get(emu.url + "/_emulator/requests").json()) == 3


def test_drop_mid_stream_and_non_stream(emu: Emulator) -> None:
    emu.set_mode("drop_mid_stream", count=2)
    body = {"model": "m", "messages": USER, "max_tokens": 5, "stream": True}
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", emu.url + "/v1/messages", headers={"x-api-key": "k"}, json=body) as response:
            lines.extend(response.iter_lines())
    assert sum("text_delta" in line for line in lines) == 2 and not any("message_stop" in line for line in lines)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(emu.url + "/v1/chat/completions", headers={"Authorization": "Bearer k"}, json={**body, "stream": False})
    assert emu.state()["streams_dropped"] == 1


def test_slow_stream_delivers_first_delta_before_last_chunk(emu: Emulator) -> None:
    emu.set_mode("slow", delay=0.05)
    first_delta_at = None
    body = {"model": "m", "messages": USER, "stream": True}
    with httpx.stream("POST", emu.url + "/v1/chat/completions", headers={"Authorization": "Bearer k"}, json=body) as r:
        for line in r.iter_lines():
            if first_delta_at is None and '"content":"Hello' in line:
                first_delta_at = time.time()
    state = httpx.get(emu.url + "/_emulator/state").json()
    assert state["streams_started"] == state["streams_finished"] == 1
    assert first_delta_at is not None and first_delta_at < state["last_chunk_sent_at"]
