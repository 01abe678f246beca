"""/v1/embeddings through the relay with the official SDK, only the base URL swapped."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from relay.usage import Usage
from tests.e2e.billing_support import balance, sell_cost, settled_balance
from tests.emulator.tokens import text_tokens

MODEL = "text-embedding-3-small"


def sent(emulator) -> list[dict]:
    return [r.json for r in emulator.requests if r.path == "/v1/embeddings"]


def test_float_encoding(openai_client, emulator) -> None:
    reply = openai_client.embeddings.create(model=MODEL, input=["hello", "relay"], encoding_format="float")
    assert reply.model == MODEL
    assert [d.index for d in reply.data] == [0, 1]
    assert all(len(d.embedding) == 1536 and isinstance(d.embedding[0], float) for d in reply.data)
    assert sent(emulator) == [{"model": MODEL, "input": ["hello", "relay"], "encoding_format": "float"}]


def test_base64_is_answered_as_base64_exactly(relay, account, openai_client, emulator) -> None:
    floats = openai_client.embeddings.create(model=MODEL, input="same text", encoding_format="float")
    # Raw HTTP: the client asked for base64, so it must receive the provider's base64 string.
    raw = httpx.post(relay.url + "/v1/embeddings", headers={"Authorization": f"Bearer {account.key}"},
                     json={"model": MODEL, "input": "same text", "encoding_format": "base64"}).json()
    encoded = raw["data"][0]["embedding"]
    assert isinstance(encoded, str)
    assert list(struct.unpack("<1536f", base64.b64decode(encoded))) == floats.data[0].embedding
    # The SDK asks for base64 by default and decodes it itself: it must get the same numbers.
    default = openai_client.embeddings.create(model=MODEL, input="same text")
    assert sent(emulator)[-1]["encoding_format"] == "base64"
    assert default.data[0].embedding == floats.data[0].embedding
    explicit = openai_client.embeddings.create(model=MODEL, input="same text", encoding_format="base64")
    assert explicit.data[0].embedding == encoded


def test_dimensions_honoured(openai_client, emulator) -> None:
    reply = openai_client.embeddings.create(model="text-embedding-3-large", input="short", dimensions=64,
                                            encoding_format="float")
    assert len(reply.data[0].embedding) == 64
    assert sent(emulator)[-1]["dimensions"] == 64


def test_token_array_inputs(openai_client, emulator) -> None:
    reply = openai_client.embeddings.create(model=MODEL, input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert len(reply.data) == 2
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 5
    assert sent(emulator)[-1]["input"] == [[1, 2, 3], [4, 5]]


def test_charge_equals_sell_price_times_reported_usage(relay, account, openai_client) -> None:
    before = balance(relay, account.id)
    inputs = ["the quick brown fox", "jumps over the lazy dog, twice"]
    reply = openai_client.embeddings.create(model=MODEL, input=inputs)
    reported = sum(text_tokens(text) for text in inputs)  # the emulator's own count
    assert reply.usage.prompt_tokens == reported
    expected = sell_cost(relay, MODEL, Usage(input_tokens=reported))
    assert expected > 0
    assert before - settled_balance(relay, account.id) == expected
    assert reply.usage.model_extra["cost"] == pytest.approx(expected / 1e9)


def test_chat_model_on_embeddings_is_400(openai_client, emulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.embeddings.create(model="gpt-4o-mini", input="hi")
    error = caught.value.body
    assert error["code"] == "wrong_model_mode" and error["param"] == "model"
    assert "'gpt-4o-mini' is a chat model" in error["message"] and "/v1/chat/completions" in error["message"]
    assert sent(emulator) == []


def test_embedding_model_on_chat_is_400(openai_client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "is an embedding model" in caught.value.body["message"]
    assert "/v1/embeddings" in caught.value.body["message"]


@pytest.mark.parametrize("body, field", [
    ({"model": MODEL, "input": []}, "input"),
    ({"model": MODEL}, "input"),
    ({"model": MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": MODEL, "input": "x", "dimensions": 0}, "dimensions"),
])
def test_bad_body_names_the_field(relay, account, emulator, body, field) -> None:
    response = httpx.post(relay.url + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {account.key}"})
    assert response.status_code == 400
    assert response.json()["error"]["param"].split(".")[0] == field
    assert sent(emulator) == []
