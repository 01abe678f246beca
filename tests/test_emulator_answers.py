"""The emulator's knobs for fidelity tests: unknown provider fields added to its answers on request
(`x_emulator_extra` at the top level, `x_emulator_patch` at nested paths), and the exact answer it
sent — status, headers, body or stream events — recorded beside the request."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.emulator import Emulator
from tests.emulator.app import patch_paths
from tests.sse import read_sse

USER = [{"role": "user", "content": "hello"}]
LOGPROBS = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}], "refusal": None}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(emu: Emulator) -> None:
    emu.reset()


def test_patch_paths_sets_nested_fields_where_the_parent_exists() -> None:
    answer = {"choices": [{"message": {"content": "a"}}, {"message": {"content": "b"}}], "usage": {"n": 1}}
    patched = patch_paths(answer, [[["choices", "*", "message", "x"], {"k": [1]}], [["choices", 1, "logprobs"], None],
                                   [["missing", "x"], 1], [["usage", "n", "deeper"], 2], [["top"], {"t": True}]])
    assert patched == {"choices": [{"message": {"content": "a", "x": {"k": [1]}}},
                                   {"message": {"content": "b", "x": {"k": [1]}}, "logprobs": None}],
                       "usage": {"n": 1}, "top": {"t": True}}
    assert answer == {"choices": [{"message": {"content": "a"}}, {"message": {"content": "b"}}], "usage": {"n": 1}}
    assert patch_paths(answer, None) == answer and patch_paths(answer, "junk") == answer


def test_openai_answer_carries_the_asked_fields_and_is_recorded(emu: Emulator) -> None:
    body = {"model": "gpt-4o", "messages": USER, "x_emulator_extra": {"x_provider_extra": {"a": 1}},
            "x_emulator_patch": [[["choices", "*", "logprobs"], LOGPROBS],
                                 [["choices", "*", "message", "x_message_extra"], [1, None]]]}
    response = httpx.post(emu.url + "/v1/chat/completions", headers={"Authorization": "Bearer k"}, json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["x_provider_extra"] == {"a": 1} and answer["choices"][0]["logprobs"] == LOGPROBS
    assert answer["choices"][0]["message"]["x_message_extra"] == [1, None]
    assert answer["choices"][0]["message"]["refusal"] is None and answer["choices"][0]["message"]["annotations"] == []
    (recorded,) = emu.requests
    assert recorded.response["status"] == 200 and recorded.response["body"] == answer
    assert recorded.response["headers"]["x-request-id"] == response.headers["x-request-id"]
    assert recorded.response["headers"]["openai-processing-ms"] == response.headers["openai-processing-ms"]


def test_stream_events_are_patched_where_they_fit_and_recorded(emu: Emulator) -> None:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": USER, "stream": True,
            "x_emulator_extra": {"x_top": 1}, "x_emulator_patch": [[["message", "x_message_extra"], {"m": 2}]]}
    with httpx.stream("POST", emu.url + "/v1/messages", headers={"x-api-key": "k"}, json=body) as response:
        sent = [(name, json.loads(data)) for name, data in read_sse(response)]
        request_id = response.headers["request-id"]
    assert all(data["x_top"] == 1 for _, data in sent)
    assert [name for name, data in sent if "x_message_extra" in data.get("message", {})] == ["message_start"]
    assert not any("message" in data for name, data in sent if name != "message_start")
    (recorded,) = emu.requests
    assert [tuple(event) for event in recorded.response["events"]] == sent
    assert recorded.response["headers"]["request-id"] == request_id
    over_http = httpx.get(emu.url + "/_emulator/requests").json()
    assert over_http[0]["response"]["events"][0][1] == sent[0][1]


def test_plain_answers_are_unchanged_without_the_knobs(emu: Emulator) -> None:
    response = httpx.post(emu.url + "/v1/chat/completions", headers={"Authorization": "Bearer k"},
                          json={"model": "gpt-4o", "messages": USER})
    answer = response.json()
    assert set(answer) == {"id", "object", "created", "model", "choices", "usage", "service_tier", "system_fingerprint"}
    assert set(answer["choices"][0]) == {"index", "message", "logprobs", "finish_reason"}
