"""Issue #14, graceful shutdown: `relay serve` (the product's own entry point, so the exit status
is the one a service manager sees) gets SIGTERM with 50 streams in flight at the provider. It
stops accepting at once, lets every stream finish in full, charges and records each one, gives
back its balance leases (no open hold left), keeps the books balanced and exits 0 — with one
process and with `--workers 2` (the supervisor drains its workers)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from relay import ledger
from relay.db.models import Hold, LedgerEntry, UsageRecord
from tests.e2e.relay_server import ROOT, free_port, wait_ready

STREAM = {"model": "gpt-4o-mini", "max_tokens": 64, "stream": True, "stream_options": {"include_usage": True},
          "messages": [{"role": "user", "content": "shutdown test"}]}
PLAIN = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "warm"}]}
RELAY = ROOT / ".venv" / "bin" / "relay"


def serve(relay_env: dict[str, str], log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **relay_env}
    with log.open("wb") as out:
        process = subprocess.Popen([str(RELAY), "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, 90, process)
    return process, url


async def one_stream(client: httpx.AsyncClient, url: str, key: str) -> tuple[str | None, bool]:
    """(request id, whether the stream arrived whole: 200 and ending with `data: [DONE]`)."""
    async with client.stream("POST", url + "/v1/chat/completions", json=STREAM,
                             headers={"Authorization": f"Bearer {key}"}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
        return response.headers.get("x-request-id"), response.status_code == 200 and raw.rstrip().endswith(
            b"data: [DONE]")


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def sigterm_under_streams(process: subprocess.Popen, url: str, key: str, emulator, count: int) -> tuple:  # type: ignore[no-untyped-def]
    """`count` streams in flight at the provider, then SIGTERM; → (results, refused in time)."""
    port = int(url.rsplit(":", 1)[1])
    seen = len(emulator.requests)

    async def run() -> tuple[list[tuple[str | None, bool]], bool]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count + 5)) as client:
            calls = [asyncio.ensure_future(one_stream(client, url, key)) for _ in range(count)]
            deadline = time.monotonic() + 30
            while len(emulator.requests) - seen < count:
                assert time.monotonic() < deadline, "the streams never all reached the provider"
                await asyncio.sleep(0.01)
            assert not any(c.done() for c in calls), "a stream finished before SIGTERM: slow the emulator"
            process.send_signal(signal.SIGTERM)
            # New connections are refused while the streams are still running.
            deadline = time.monotonic() + 5
            closed = False
            while time.monotonic() < deadline and not closed:
                closed = await asyncio.to_thread(refused, port)
                await asyncio.sleep(0.05)
            closed = closed and not all(c.done() for c in calls)
            return list(await asyncio.gather(*calls, return_exceptions=False)), closed

    return asyncio.run(run())


def assert_books(engine, account_id: int, start: int, results: list[tuple[str | None, bool]]) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        records = {r.id: r for r in session.exec(select(UsageRecord).where(UsageRecord.account_id == account_id))}
        charges = [c.request_id for c in session.exec(select(LedgerEntry).where(
            LedgerEntry.account_id == account_id, LedgerEntry.kind == "charge"))]
        open_holds = list(session.exec(select(Hold).where(Hold.account_id == account_id, Hold.status == "open")))
    for request_id, _ in results:  # every stream: recorded as ok, charged exactly once
        assert request_id in records and records[request_id].status == "ok", request_id
        assert records[request_id].cost_nanos > 0 and charges.count(request_id) == 1, request_id
    assert len(charges) == len(set(charges))
    assert open_holds == [], open_holds  # leases given back, no request hold left behind
    view = ledger.account_balance(engine, account_id)
    assert view.held_nanos == 0
    assert start - view.balance_nanos == sum(r.cost_nanos for r in records.values())
    assert ledger.check_invariant(engine, account_id) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_with_50_streams_in_flight(workers: int, relay, relay_env, make_account, emulator,
                                           tmp_path: Path) -> None:
    engine = relay.state.engine
    account = make_account(balance="100")
    start = ledger.account_balance(engine, account.id).balance_nanos
    extra = ("--workers", str(workers)) if workers > 1 else ()
    process, url = serve({**relay_env, "RELAY_SHUTDOWN_GRACE_S": "30"}, tmp_path / "relay.log", *extra)
    try:
        # Warm-up: a few non-stream answers, so this process takes a balance lease it must give back.
        for _ in range(4):
            assert httpx.post(url + "/v1/chat/completions", json=PLAIN, timeout=30,
                              headers={"Authorization": f"Bearer {account.key}"}).status_code == 200
        emulator.set_mode("slow", delay=0.1)  # a stream of ~20 events takes ~2 s
        results, closed = sigterm_under_streams(process, url, account.key, emulator, 50)
        status = process.wait(timeout=60)
    finally:
        emulator.set_mode(None)
        if process.poll() is None:
            process.kill()
    log = (tmp_path / "relay.log").read_text(errors="replace")
    assert status == 0, log[-3000:]
    assert len(results) == 50 and all(whole for _, whole in results), [r for r in results if not r[1]][:3]
    assert closed, "new connections were still accepted after SIGTERM"
    assert_books(engine, account.id, start, results)
