"""OpenAI Responses API (/v1/responses): passed through to OpenAI models, translated for Claude
(responses_claude.py).

Pass-through: the client's body goes to OpenAI with only the upstream model id rewritten — and,
when it continues a stored conversation (`previous_response_id`), `input` replaced by the whole
conversation from the relay's store, so it works across keys, instances and providers. Stream
frames are relayed as received; only frames that carry a response object (created, completed, …)
or an error are parsed. The terminal event is held back until the charge is committed and then
sent with `usage.cost`, as chat streams send their usage chunk.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import orjson

from relay.catalog import CatalogModel
from relay.errors import RelayError
from relay.tokens import count_text
from relay.upstream import client
from relay.upstream.base import Target
from relay.upstream.errors import connection_error, status_error
from relay.upstream.litellm_bridge import LITELLM_CONTROLS
from relay.upstream.openai_shapes import output_estimate
from relay.upstream.responses_claude import ResponsesEventReader, responses_error_event, send_responses_to_claude
from relay.upstream.responses_common import ResponsesCall, as_client_sees, from_responses, keep, responses_usage
from relay.upstream.sse import named_event
from relay.upstream.wire import forwarded_body, openai_headers, openai_url, usage_with_cost
from relay.usage import Usage

TERMINAL = ("response.completed", "response.incomplete")
_CONTINUATION = LITELLM_CONTROLS | {"previous_response_id"}


class ResponsesAdapter:
    operation = "responses"

    async def send(self, call: ResponsesCall, target: Target) -> Any:
        if target.provider == "anthropic":
            return await send_responses_to_claude(call, target)
        url, headers = openai_url(target, "/responses"), openai_headers(target)
        own: dict[str, Any] = {"model": target.upstream_model}
        if call.continued:
            own["input"] = call.items
        body = forwarded_body(call.body, own, _CONTINUATION if call.continued else LITELLM_CONTROLS)
        if not call.stream:
            reply = await client.post(url, headers, target.where, body=body)
            await keep(call, as_client_sees(call, reply.body))
            return reply
        stream = await client.open_stream(url, headers, target.where, body)
        return client.Relayed(_kept_frames(call, stream), stream.headers)

    def estimate(self, call: ResponsesCall, model: CatalogModel) -> Usage:
        return Usage(input_tokens=call.prompt_tokens, output_tokens=output_estimate(call, model))

    def usage(self, call: ResponsesCall, result: client.Reply) -> Usage:
        reported = result.body.get("usage")
        if isinstance(reported, dict) and reported.get("total_tokens"):
            return from_responses(reported)
        return Usage(input_tokens=call.prompt_tokens, output_tokens=count_text(output_text(result.body)),
                     estimated=True)

    def answer(self, result: client.Reply, call: ResponsesCall, usage: Usage, cost_usd: float) -> dict:
        body = as_client_sees(call, result.body)
        body["usage"] = usage_with_cost(body.get("usage") if result.native else None, usage, cost_usd,
                                        responses_usage)
        return body

    def reader(self, call: ResponsesCall, target: Target) -> Any:
        if target.provider == "anthropic":
            return ResponsesEventReader(call)
        return OpenAIResponsesReader(call, target)


def output_text(response: dict) -> str:
    parts: list[str] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        parts.append(item.get("arguments") or "")
        parts += [c.get("text") or "" for c in item.get("content") or [] if isinstance(c, dict)]
    return "".join(parts)


def frame_data(frame: bytes) -> dict | None:
    for line in frame.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                data = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError:
                return None
            return data if isinstance(data, dict) else None
    return None


async def _kept_frames(call: ResponsesCall, frames: client.Stream) -> AsyncIterator[bytes]:
    """The provider's frames, unchanged; the finished response is stored before it is relayed."""
    async for frame in frames:
        if b'"response.completed"' in frame or b'"response.incomplete"' in frame:
            data = frame_data(frame)
            if data is not None and isinstance(data.get("response"), dict):
                await keep(call, as_client_sees(call, dict(data["response"])))
        yield frame


class OpenAIResponsesReader:
    """A passed-through Responses stream, frame by frame."""

    def __init__(self, call: ResponsesCall, target: Target) -> None:
        self._call = call
        self._rewrite = call.model != target.upstream_model or call.continued
        self._where = target.where
        self._relayed: list[bytes] = []  # delta frames, parsed only if usage never comes
        self._terminal: dict | None = None
        self._events = 0  # OpenAI numbers a stream's events from 0: the next one's sequence_number

    def feed(self, frame: bytes) -> bytes:
        if b"data:" not in frame:
            return frame + b"\n\n"  # a comment (keep-alive): harmless, passed on
        self._events += 1
        if b'"error"' in frame or b'"response"' in frame:
            data = frame_data(frame) or {}
            kind = data.get("type")
            if kind == "error" or kind == "response.failed":
                raise status_error(_status_of(data), frame_data_bytes(frame), {}, self._where.provider,
                                   self._where.model)
            if kind in TERMINAL:
                self._terminal = data
                return b""  # sent last, with the cost (see trailer)
            if self._rewrite and isinstance(data.get("response"), dict):
                as_client_sees(self._call, data["response"])
                return named_event(str(kind), data)
        elif b".delta" in frame:
            self._relayed.append(frame)
        return frame + b"\n\n"

    def usage(self) -> Usage | None:
        if self._terminal is None:
            return None
        usage = (self._terminal.get("response") or {}).get("usage")
        return from_responses(usage) if isinstance(usage, dict) and usage.get("total_tokens") else None

    def text(self) -> str:
        parts = []
        for frame in self._relayed:
            data = frame_data(frame) or {}
            parts.append(str(data.get("delta") or ""))
        return "".join(parts)

    def trailer(self, usage: Usage, cost_usd: float | None) -> bytes:
        if self._terminal is None:
            raise connection_error(ConnectionError("the stream ended before response.completed"),
                                   self._where.provider, self._where.model)
        response = as_client_sees(self._call, self._terminal.get("response") or {})
        response["usage"] = usage_with_cost(response.get("usage"), usage, cost_usd, responses_usage)
        self._terminal["response"] = response
        return named_event(str(self._terminal.get("type")), self._terminal)

    def error_event(self, error: RelayError) -> bytes:
        return responses_error_event(error, self._events)


def frame_data_bytes(frame: bytes) -> bytes:
    data = frame_data(frame) or {}
    error = data.get("error") or (data.get("response") or {}).get("error") or {"message": data.get("message")}
    return orjson.dumps({"error": error})


def _status_of(data: dict) -> int:
    """An in-band failure of a stream already accepted: the provider failed (no HTTP status)."""
    return 502
