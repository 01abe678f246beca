"""The same-protocol pass-through is faithful, on /v1 (pool) and /byok/v1 (the caller's own key),
against the emulator, which records both what it received and what it answered:

- the provider receives the client's body unchanged but for the fields the relay rewrites (the
  catalog's `upstream` model id; `stream_options.include_usage: true` on OpenAI streams);
- the client receives the provider's answer unchanged but for the relay's additions (the public
  model name, `usage.cost` on OpenAI), fields the relay knows nothing about included;
- stream events arrive in order with their data unchanged but for the same additions;
- the provider headers clients read are passed on under their own names: OpenAI's `x-request-id`
  and `openai-processing-ms`, Anthropic's `request-id`. On OpenAI routes the relay's own id (the
  key of its usage record) moves to `x-relay-request-id`.

The relay under test here serves a catalog whose public names differ from their upstream ids (as a
dated snapshot would), so every model rewrite — request and answer, every stream event — is
exercised for real; with the bundled catalog, where they are equal, a missing rewrite would pass."""

from __future__ import annotations

import copy
import json
from typing import Iterator

import httpx
import pytest

from tests.e2e.byok_support import add_credential, fresh_key
from tests.e2e.conftest import POOL_KEYS
from tests.e2e.relay_server import ROOT, ThreadRelay
from tests.sse import read_sse

GPT, CLAUDE = "gpt-4o-mini", "claude-sonnet-4-6"
UPSTREAM = {GPT: "gpt-4o-mini-2024-07-18", CLAUDE: "claude-sonnet-4-6-20260101"}

# Unusual but valid request fields, passed on as the client wrote them: a seed above 2**53 (a float
# round trip changes it), text a careless re-encoding would change, a vendor field.
OPENAI_FIELDS = {"logit_bias": {"1234": -5, "50256": 100}, "seed": 2**53 + 1, "user": "user-42",
                 "metadata": {"team": "a"}, "logprobs": True, "top_logprobs": 2, "service_tier": "auto",
                 "parallel_tool_calls": False, "response_format": {"type": "text"}, "x_custom_field": {"a": 1},
                 "temperature": 0.25, "top_p": 0.9, "frequency_penalty": 0.1, "presence_penalty": -0.1,
                 "stop": ["\n\nEND"], "store": False, "prompt_cache_key": "fidelity-1",
                 "tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
                     "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
                     "additionalProperties": False}}}],
                 "tool_choice": "none"}
OPENAI_MESSAGES = [{"role": "developer", "content": "Be brief."},
                   {"role": "user", "name": "ana", "content": [{"type": "text", "text": "fidélité 🚀 \u2028 \"q\" \\"}]}]
ANTHROPIC_FIELDS = {"metadata": {"user_id": "u-1"}, "top_k": 5, "stop_sequences": ["END"], "temperature": 0.5,
                    "x_custom_field": {"a": [1, 2]}, "service_tier": "auto",
                    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                    "tools": [{"name": "f",
                               "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
                    "tool_choice": {"type": "none"}}
ANTHROPIC_MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "fidélité 🚀 \u2028 \"q\" \\"}]}]

# Fields a provider may add that the relay does not know (the emulator adds them on request):
# `x_emulator_extra` at the top level of the answer / every event, `x_emulator_patch` nested.
VENDOR = {"x_provider_extra": {"nested": [1, "two", None, 2.5], "flag": False}}
LOGPROBS = {"content": [{"token": "Hello", "logprob": -0.0123, "bytes": [72, 101, 108, 108, 111],
                         "top_logprobs": [{"token": "Hello", "logprob": -0.0123, "bytes": [72, 101, 108, 108, 111]},
                                          {"token": "Hi", "logprob": -4.5, "bytes": [72, 105]}]}],
            "refusal": None}
