"""Deterministic token accounting and reply text shared by every protocol.

The rule is deliberately simple so tests can compute expected numbers by hand:
  text_tokens(s)      = ceil(len(s) / 4)            (0 for "")
  content_tokens(x)   = sum of text_tokens over every string leaf of x, skipping
                        structural keys (type, role, ids, signature, cache_control...);
                        every image part counts IMAGE_TOKENS and is not descended into.
  prompt_tokens       = BASE_TOKENS + sum(MESSAGE_TOKENS + content_tokens(msg)) over
                        messages (the system prompt / instructions count as one message)
                        + text_tokens(canonical JSON of the tools list)
  completion_tokens   = text_tokens(reply) (+ thinking/reasoning text when present)
"""

from __future__ import annotations

import json
import math
from typing import Any

BASE_TOKENS = 3
MESSAGE_TOKENS = 3
IMAGE_TOKENS = 85

# Keys whose string values are protocol plumbing, not prompt text.
SKIP_KEYS = frozenset(
    {"type", "role", "id", "tool_call_id", "tool_use_id", "call_id", "signature",
     "cache_control", "prompt_cache_breakpoint", "status", "media_type", "detail", "file_id"}
)
IMAGE_TYPES = frozenset({"image_url", "image", "input_image", "image_file", "document", "input_file"})


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_tokens(obj: Any) -> int:
    if isinstance(obj, str):
        return text_tokens(obj)
    if isinstance(obj, list):
        return sum(content_tokens(x) for x in obj)
    if isinstance(obj, dict):
        if obj.get("type") in IMAGE_TYPES:
            return IMAGE_TOKENS
        return sum(content_tokens(v) for k, v in obj.items() if k not in SKIP_KEYS)
    return 0


def tools_tokens(tools: Any) -> int:
    return text_tokens(canonical(tools)) if tools else 0


def prompt_tokens(messages: list[Any], system: Any = None, tools: Any = None) -> int:
    total = BASE_TOKENS + tools_tokens(tools)
    if system:
        total += MESSAGE_TOKENS + content_tokens(system)
    for message in messages:
        total += MESSAGE_TOKENS + content_tokens(message)
    return total


def plain_text(content: Any) -> str:
    """Concatenate the human-readable text of a content value (string or parts list)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and "content" in part:
                parts.append(plain_text(part["content"]))
        return "".join(parts)
    return ""


def reply_text(last_user_text: str) -> str:
    return f"Hello from the emulator. You said: {last_user_text[:40]}"


def tool_reply_text(tool_output: str) -> str:
    return f"The tool returned: {tool_output}"


def thinking_text(last_user_text: str) -> str:
    return f"Let me think about: {last_user_text[:40]}"


def split_chunks(text: str, minimum: int = 4) -> list[str]:
    """Split into word-ish pieces (at least `minimum`) whose concatenation is `text`."""
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    pieces = [p for p in pieces if p]
    while len(pieces) < minimum:
        longest = max(range(len(pieces)), key=lambda i: len(pieces[i])) if pieces else None
        if longest is None or len(pieces[longest]) < 2:
            break
        p = pieces[longest]
        pieces[longest:longest + 1] = [p[: len(p) // 2], p[len(p) // 2:]]
    return pieces


def example_arguments(schema: Any) -> dict[str, Any]:
    """Arguments for a forced tool call, built from the JSON schema (strings → "test")."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return {name: example_value(spec) for name, spec in props.items()}


def example_value(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return "test"
    if spec.get("enum"):
        return spec["enum"][0]
    kind = spec.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {
        "integer": 1, "number": 1.5, "boolean": True, "array": [],
        "object": example_arguments(spec), "null": None,
    }.get(kind, "test")
