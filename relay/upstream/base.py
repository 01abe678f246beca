"""What an adapter provides to dispatch, the pipeline and the stream relay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from relay.call import Call
from relay.catalog import CatalogModel
from relay.credentials import Credential
from relay.errors import RelayError
from relay.usage import Usage


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the upstream model id LiteLLM understands, the key and base URL."""

    litellm_model: str
    credential: Credential
    api_base: str
    timeout: float

    def litellm_args(self) -> dict[str, Any]:
        """The arguments every LiteLLM call takes from the target. Retries are off: dispatch
        retries, on the next key."""
        return {"model": self.litellm_model, "api_key": self.credential.api_key, "api_base": self.api_base,
                "timeout": self.timeout, "num_retries": 0, "max_retries": 0}


def target_for(model: CatalogModel, credential: Credential, default_base: str, timeout: float) -> Target:
    return Target(f"{model.provider}/{model.upstream}", credential, credential.base_url or default_base, timeout)


class StreamAccumulator(Protocol):
    """Reads a stream as it passes: the usage the provider reported, and the text relayed so far
    (counted with tiktoken when the stream ends without usage)."""

    def feed(self, item: Any) -> None: ...
    def usage(self) -> Usage | None: ...
    def text(self) -> str: ...


class Adapter(Protocol):
    """One operation (chat, messages, embeddings, …): the LiteLLM call and the reading of its answer."""

    operation: str

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        """The most this request may use (prompt plus the output it may produce): admitted against
        TPM and priced for the hold."""
        ...

    async def send(self, call: Call, target: Target) -> Any:
        """One upstream attempt: a complete answer, or an async iterator of stream items."""
        ...

    def usage(self, call: Call, result: Any) -> Usage:
        """The usage of a complete answer (estimated, and marked so, where the provider gave none)."""
        ...

    def answer(self, result: Any, call: Call, usage: Usage, cost_usd: float) -> dict:
        """The JSON body the client receives for a complete answer."""
        ...

    # Streaming operations only:
    def accumulator(self) -> StreamAccumulator: ...

    def encode(self, call: Call, item: Any) -> bytes:
        """One stream item as SSE bytes in the client's protocol (b"" to hold it back)."""
        ...

    def trailer(self, call: Call, last_item: Any, usage: Usage, cost_usd: float) -> bytes:
        """Bytes after the last upstream item (e.g. OpenAI's usage chunk and `data: [DONE]`)."""
        ...

    def error_event(self, call: Call, error: RelayError) -> bytes:
        """A failure after the stream started, in the protocol's in-band error form."""
        ...
