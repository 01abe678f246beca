"""Limits on input that hold for every JSON body, whatever the route: the checks that keep a
hostile or broken client from making the relay do unbounded work (README: "Limits on input").

Each is a 4xx the caller can act on; none of them is ever reached by an ordinary SDK request.
"""

from __future__ import annotations

from typing import Any

from relay.errors import RelayError, bad_request

# JSON nesting: real requests stay under ~10 levels (tool schemas are the deepest). The token
# counter and the LiteLLM translators recurse, so an unbounded depth would be a RecursionError.
MAX_JSON_DEPTH = 64
# Anthropic's documented limit on messages in one request; the relay uses it for OpenAI's too.
MAX_MESSAGES = 100_000
# Output token fields are 32-bit integers at both providers; a larger one is a mistake (and 2**63
# made translated requests stall upstream until the timeout instead of a 400).
OUTPUT_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
MAX_OUTPUT_TOKENS = 2**31 - 1
MAX_MODEL_CHARS = 256  # catalog names are ~30 characters; the name is echoed in 404s
# The largest id a table can hold: ids are INTEGER primary keys, 32-bit on PostgreSQL (larger
# ones cannot exist, and binding one is a driver error there, a 64-bit overflow on SQLite).
MAX_ID = 2**31 - 1


def unsupported_media_type(content_type: str) -> RelayError:
    return RelayError(415, f"Unsupported Content-Type '{content_type[:100]}': this endpoint takes a JSON body; "
                      "send 'Content-Type: application/json'.", "unsupported_content_type")


def check_json_content_type(content_type: str | None) -> None:
    """A missing Content-Type is read as JSON (curl scripts, old SDKs); a different one is refused
    rather than guessed at (a form post parsed as JSON gives a confusing 400)."""
    if not content_type:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise unsupported_media_type(content_type)


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit` (iterative: a deep value cannot overflow the
    stack of the check itself)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def check_body_limits(body: dict, raw: bytes) -> None:
    """Depth, message count and model name length of a parsed JSON object body."""
    # Depth is at most the number of opening brackets: counted in C, this skips the walk for
    # almost every request.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and depth_exceeds(body, MAX_JSON_DEPTH):
        raise bad_request(f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels; flatten it.",
                          code="json_too_deep")
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
        raise bad_request(f"Too many messages: {len(messages)}; at most {MAX_MESSAGES} per request.",
                          "messages", "too_many_messages")
    for name in OUTPUT_TOKEN_FIELDS:
        value = body.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_OUTPUT_TOKENS:
            raise bad_request(f"'{name}' is at most {MAX_OUTPUT_TOKENS}; the model's own output limit is lower "
                              "(GET /v1/models shows it).", name, "invalid_request")
    previous = body.get("previous_response_id")  # looked up in the database (no NUL in PostgreSQL text)
    if isinstance(previous, str) and "\x00" in previous:
        raise bad_request("'previous_response_id' contains a NUL character.", "previous_response_id")
    model = body.get("model")
    if isinstance(model, str) and len(model) > MAX_MODEL_CHARS:
        raise bad_request(f"'model' is too long ({len(model)} characters); model names have at most "
                          f"{MAX_MODEL_CHARS}. GET /v1/models lists them.", "model", "invalid_model")


def parse_id(raw: object, what: str = "id") -> int:
    """An id from a path, query or body: a larger one than a table holds is refused here rather
    than overflowing the driver (and 4,300+ digits would fail int() itself)."""
    text = str(raw)
    if isinstance(raw, bool) or not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_ID:
        raise bad_request(f"'{what}' must be a whole number from 0 to {MAX_ID}, got {text[:40]!r}.", what, "invalid_id")
    return int(text)


def check_params(path_params: dict, query_params: Any) -> None:
    """Path and query values that reach a database query: PostgreSQL text cannot hold NUL, so one
    is refused here (a 400) instead of failing in the driver (a 500)."""
    for name, value in [*path_params.items(), *query_params.multi_items()]:
        if isinstance(value, str) and "\x00" in value:
            raise bad_request(f"'{name}' contains a NUL character.", name, "invalid_parameter")