OPENAI_PATCH = [
    [["choices", "*", "logprobs"], LOGPROBS],
    [["choices", "*", "x_choice_extra"], {"k": 1}],
    [["choices", "*", "message", "x_message_extra"], ["m", 2]],
    [["choices", "*", "delta", "x_delta_extra"], {"d": None}],
    [["usage", "prompt_tokens_details", "x_detail_extra"], 3],
]
ANTHROPIC_PATCH = [
    [["content", "*", "x_block_extra"], {"b": 1}],
    [["usage", "x_usage_extra"], {"u": [1]}],
    [["message", "x_message_extra"], {"m": True}],
    [["message", "usage", "x_usage_extra"], {"u": [1]}],
    [["content_block", "x_block_extra"], {"b": 1}],
    [["delta", "x_delta_extra"], "d"],
]


@pytest.fixture(scope="module")
def aliased(relay, settings, tmp_path_factory) -> Iterator[ThreadRelay]:  # type: ignore[no-untyped-def]
    """A second relay on the same database (pool keys and accounts included), whose catalog sends
    gpt-4o-mini and claude-sonnet-4-6 upstream under other ids."""
    text = (ROOT / "pricing" / "catalog.toml").read_text()
    for public, upstream in UPSTREAM.items():
        line = f'upstream = "{public}"'
        assert text.count(line) == 1
        text = text.replace(line, f'upstream = "{upstream}"')
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    catalog.write_text(text)
    server = ThreadRelay(settings.model_copy(update={"catalog": str(catalog)})).start()
    assert server.state.catalog.get(GPT).upstream == UPSTREAM[GPT]
    yield server
    server.stop()


@pytest.fixture(params=["/v1", "/byok/v1"])
def prefix(request, aliased, account) -> str:  # type: ignore[no-untyped-def]
    return request.param


@pytest.fixture
def provider_keys(prefix, aliased, account) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """The keys the provider may see for this prefix: the pool's, or the caller's own."""
    if prefix == "/v1":
        return {provider: set(keys) for provider, keys in POOL_KEYS.items()}
    keys = {provider: fresh_key(provider) for provider in ("openai", "anthropic")}
    for provider, key in keys.items():
        add_credential(aliased, account, provider, key)
    return {provider: {key} for provider, key in keys.items()}


def headers_for(protocol: str, key: str) -> dict[str, str]:
    if protocol == "openai":
        return {"Authorization": f"Bearer {key}"}
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def sent(emulator, path: str):  # type: ignore[no-untyped-def]
    found = [r for r in emulator.requests if r.path == path]
    assert len(found) == 1, f"expected one upstream call to {path}, got {len(found)}"
    return found[0]


def call(url: str, body: dict, headers: dict) -> tuple[httpx.Response, list[tuple[str | None, str]] | dict]:
    """POST; a stream's events or a JSON body, read whole."""
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response, read_sse(response)
        response.read()
        assert response.status_code == 200, response.text
        return response, response.json()


