"""The Responses API's stored answers (`store`, on by default): per account, so another account's
id is a 404 like an unknown one; in the shared database, so a follow-up's `previous_response_id`
works on any instance at once. Synchronous functions: callers run them off the event loop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, delete
from sqlmodel import select

from relay.db.engine import read_scope, session_scope
from relay.db.models import StoredResponse, utcnow
from relay.errors import RelayError

# The purge runs with one save in this many: cheap, and bounded however busy the relay is.
PURGE_EVERY = 200
_saves = 0


def not_found(response_id: str, param: str | None = None) -> RelayError:
    return RelayError(404, f"No response with id '{response_id}' found for this account. Responses are "
                      "kept only when created with `store` on (the default), for a limited time.",
                      "response_not_found", param)


def save(engine: Engine, account_id: int, model: str, input_items: list, output_items: list,
         response: dict, retention_days: int) -> None:
    global _saves
    row = StoredResponse(id=response["id"], account_id=account_id, model=model, input_items=input_items,
                         output_items=output_items, response=response)
    with session_scope(engine) as session:
        session.merge(row)  # a retried id (never expected) replaces rather than fails the answer
    _saves += 1
    if _saves % PURGE_EVERY == 1:
        purge(engine, retention_days)


def load(engine: Engine, account_id: int, response_id: str) -> StoredResponse | None:
    with read_scope(engine) as session:
        row = session.get(StoredResponse, response_id)
        if row is None or row.account_id != account_id:
            return None
        session.expunge(row)
        return row


def remove(engine: Engine, account_id: int, response_id: str) -> bool:
    with session_scope(engine) as session:
        result = session.exec(delete(StoredResponse).where(  # type: ignore[call-overload]
            StoredResponse.id == response_id, StoredResponse.account_id == account_id))
        return bool(result.rowcount)


def purge(engine: Engine, retention_days: int) -> int:
    cutoff = utcnow() - timedelta(days=retention_days)
    with session_scope(engine) as session:
        stale = delete(StoredResponse).where(StoredResponse.created_at < cutoff)  # type: ignore[arg-type]
        result = session.exec(stale)  # type: ignore[call-overload]
        return int(result.rowcount or 0)


async def asave(engine: Engine, account_id: int, model: str, input_items: list, output_items: list,
                response: dict, retention_days: int) -> None:
    await anyio.to_thread.run_sync(save, engine, account_id, model, input_items, output_items, response,
                                   retention_days)


async def aload(engine: Engine, account_id: int, response_id: str, param: str | None = None) -> StoredResponse:
    row = await anyio.to_thread.run_sync(load, engine, account_id, response_id)
    if row is None:
        raise not_found(response_id, param)
    return row


def conversation(previous: StoredResponse | None, new_items: list[Any]) -> list[Any]:
    """The input the model sees: the earlier turns (their input and output), then the new items."""
    if previous is None:
        return list(new_items)
    return [*previous.input_items, *previous.output_items, *new_items]
