"""What an adapter provides to dispatch, the pipeline and the stream relay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from relay.call import Call
from relay.catalog import CatalogModel
from relay.credentials import Credential
from relay.errors import RelayError
from relay.upstream.client import Where
from relay.usage import Usage


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the provider, the model id it knows, the key and base URL."""

    provider: str  # openai | anthropic
    upstream_model: str
    credential: Credential
    api_base: str
    timeout: float
    connect_timeout: float = 10.0

    @property
    def where(self) -> Where:
        return Where(self.provider, self.upstream_model, self.timeout, self.connect_timeout,
                     own_endpoint=self.credential.own_endpoint)


def target_for(model: CatalogModel, credential: Credential, default_base: str, timeout: float,
               connect_timeout: float = 10.0) -> Target:
    return Target(model.provider, model.upstream, credential, credential.base_url or default_base, timeout,
                  connect_timeout)


class StreamReader(Protocol):
    """One stream as it passes, in the client's protocol: each upstream item turned into the bytes
    the client receives, the usage the provider reported, and the text relayed so far (counted
    with tiktoken when the stream ends without usage). One per stream: it holds that stream's state."""

    def feed(self, item: Any) -> bytes: ...
    def usage(self) -> Usage | None: ...
    def text(self) -> str: ...

    def trailer(self, usage: Usage, cost_usd: float | None) -> bytes:
        """Bytes after the last upstream item (e.g. OpenAI's usage chunk and `data: [DONE]`)."""
        ...

    def error_event(self, error: RelayError) -> bytes:
        """A failure after the stream started, in the protocol's in-band error form."""
        ...


class Adapter(Protocol):
    """One operation (chat, messages, embeddings, …): the upstream call and the reading of its answer."""

    operation: str

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        """The most this request may use (prompt plus the output it may produce): admitted against
        TPM and priced for the hold."""
        ...

    async def send(self, call: Call, target: Target) -> Any:
        """One upstream attempt: a complete answer (relay.upstream.client.Reply), or a stream
        (an async iterator of items with `headers` and `aclose()`)."""
        ...

    def usage(self, call: Call, result: Any) -> Usage:
        """The usage of a complete answer (estimated, and marked so, where the provider gave none)."""
        ...

    def answer(self, result: Any, call: Call, usage: Usage, cost_usd: float) -> dict:
        """The JSON body the client receives for a complete answer."""
        ...

    # Streaming operations only:
    def reader(self, call: Call, target: Target) -> StreamReader: ...
