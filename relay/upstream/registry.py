"""Operation name → adapter. One instance each: adapters hold no per-request state."""

from __future__ import annotations

from typing import Any

from relay.upstream.chat import ChatAdapter

ADAPTERS: dict[str, Any] = {
    "chat": ChatAdapter(),
}
