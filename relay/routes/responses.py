"""The Responses API: POST /responses is one more pipeline operation (parse_responses); the stored
answers behind `previous_response_id` are read and deleted here (GET/DELETE /responses/{id},
GET /responses/{id}/input_items). Mounted under /v1 and /byok/v1 alike: the store is the account's,
whichever credentials served the answer."""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay import responses_store
from relay.auth import Caller
from relay.errors import bad_request
from relay.pipeline import api_key_of
from relay.routes.authenticated import authenticated
from relay.schemas.body import read_json_sized, validate
from relay.schemas.openai import ResponsesRequest
from relay.settings import Settings
from relay.state import RelayState
from relay.tokens import IMAGE_PART_TOKENS, PER_MESSAGE_TOKENS, REPLY_PRIMER_TOKENS, count_text, precount
from relay.upstream.responses_claude import claude_tool_problem
from relay.upstream.responses_common import ResponsesCall


def input_items(value: Any) -> list[Any]:
    """`input` as items: a string is one user message."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return list(value or [])


def count_responses_prompt(request: dict) -> int:
    """Prompt tokens of a Responses request: instructions, every input item, the tools."""
    total = REPLY_PRIMER_TOKENS + count_text(request.get("instructions") or "")
    for item in request.get("input") or []:
        total += PER_MESSAGE_TOKENS + _count_item(item)
    tools = request.get("tools")
    return total + (count_text(json.dumps(tools, default=str)) if tools else 0)


def _count_item(item: Any) -> int:
    if not isinstance(item, dict):
        return 0
    content = item.get("content")
    if isinstance(content, str):
        return count_text(content)
    if isinstance(content, list):
        return sum(IMAGE_PART_TOKENS if isinstance(p, dict) and p.get("type") in ("input_image", "input_file")
                   else count_text(str(p.get("text") or "") if isinstance(p, dict) else str(p)) for p in content)
    if item.get("type") == "reasoning":
        return sum(count_text(str(s.get("text") or "")) for s in item.get("summary") or [] if isinstance(s, dict))
    return count_text(json.dumps({k: v for k, v in item.items() if k != "encrypted_content"}, default=str))


async def parse_responses(request: Request, settings: Settings) -> ResponsesCall:
    body, size = await read_json_sized(request, settings.max_body_bytes)
    spec = validate(ResponsesRequest, body)
    state: RelayState = request.app.state.relay
    # The pipeline authenticated this key a moment ago: a cache hit, for the account the store is keyed by.
    caller = await state.auth.authenticate(api_key_of(request, "openai"))
    new_items = input_items(body.get("input"))
    if not new_items and not spec.previous_response_id:
        raise bad_request("Invalid request: 'input' is required (a string or a list of items).", "input")
    previous = None
    if spec.previous_response_id:
        previous = await responses_store.aload(state.engine, caller.account_id, spec.previous_response_id,
                                               "previous_response_id")
    items = responses_store.conversation(previous, new_items)
    model = state.catalog.get(spec.model)
    if model is not None and model.provider == "anthropic" and (problem := claude_tool_problem(spec.tools)):
        raise problem
    counted = {"instructions": spec.instructions, "input": items, "tools": spec.tools}
    return ResponsesCall(
        operation="responses", protocol="openai", model=spec.model, body=body, stream=bool(spec.stream),
        prompt_tokens=await precount(count_responses_prompt, counted, size),
        max_output_tokens=spec.max_output_tokens, account_id=caller.account_id, items=items,
        continued=previous is not None, store=spec.store is not False, engine=state.engine,
        retention_days=settings.responses_retention_days,
    )


# ------------------------------------------------------------------------------ stored responses
async def get_response(request: Request, state: RelayState, caller: Caller) -> Response:
    row = await responses_store.aload(state.engine, caller.account_id, request.path_params["response_id"])
    return JSONResponse(row.response)


async def delete_response(request: Request, state: RelayState, caller: Caller) -> Response:
    response_id = request.path_params["response_id"]
    removed = await anyio.to_thread.run_sync(responses_store.remove, state.engine, caller.account_id, response_id)
    if not removed:
        raise responses_store.not_found(response_id)
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


async def list_input_items(request: Request, state: RelayState, caller: Caller) -> Response:
    """OpenAI's list shape, newest first unless `order=asc`; `limit` (1–100) and `after` page it."""
    response_id = request.path_params["response_id"]
    row = await responses_store.aload(state.engine, caller.account_id, response_id)
    items = [listed_item(item, response_id, index) for index, item in enumerate(row.input_items)]
    if request.query_params.get("order", "desc") != "asc":
        items.reverse()
    after = request.query_params.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = _limit(request.query_params.get("limit"))
    page = items[:limit]
    return JSONResponse({"object": "list", "data": page, "has_more": len(items) > limit,
                         "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise bad_request("Invalid 'limit': an integer from 1 to 100.", "limit")
    return int(raw)


def listed_item(item: Any, response_id: str, index: int) -> dict:
    """An input item as OpenAI lists it: typed, with an id, message text as content parts."""
    item = dict(item) if isinstance(item, dict) else {"type": "message", "role": "user", "content": str(item)}
    item.setdefault("type", "message")
    if item["type"] == "message":
        if isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        item.setdefault("status", "completed")
    prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
    item.setdefault("id", f"{prefix.get(item['type'], 'item')}_{response_id.removeprefix('resp_')}_{index}")
    return item


def routes() -> list[Route]:
    return [
        Route("/responses/{response_id}", authenticated(get_response), methods=["GET"]),
        Route("/responses/{response_id}", authenticated(delete_response), methods=["DELETE"]),
        Route("/responses/{response_id}/input_items", authenticated(list_input_items), methods=["GET"]),
    ]
