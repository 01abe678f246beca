"""Anthropic Messages as Claude Code (and any up-to-date client) sends it: `system` entries inside
`messages`, `?beta=true`, every top-level field, tool and content block type of the Messages API,
and `cache_control` everywhere, are passed to Claude as sent; the relay checks only what it reads
(model, the messages' shape, max_tokens, stream) and says precisely what is wrong when it refuses."""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from tests.e2e.conftest import POOL_KEYS

CLAUDE, GPT = "claude-sonnet-4-6", "gpt-4o"
EPHEMERAL = {"type": "ephemeral"}
BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,mcp-client-2025-11-20"
PDF = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK"
READ_TOOL = {"name": "Read", "description": "Read a file", "cache_control": EPHEMERAL,
             "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"},
                                                             "limit": {"type": "integer"}},
                              "required": ["file_path"]}}


def headers(key: str, beta: str | None = BETAS) -> dict[str, str]:
    sent = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {**sent, "anthropic-beta": beta} if beta else sent


def every_field_body(model: str) -> dict:
    """One request using every top-level field, tool kind and content block the Messages API
    defines (and one it does not define yet), cache_control on every kind of block."""
    return {
        "model": model, "max_tokens": 1024, "stream": False, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
        "stop_sequences": ["\n\nHuman:"], "service_tier": "auto", "inference_geo": "us",
        "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "session_id": "s-1"})},
        "thinking": {"type": "enabled", "budget_tokens": 512},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens",
                                                                                        "value": 30000}},
                                         {"type": "clear_thinking_20251015", "keep": "all"}]},
        "container": {"id": "container_011", "skills": [{"type": "anthropic", "skill_id": "pdf", "version": "latest"}]},
        "mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "docs",
                         "authorization_token": "tok", "tool_configuration": {"enabled": True}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=test;"},
                   {"type": "text", "text": "You are a coding agent.", "cache_control": {**EPHEMERAL, "ttl": "1h"}}],
        "tools": [
            READ_TOOL,
            {"name": "Later", "description": "deferred", "defer_loading": True, "strict": True,
             "input_schema": {"type": "object", "properties": {}}, "input_examples": [{}]},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3, "allowed_domains": ["example.com"],
             "user_location": {"type": "approximate", "country": "FR"}},
            {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2, "citations": {"enabled": True}},
            {"type": "code_execution_20250825", "name": "code_execution"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "max_characters": 10000},
            {"type": "bash_20250124", "name": "bash"},
            {"type": "memory_20250818", "name": "memory"},
            {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
            {"type": "mcp_toolset", "mcp_server_name": "docs", "default_config": {"defer_loading": True}},
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nToday's date is 2026-12-04.\n</system-reminder>"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                 "title": "spec", "context": "the spec", "citations": {"enabled": True}, "cache_control": EPHEMERAL},
                {"type": "document", "source": {"type": "file", "file_id": "file_011"}},
                {"type": "search_result", "source": "https://example.com/r", "title": "Result",
                 "content": [{"type": "text", "text": "a fact"}], "citations": {"enabled": True}},
                {"type": "container_upload", "file_id": "file_012"},
                {"type": "text", "text": "Find the spec.", "cache_control": EPHEMERAL}]},
            {"role": "system", "content": "The user prefers short answers."},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Search first.", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "spec"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                    {"type": "web_search_result", "url": "https://example.com", "title": "Spec",
                     "encrypted_content": "ZW5j", "page_age": "1 day"}]},
                {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "lookup", "server_name": "docs", "input": {}},
                {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "is_error": False,
                 "content": [{"type": "text", "text": "found"}]},
                {"type": "text", "text": "Reading it.", "citations": [
                    {"type": "web_search_result_location", "url": "https://example.com", "title": "Spec",
                     "encrypted_index": "MA==", "cited_text": "spec"}]},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/spec.md"},
                 "cache_control": EPHEMERAL}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False, "cache_control": EPHEMERAL,
                 "content": [{"type": "text", "text": "# Spec"},
                             {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                             {"type": "search_result", "source": "s", "title": "t",
                              "content": [{"type": "text", "text": "u"}]}]}]},
            {"role": "system", "content": [{"type": "text", "text": "Files changed on disk.", "cache_control": EPHEMERAL}]},
        ],
        "x_future_field": {"anything": ["a future beta may add"]},
    }


