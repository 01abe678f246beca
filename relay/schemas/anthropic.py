"""Anthropic Messages request checks: only what the relay itself reads.

The relay needs the model (to route and price), the messages' shape (to pre-count tokens), and
`max_tokens` and `stream` (to hold and to frame the answer). Everything else — thinking,
context_management, output_config, container, mcp_servers, service_tier, metadata, every content
block type, cache_control anywhere, and fields of betas not yet written — is Anthropic's to judge
and goes through untouched, so a client on a new beta (Claude Code sends many) is never refused by
a relay that merely has not heard of it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.errors import RelayError, bad_request

# "system" entries inside `messages`: Claude Code's `mid-conversation-system-2026-04-07` beta.
ROLES = ("user", "assistant", "system")
_ROLE_LIST = "'user', 'assistant' or 'system'"


@dataclass(frozen=True)
class MessagesFields:
    """The fields of a Messages (or count_tokens) request the relay reads."""

    model: str
    stream: bool
    max_tokens: int | None


def _invalid(field: str, problem: str) -> RelayError:
    return bad_request(f"Invalid request: '{field}' {problem}.", param=field)


def _kind(value: Any) -> str:
    """A JSON type name for error messages ("a string", "an object", …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def check_message(index: int, message: Any) -> None:
    where = f"messages.{index}"
    if not isinstance(message, dict):
        raise _invalid(where, f"must be an object with 'role' and 'content', not {_kind(message)}")
    role = message.get("role")
    if role is None:
        raise _invalid(f"{where}.role", "is required")
    if role not in ROLES:
        raise _invalid(f"{where}.role", f"is invalid: expected {_ROLE_LIST}, got {role!r}")
    if "content" not in message:
        raise _invalid(f"{where}.content", "is required")
    content = message["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", f"must be a string or a list of content blocks, not {_kind(content)}")
    for position, block in enumerate(content):
        if not isinstance(block, dict):
            raise _invalid(f"{where}.content.{position}",
                           f"must be a content block object (with a 'type'), not {_kind(block)}")


def check_messages(body: dict) -> None:
    if "messages" not in body:
        raise _invalid("messages", "is required")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid("messages", f"must be a list of message objects, not {_kind(messages)}")
    if not messages:
        raise _invalid("messages", "must contain at least one message")
    for index, message in enumerate(messages):
        check_message(index, message)


def check_model(body: dict) -> str:
    model = body.get("model")
    if model is None:
        raise _invalid("model", "is required")
    if not isinstance(model, str) or not model:
        raise _invalid("model", f"must be a model name (GET /v1/models lists them), not {_kind(model)}")
    return model


def check_max_tokens(body: dict) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise _invalid("max_tokens", "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid("max_tokens", f"must be an integer, not {_kind(value)}")
    if value < 1:
        raise _invalid("max_tokens", f"must be at least 1, got {value}")
    return value


def check_stream(body: dict) -> bool:
    value = body.get("stream")
    if value is not None and not isinstance(value, bool):
        raise _invalid("stream", f"must be true or false, not {_kind(value)}")
    return bool(value)


def check_prompt_extras(body: dict) -> None:
    """`system` and `tools` are counted too: a shape the counter cannot walk is refused here."""
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise _invalid("system", f"must be a string or a list of text blocks, not {_kind(system)}")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid("tools", f"must be a list of tool definitions, not {_kind(tools)}")


def check_messages_request(body: dict, need_max_tokens: bool = True) -> MessagesFields:
    """POST /v1/messages (`need_max_tokens`) or /v1/messages/count_tokens (which takes none)."""
    model = check_model(body)
    check_messages(body)
    check_prompt_extras(body)
    max_tokens = check_max_tokens(body) if need_max_tokens else None
    stream = check_stream(body) if need_max_tokens else False
    return MessagesFields(model=model, stream=stream, max_tokens=max_tokens)