def usage_record_ids(relay, key: str) -> set[str]:  # type: ignore[no-untyped-def]
    response = httpx.get(relay.url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return {record["id"] for record in response.json()["data"]}


# -- what the provider receives --------------------------------------------------------------------

@pytest.mark.parametrize("stream_options", [
    None,  # not a stream
    "absent",
    {"include_usage": False, "include_obfuscation": False},  # the relay flips one field, keeps the other
    {"include_usage": True},
], ids=["non_stream", "stream", "stream_usage_false", "stream_usage_true"])
def test_openai_body_reaches_the_provider_as_sent(aliased, account, emulator, prefix, provider_keys,
                                                  stream_options) -> None:
    body = {"model": GPT, "messages": OPENAI_MESSAGES, "max_completion_tokens": 32, **OPENAI_FIELDS}
    if stream_options is not None:
        body["stream"] = True
        if stream_options != "absent":
            body["stream_options"] = stream_options
    call(aliased.url + prefix + "/chat/completions", body, headers_for("openai", account.key))
    request = sent(emulator, "/v1/chat/completions")
    expected = copy.deepcopy({**body, "model": UPSTREAM[GPT]})
    if stream_options is not None:  # billing needs usage: the one field the relay asks for on the client's behalf
        expected["stream_options"] = {**(stream_options if isinstance(stream_options, dict) else {}),
                                      "include_usage": True}
    assert request.json == expected
    assert request.api_key in provider_keys["openai"]
    assert not any(account.key in value for value in request.headers.values())


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_anthropic_body_and_headers_reach_the_provider_as_sent(aliased, account, emulator, prefix, provider_keys,
                                                               stream) -> None:
    body = {"model": CLAUDE, "max_tokens": 32, "messages": ANTHROPIC_MESSAGES, **ANTHROPIC_FIELDS,
            **({"stream": True} if stream else {})}
    extra_headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"}
    call(aliased.url + prefix + "/messages", body, {**headers_for("anthropic", account.key), **extra_headers})
    request = sent(emulator, "/v1/messages")
    assert request.json == {**body, "model": UPSTREAM[CLAUDE]}
    assert {k: request.headers.get(k) for k in extra_headers} == extra_headers
    assert request.api_key in provider_keys["anthropic"]
    assert not any(account.key in value for value in request.headers.values())


# -- what the client receives: JSON answers --------------------------------------------------------

def test_openai_answer_arrives_unchanged_but_for_the_relays_additions(aliased, account, emulator, prefix,
                                                                      provider_keys) -> None:
    body = {"model": GPT, "messages": OPENAI_MESSAGES, "logprobs": True, "top_logprobs": 2,
            "x_emulator_extra": {**VENDOR, "service_tier": "priority"}, "x_emulator_patch": OPENAI_PATCH}
    response, got = call(aliased.url + prefix + "/chat/completions", body, headers_for("openai", account.key))
    provider = sent(emulator, "/v1/chat/completions").response["body"]
    assert provider["model"] == UPSTREAM[GPT] and provider["choices"][0]["logprobs"] == LOGPROBS  # the knobs worked
    cost = got["usage"].pop("cost")
    assert isinstance(cost, float) and (cost > 0 or prefix == "/byok/v1")  # BYOK pays a fee, maybe none
    assert got == {**provider, "model": GPT}


def test_anthropic_answer_arrives_unchanged_but_for_the_model(aliased, account, emulator, prefix,
                                                              provider_keys) -> None:
    body = {"model": CLAUDE, "max_tokens": 32, "messages": ANTHROPIC_MESSAGES,
            "x_emulator_extra": VENDOR, "x_emulator_patch": ANTHROPIC_PATCH}
    response, got = call(aliased.url + prefix + "/messages", body, headers_for("anthropic", account.key))
    provider = sent(emulator, "/v1/messages").response["body"]
    assert provider["model"] == UPSTREAM[CLAUDE] and provider["content"][0]["x_block_extra"] == {"b": 1}
    assert got == {**provider, "model": CLAUDE}


# -- what the client receives: streams -------------------------------------------------------------

@pytest.mark.parametrize("include_usage", [False, True], ids=["no_usage", "include_usage"])
def test_openai_stream_events_arrive_in_order_unchanged(aliased, account, emulator, prefix, provider_keys,
                                                        include_usage) -> None:
    body = {"model": GPT, "messages": OPENAI_MESSAGES, "stream": True, "logprobs": True,
            "stream_options": {"include_usage": include_usage},
            "x_emulator_extra": VENDOR, "x_emulator_patch": OPENAI_PATCH}
    response, got = call(aliased.url + prefix + "/chat/completions", body, headers_for("openai", account.key))
    assert response.status_code == 200
    events = sent(emulator, "/v1/chat/completions").response["events"]
    assert [name for name, _ in got] == [None] * len(got)  # chat streams name no events
    provider = [data for _, data in events]
    assert provider[-1] == "[DONE]" and [data for _, data in got][-1] == "[DONE]"
    *chunks, usage_chunk = provider[:-1]  # the relay asked for usage whatever the client said
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    assert chunks[1]["choices"][0]["logprobs"] == LOGPROBS and chunks[1]["x_provider_extra"]  # the knobs worked
    expected = [{**chunk, "model": GPT} for chunk in chunks]
    received = [json.loads(data) for _, data in got[:-1]]
    if include_usage:  # the provider's usage chunk, last, with the cost added
        last = received.pop()
        assert isinstance(last["usage"].pop("cost"), float)
        assert last == {**usage_chunk, "model": GPT}
    else:
        # The provider sent `"usage": null` in every chunk because the relay asked for usage; a relay
        # may pass that on or drop it (what OpenAI sends a client that did not ask): both are faithful.
        def plain(chunk: dict) -> dict:
            return {k: v for k, v in chunk.items() if not (k == "usage" and v is None)}
        expected, received = [plain(c) for c in expected], [plain(c) for c in received]
    assert len(received) == len(expected)
    for index, (mine, theirs) in enumerate(zip(received, expected)):
        assert mine == theirs, f"chunk {index} differs"


def test_anthropic_stream_events_arrive_in_order_unchanged(aliased, account, emulator, prefix,
                                                           provider_keys) -> None:
    body = {"model": CLAUDE, "max_tokens": 64, "stream": True, "messages": ANTHROPIC_MESSAGES,
            "x_emulator_extra": VENDOR, "x_emulator_patch": ANTHROPIC_PATCH}
    response, got = call(aliased.url + prefix + "/messages", body, headers_for("anthropic", account.key))
    assert response.status_code == 200
    events = [tuple(event) for event in sent(emulator, "/v1/messages").response["events"]]
    assert events[0][1]["message"]["x_message_extra"] == {"m": True}  # the knobs worked
    expected = copy.deepcopy(events)
    assert expected[0][0] == "message_start" and expected[0][1]["message"]["model"] == UPSTREAM[CLAUDE]
    expected[0][1]["message"]["model"] = CLAUDE
    received = [(name, json.loads(data)) for name, data in got]
    assert [name for name, _ in received] == [name for name, _ in expected]
    for index, (mine, theirs) in enumerate(zip(received, expected)):
        assert mine == theirs, f"event {index} ({theirs[0]}) differs"


# -- provider headers --------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_openai_request_id_and_processing_ms_are_passed_on(aliased, account, emulator, prefix, provider_keys,
                                                           stream) -> None:
    """`x-request-id` stays the relay's own id, the key of its usage record and of its logs (what
    the relay's users quote, and what the contract's usage API returns); OpenAI's own id travels
    as `x-upstream-request-id`, and `openai-processing-ms` under its name."""
    body = {"model": GPT, "messages": OPENAI_MESSAGES, **({"stream": True} if stream else {})}
    response, _ = call(aliased.url + prefix + "/chat/completions", body, headers_for("openai", account.key))
    provider = sent(emulator, "/v1/chat/completions").response["headers"]
    assert response.headers.get("x-upstream-request-id") == provider["x-request-id"]
    assert response.headers.get("openai-processing-ms") == provider["openai-processing-ms"]
    own = response.headers.get("x-request-id")
    assert own and own != provider["x-request-id"], f"x-request-id: {own!r}"
    assert own in usage_record_ids(aliased, account.key), "x-request-id names the usage record"


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_anthropic_request_id_is_passed_on(aliased, account, emulator, prefix, provider_keys, stream) -> None:
    """The Anthropic SDK reads `request-id` (`_request_id`): it is the provider's."""
    body = {"model": CLAUDE, "max_tokens": 32, "messages": ANTHROPIC_MESSAGES, **({"stream": True} if stream else {})}
    response, _ = call(aliased.url + prefix + "/messages", body, headers_for("anthropic", account.key))
    provider = sent(emulator, "/v1/messages").response["headers"]
    assert response.headers.get("request-id") == provider["request-id"], "Anthropic's request-id, passed on"


@pytest.mark.parametrize("model", [GPT, "no-such-model"], ids=["translated", "refused"])
def test_anthropic_protocol_answers_carry_the_relays_request_id(aliased, account, prefix, provider_keys,
                                                                 model) -> None:
    """Where no Claude answer is passed on (a GPT model behind /v1/messages, or the relay's own
    error), `request-id` is the relay's id, the same as `x-request-id`: `_request_id` is never None."""
    body = {"model": model, "max_tokens": 32, "messages": ANTHROPIC_MESSAGES}
    response = httpx.post(aliased.url + prefix + "/messages", json=body, headers=headers_for("anthropic", account.key),
                          timeout=30)
    assert response.status_code == (200 if model == GPT else 404), response.text
    assert response.headers.get("request-id") == response.headers["x-request-id"]