def sent(emulator, path: str) -> list:
    return [r for r in emulator.requests if r.path == path]


def test_every_field_and_block_reaches_claude_as_sent(relay, emulator, account) -> None:
    body = every_field_body(CLAUDE)
    answer = httpx.post(relay.url + "/v1/messages?beta=true", headers=headers(account.key), json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == CLAUDE and answer.json()["content"]
    (upstream,) = sent(emulator, "/v1/messages")
    assert upstream.json == body  # nothing dropped, renamed or reordered
    assert upstream.headers["anthropic-beta"] == BETAS and upstream.api_key in POOL_KEYS["anthropic"]


def test_every_field_and_block_is_translated_for_gpt(relay, emulator, account) -> None:
    """What has a Responses API counterpart is translated; what has none is left out by the
    adapter, never a 500 and never an Anthropic header sent to OpenAI."""
    answer = httpx.post(relay.url + "/v1/messages?beta=true", headers=headers(account.key),
                        json=every_field_body(GPT), timeout=30)
    assert answer.status_code == 200, answer.text
    (upstream,) = sent(emulator, "/v1/responses")
    roles = [item.get("role") for item in upstream.json["input"] if item.get("type") == "message"]
    assert roles.count("system") == 2 and "anthropic-beta" not in upstream.headers


def test_count_tokens_takes_claude_codes_body(relay, emulator, account) -> None:
    body = every_field_body(CLAUDE)
    counted = httpx.post(relay.url + "/v1/messages/count_tokens?beta=true", headers=headers(account.key),
                         json=body, timeout=30)
    assert counted.status_code == 200, counted.text
    assert counted.json()["input_tokens"] > 0
    (upstream,) = sent(emulator, "/v1/messages/count_tokens")
    assert upstream.json["messages"] == body["messages"] and upstream.json["system"] == body["system"]
    assert upstream.json["tools"] == body["tools"] and upstream.json["mcp_servers"] == body["mcp_servers"]
    assert upstream.json["output_config"] == body["output_config"]  # it changes what is counted
    assert "max_tokens" not in upstream.json and "stream" not in upstream.json
    assert upstream.headers["anthropic-beta"] == BETAS


@pytest.mark.parametrize("stream", [False, True])
def test_system_messages_keep_their_place_for_gpt(anthropic_client, emulator, stream) -> None:
    """Translated for GPT (Responses API), a `system` entry stays where it was in the conversation,
    as a system input item after the turn it followed: moved to the front, it would change the
    prompt's prefix (and defeat OpenAI's prompt cache) every time one arrives."""
    messages = [{"role": "user", "content": "first question"},
                {"role": "system", "content": "Mid-conversation note."},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"},
                {"role": "system", "content": [{"type": "text", "text": "Second note.", "cache_control": EPHEMERAL}]}]
    kwargs = dict(model=GPT, max_tokens=64, system="Be brief.", messages=messages,
                  extra_headers={"anthropic-beta": "mid-conversation-system-2026-04-07"})
    if stream:
        with anthropic_client.messages.stream(**kwargs) as live:
            reply = live.get_final_message()
    else:
        reply = anthropic_client.messages.create(**kwargs)
    assert reply.content[0].text.startswith("Hello from the emulator")
    (upstream,) = sent(emulator, "/v1/responses")
    items = [(item.get("role"), json.dumps(item.get("content"))) for item in upstream.json["input"]]
    roles = [role for role, _ in items]
    assert roles == ["developer", "user", "system", "assistant", "user", "system"]
    assert "Be brief." in items[0][1] and "Mid-conversation note." in items[2][1] and "Second note." in items[5][1]
    assert "anthropic-beta" not in upstream.headers


def test_claude_codes_fields_are_translated_for_gpt(relay, emulator, account) -> None:
    """thinking (adaptive) + output_config.effort, context_management and metadata, as Claude Code
    sends them, do not stop a GPT request."""
    body = {"model": GPT, "max_tokens": 256, "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "session_id": "s-1"})},
            "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": EPHEMERAL}],
            "tools": [READ_TOOL], "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Use the Read tool with file_path=/etc/hostname", "cache_control": EPHEMERAL}]}]}
    answer = httpx.post(relay.url + "/v1/messages?beta=true", headers=headers(account.key), json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    tool_use = next(b for b in answer.json()["content"] if b["type"] == "tool_use")
    assert tool_use["name"] == "Read" and tool_use["input"] == {"file_path": "/etc/hostname"}
    (upstream,) = sent(emulator, "/v1/responses")
    assert upstream.json["reasoning"]["effort"] == "low"


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_the_tool_the_prompt_names_is_called_with_its_arguments(anthropic_client, model) -> None:
    """The emulator's rule that the Claude Code tests rely on, through the relay on both paths."""
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
             READ_TOOL]
    reply = anthropic_client.messages.create(model=model, max_tokens=128, tools=tools, messages=[
        {"role": "user", "content": "Use the Read tool with file_path=/tmp/notes.txt limit=5"}])
    (call,) = [b for b in reply.content if b.type == "tool_use"]
    assert (call.name, call.input) == ("Read", {"file_path": "/tmp/notes.txt", "limit": 5})


