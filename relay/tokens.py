"""Token pre-counting with tiktoken, for admission (TPM) and the cost estimate behind a hold.

The counts are estimates for every provider (o200k_base is OpenAI's current encoding; Claude's
tokenizer differs by a few percent), which is what admission needs; billing uses the provider's
reported usage and falls back to these counts only where the provider reported none.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from typing import Any, Callable, Iterable, TypeVar

import anyio.to_thread

from relay.errors import bad_request

# tiktoken downloads its encodings unless TIKTOKEN_CACHE_DIR points at a copy; LiteLLM ships one.
_litellm = importlib.util.find_spec("litellm")
if _litellm is not None and _litellm.origin and "TIKTOKEN_CACHE_DIR" not in os.environ:
    os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(
        os.path.dirname(_litellm.origin), "litellm_core_utils", "tokenizers"
    )

import tiktoken  # noqa: E402

# OpenAI's chat format adds a few tokens per message and per reply.
PER_MESSAGE_TOKENS = 3
REPLY_PRIMER_TOKENS = 3
# An image in a prompt: OpenAI bills 85 tokens for a low-detail tile and ~765 for a typical
# high-detail 1024×1024 image; the estimate takes the larger so a hold is rarely short.
IMAGE_PART_TOKENS = 765


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("o200k_base")


# Bodies above this size are counted on a worker thread: tiktoken releases the GIL while it
# encodes, so a 200k-token prompt does not stall every other request on the event loop
# (scripts/bench_tokens.py measures it); below it, a thread hop costs more than the count.
OFF_LOOP_BYTES = 64 * 1024
T = TypeVar("T")


async def precount(count: Callable[[T], int], value: T, body_bytes: int) -> int:
    if body_bytes < OFF_LOOP_BYTES:
        return count(value)
    return await anyio.to_thread.run_sync(count, value)


def count_text(text: str) -> int:
    if not text:
        return 0
    # Ordinary encoding: a prompt that contains "<|endoftext|>" is text, not an error.
    return len(encoding().encode_ordinary(text))


def _count_content(content: Any) -> int:
    """Content as a string, or a list of typed parts (OpenAI or Anthropic)."""
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content)
    if isinstance(content, list):
        return sum(_count_part(part) for part in content)
    return count_text(json.dumps(content, default=str))


def _count_part(part: Any) -> int:
    if isinstance(part, str):
        return count_text(part)
    if not isinstance(part, dict):
        return 0
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        return count_text(part.get("text") or "")
    if kind in ("image_url", "image", "input_image", "document"):
        return IMAGE_PART_TOKENS
    if kind == "tool_use":
        return count_text(json.dumps(part.get("input", {}))) + count_text(part.get("name") or "")
    if kind == "tool_result":
        return _count_content(part.get("content"))
    if kind in ("thinking", "redacted_thinking"):
        return count_text(part.get("thinking") or part.get("data") or "")
    return count_text(json.dumps(part, default=str))


def _count_tools(tools: Iterable[Any] | None) -> int:
    return count_text(json.dumps(list(tools), default=str)) if tools else 0


def count_chat_prompt(body: dict) -> int:
    """Prompt tokens of an OpenAI chat completions request."""
    total = REPLY_PRIMER_TOKENS
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += PER_MESSAGE_TOKENS + _count_content(message.get("content"))
        for call in message.get("tool_calls") or []:
            total += count_text(json.dumps(call, default=str))
    return total + _count_tools(body.get("tools"))


def count_messages_prompt(body: dict) -> int:
    """Prompt tokens of an Anthropic Messages request (system, messages, tools)."""
    total = _count_content(body.get("system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += PER_MESSAGE_TOKENS + _count_content(message.get("content"))
    return total + _count_tools(body.get("tools"))


# OpenAI's limit on one embeddings input; refused here, where the tokens are counted anyway, so a
# long input is counted once (and off the event loop when the body is large).
MAX_EMBEDDING_INPUT_TOKENS = 8192


def count_embedding_input(value: Any) -> int:
    """`input` of an embeddings request: a string, strings, a token array, or token arrays; an
    input over MAX_EMBEDDING_INPUT_TOKENS is a 400."""
    if isinstance(value, list) and value and not all(isinstance(item, int) for item in value):
        return sum(_count_one_input(item, f"input[{i}]") for i, item in enumerate(value))
    return _count_one_input(value, "input")


def _count_one_input(value: Any, where: str) -> int:
    if isinstance(value, str):
        tokens = count_text(value)
    elif isinstance(value, list):
        tokens = len(value)
    else:
        return 0
    if tokens > MAX_EMBEDDING_INPUT_TOKENS:
        raise bad_request(f"'{where}' has {tokens} tokens; an embeddings input has at most "
                          f"{MAX_EMBEDDING_INPUT_TOKENS}. Split the text.", "input", "input_too_long")
    return tokens
