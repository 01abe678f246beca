#!/usr/bin/env python3
"""The shared bench's fake upstream (../shared/bench/fake_upstream.py), plus the OpenAI Responses
API (`POST /v1/responses`, JSON and SSE), which the relay calls when it translates an Anthropic
Messages request for a GPT model. Same speed class: raw ASGI, canned orjson bodies.

Run: python scripts/bench_upstream.py --port 19000 [--delay-ms N --chunks N --chunk-delay-ms N]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(os.environ.get("BENCH_DIR", Path(__file__).resolve().parents[2] / "shared" / "bench"))
sys.path.insert(0, str(BENCH))
import fake_upstream as fake  # noqa: E402

_shared_app = fake.app
_responses: dict[tuple[str, str], Any] = {}


def _response(model: str, status: str, text: str) -> dict:
    usage = {"input_tokens": fake.PROMPT_TOKENS, "output_tokens": fake.COMPLETION_TOKENS,
             "total_tokens": fake.PROMPT_TOKENS + fake.COMPLETION_TOKENS,
             "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    output = [{"type": "message", "id": "msg_fake0001", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}] if text else []
    return {"id": "resp_fake0001", "object": "response", "created_at": 0, "status": status, "model": model,
            "output": output, "usage": usage if status == "completed" else None, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": []}


def _event(data: dict) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _stream(model: str, chunks: int) -> list[bytes]:
    item = {"type": "message", "id": "msg_fake0001", "status": "in_progress", "role": "assistant", "content": []}
    events = [{"type": "response.created", "response": _response(model, "in_progress", "")},
              {"type": "response.output_item.added", "output_index": 0, "item": item}]
    events += [{"type": "response.output_text.delta", "item_id": "msg_fake0001", "output_index": 0,
                "content_index": 0, "delta": fake.WORD} for _ in range(chunks)]
    done = _response(model, "completed", fake.WORD * chunks)
    events += [{"type": "response.output_item.done", "output_index": 0, "item": done["output"][0]},
               {"type": "response.completed", "response": done}]
    return [_event({**event, "sequence_number": number}) for number, event in enumerate(events)]


def canned(model: str, stream: bool) -> Any:
    key = (model, "stream" if stream else "json")
    if key not in _responses:
        _responses[key] = (_stream(model, fake.CFG["chunks"]) if stream
                           else orjson.dumps(_response(model, "completed", "Hello from the fake upstream.")))
    return _responses[key]


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http" or scope["path"] not in ("/v1/responses", "/responses"):
        await _shared_app(scope, receive, send)
        return
    request = orjson.loads(await fake._read_body(receive))
    if fake.CFG["delay"]:
        await asyncio.sleep(fake.CFG["delay"])
    stream = bool(request.get("stream"))
    body = canned(request.get("model") or "unknown", stream)
    if stream:
        await fake._send_stream(send, body)
    else:
        await fake._send_json(send, 200, body)


def main() -> None:
    fake.app = app  # fake.main() parses the options and serves `fake.app`
    fake.main()


if __name__ == "__main__":
    main()
