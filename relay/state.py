"""What the app builds once at start-up and every request shares."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Coroutine

from sqlalchemy import Engine

from relay.auth import Authenticator
from relay.billing import Billing
from relay.catalog import Catalog
from relay.credentials import CredentialStore
from relay.hold_policy import OutputStats
from relay.limits import Limiter
from relay.settings import Settings
from relay.usage_cache import PageCache

log = logging.getLogger("relay")


@dataclass
class RelayState:
    settings: Settings
    engine: Engine
    catalog: Catalog
    auth: Authenticator
    credentials: CredentialStore
    limiter: Limiter
    billing: Billing
    adapters: dict[str, Any]
    usage_pages: PageCache = field(default_factory=PageCache)  # GET /v1/usage, see relay.usage_cache
    output_stats: OutputStats = field(init=False)  # adaptive holds' estimates (relay.hold_policy)
    _background: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.output_stats = OutputStats(self.settings.adaptive_floor_tokens)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run settlement off the response's critical path; shutdown waits for it (drain)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background settlement failed", exc_info=task.exception())

    async def drain(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
