"""What an adapter provides to dispatch and streaming."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

from relay.call import Call
from relay.catalog import CatalogModel
from relay.credentials import Credential
from relay.usage import Usage


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the upstream model id LiteLLM understands, the key and base URL."""

    litellm_model: str
    credential: Credential
    api_base: str
    timeout: float


def target_for(model: CatalogModel, credential: Credential, default_base: str, timeout: float) -> Target:
    return Target(f"{model.provider}/{model.upstream}", credential, credential.base_url or default_base, timeout)


class StreamAccumulator(Protocol):
    """Reads a stream as it passes: the usage the provider reported, and the text relayed so far
    (counted with tiktoken when the stream ends without usage)."""

    def feed(self, item: Any) -> None: ...
    def usage(self) -> Usage | None: ...
    def text(self) -> str: ...


class Adapter(Protocol):
    operation: str

    async def send(self, call: Call, target: Target) -> Any:
        """One upstream attempt: a complete answer, or an async iterator of stream items."""
        ...

    def answer(self, result: Any) -> dict:
        """The JSON body the client receives for a complete answer."""
        ...

    def usage(self, call: Call, result: Any) -> Usage:
        """The usage of a complete answer (estimated, and marked so, where the provider gave none)."""
        ...

    def encode(self, item: Any) -> bytes:
        """One stream item as SSE bytes in the client's protocol."""
        ...

    def accumulator(self) -> StreamAccumulator: ...

    def stream_trailer(self, usage: Usage, cost_usd: str | None, include_usage: bool) -> bytes:
        """Bytes sent after the last upstream item (e.g. OpenAI's `data: [DONE]`)."""
        ...


StreamItems = AsyncIterator[Any]
