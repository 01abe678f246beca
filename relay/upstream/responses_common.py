"""What both Responses API paths share: the call as parsed, usage in the Responses shape, the
response object the relay writes itself, and keeping an answer for `previous_response_id`."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from relay import responses_store
from relay.call import Call
from relay.errors import RelayError
from relay.usage import Usage, cache_writes

log = logging.getLogger("relay.responses")

# Request fields a response object echoes back, with OpenAI's defaults where the client sent none.
ECHOED_DEFAULTS: dict[str, Any] = {
    "instructions": None, "max_output_tokens": None, "parallel_tool_calls": True, "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
    "metadata": {}, "prompt_cache_key": None, "service_tier": "default",
}


@dataclass
class ResponsesCall(Call):
    """A Responses request, with what the parse step resolved: who asks (the store is per account),
    the whole conversation when it continues a stored one, and whether to keep the answer."""

    account_id: int = 0
    items: list[Any] = field(default_factory=list)  # the model's whole input, earlier turns included
    continued: bool = False  # previous_response_id was given: `items` replaces the client's input
    store: bool = True
    engine: Engine | None = None
    retention_days: int = 30


def new_response_id() -> str:
    return "resp_" + uuid.uuid4().hex


def from_responses(usage: Any) -> Usage:
    """A Responses API `usage`: input_tokens counts cache reads (and writes, where reported) too."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("input_tokens_details") or {}
    cached = _int(details.get("cached_tokens"))
    written, one_hour, twelve_hours = cache_writes(details.get("cache_write_tokens"),
                                                   details.get("cache_write_tokens_details"))
    return Usage(input_tokens=max(_int(usage.get("input_tokens")) - cached - written, 0), cached_input_tokens=cached,
                 cache_creation_tokens=written, cache_creation_1h_tokens=one_hour,
                 cache_creation_12h_tokens=twelve_hours, output_tokens=_int(usage.get("output_tokens")),
                 reasoning_tokens=_int((usage.get("output_tokens_details") or {}).get("reasoning_tokens")))


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and value > 0 else 0


def responses_usage(usage: Usage, cost_usd: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                 "cache_write_tokens": usage.cache_creation_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
    if cost_usd is not None:
        body["cost"] = cost_usd
    return body


def response_object(call: ResponsesCall, response_id: str, output: list[Any], usage: dict | None,
                    status: str = "completed", created: int | None = None) -> dict[str, Any]:
    """A response object as OpenAI writes it, for answers the relay translated."""
    echoed = {name: call.body.get(name, default) for name, default in ECHOED_DEFAULTS.items()}
    if echoed["reasoning"] is None:
        echoed["reasoning"] = ECHOED_DEFAULTS["reasoning"]
    if isinstance(call.body.get("user"), str):  # a string or absent, never null
        echoed["user"] = call.body["user"]
    created = created or int(time.time())
    echoed["tools"] = [_echoed_tool(tool) for tool in echoed["tools"] or []]
    response = {
        "id": response_id, "object": "response", "created_at": created, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None, "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": call.model, "output": output, **echoed,
    }
    if usage is not None:  # an object once there is one; absent (not null) before
        response["usage"] = usage
    return response


def _echoed_tool(tool: Any) -> Any:
    """Function tools echoed with `strict` as OpenAI does; false unless asked, since a Claude
    model is not held to the schema the way OpenAI's strict mode holds GPT."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"strict": False, "description": None, **tool}
    return tool


def as_client_sees(call: ResponsesCall, response: dict) -> dict:
    """A provider's response object as the client should see it: the public model name, and the
    previous_response_id it sent (the relay sent the provider the whole conversation instead)."""
    response["model"] = call.model
    if call.continued:
        response["previous_response_id"] = call.body.get("previous_response_id")
    return response


async def keep(call: ResponsesCall, response: dict) -> None:
    """Store a finished answer (when `store` is on), before the client learns its id is done."""
    if not call.store or call.engine is None or not isinstance(response.get("id"), str):
        return
    if response.get("status") not in ("completed", "incomplete"):
        return
    output = [item for item in response.get("output") or [] if isinstance(item, dict)]
    try:
        await responses_store.asave(call.engine, call.account_id, call.model, call.items, output, response,
                                    call.retention_days)
    except SQLAlchemyError as exc:
        # A RelayError, so dispatch neither retries the provider nor blames it.
        log.warning("storing response %s failed: %s", response["id"], type(exc).__name__)
        raise RelayError(503, "The relay could not store this response (store is on by default); retry, or "
                         "send `store: false` if you do not need previous_response_id.",
                         "response_store_unavailable") from None