VALID = {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
INVALID = [
    ({"model": None}, "'model' is required"),
    ({"model": 42}, "'model' must be a model name"),
    ({"messages": None}, "'messages' is required"),
    ({"messages": "hi"}, "'messages' must be a list of message objects, not a string"),
    ({"messages": {"role": "user"}}, "'messages' must be a list of message objects, not an object"),
    ({"messages": []}, "'messages' must contain at least one message"),
    ({"messages": ["hi"]}, "'messages.0' must be an object with 'role' and 'content', not a string"),
    ({"messages": [{"content": "hi"}]}, "'messages.0.role' is required"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]},
     "'messages.1.role' is invalid: expected 'user', 'assistant' or 'system', got 'tool'"),
    ({"messages": [{"role": "user"}]}, "'messages.0.content' is required"),
    ({"messages": [{"role": "user", "content": 7}]}, "'messages.0.content' must be a string or a list of content blocks"),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "'messages.0.content.0' must be a content block object"),
    ({"max_tokens": None}, "'max_tokens' is required"),
    ({"max_tokens": "64"}, "'max_tokens' must be an integer, not a string"),
    ({"max_tokens": 64.5}, "'max_tokens' must be an integer, not a number"),
    ({"max_tokens": True}, "'max_tokens' must be an integer, not a boolean"),
    ({"max_tokens": 0}, "'max_tokens' must be at least 1, got 0"),
    ({"stream": "yes"}, "'stream' must be true or false, not a string"),
    ({"system": 5}, "'system' must be a string or a list of text blocks, not a number"),
    ({"tools": {"name": "x"}}, "'tools' must be a list of tool definitions, not an object"),
]


@pytest.mark.parametrize("change,message", INVALID, ids=[m.split("'")[1] + "-" + str(i) for i, (_, m) in
                                                         enumerate(INVALID)])
def test_real_errors_are_400s_that_say_what_is_wrong(relay, emulator, account, change, message) -> None:
    body = {k: v for k, v in {**copy.deepcopy(VALID), **change}.items() if v is not None}
    answer = httpx.post(relay.url + "/v1/messages", headers=headers(account.key), json=body, timeout=30)
    assert answer.status_code == 400
    assert answer.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": answer.json()["error"]["message"]}}
    assert answer.json()["error"]["message"].startswith("Invalid request: " + message), answer.text
    assert not emulator.requests  # refused before anything reached a provider


def test_count_tokens_needs_no_max_tokens_but_checks_the_rest(relay, emulator, account) -> None:
    url = relay.url + "/v1/messages/count_tokens"
    ok = httpx.post(url, headers=headers(account.key), json={"model": CLAUDE, "messages": VALID["messages"]})
    assert ok.status_code == 200 and ok.json()["input_tokens"] > 0
    refused = httpx.post(url, headers=headers(account.key), json={"model": CLAUDE, "messages": "hi"})
    assert refused.status_code == 400 and "'messages' must be a list" in refused.json()["error"]["message"]
