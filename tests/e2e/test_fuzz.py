"""Issue #14's fuzz suite: thousands of generated requests over every route (inference under /v1
and /byok/v1, models, usage, responses, /byok/credentials, /admin), with valid and invalid auth,
malformed JSON, wrong types, huge ints, deep nesting, odd unicode and wrong content types. Zero
5xx, every 4xx in its protocol's shape, and no traceback, secret or SQL in any body or log line.

A fixed seed (derandomize) keeps `make test` repeatable; RELAY_FUZZ_REQUESTS sets the count
(scripts/fuzz.py runs a longer one)."""

from __future__ import annotations

import logging
import os
import time
from typing import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from relay import accounts
from tests.e2e.conftest import POOL_KEYS, SECRET
from tests.e2e.fuzz_support import Capture, Req, Target, log_problems, problems, requests, shape_problem

REQUESTS = int(os.environ.get("RELAY_FUZZ_REQUESTS", "5000"))
BATCH = 5  # requests per Hypothesis example: its per-example bookkeeping is the larger cost


@pytest.fixture
def target(relay, make_account, emulator) -> Iterator[Target]:  # type: ignore[no-untyped-def]
    """The fuzz's own accounts and credentials; pool keys it adds are removed afterwards."""
    state = relay.state
    caller = make_account(balance="1000")
    accounts.update_account(state.engine, caller.name, rpm_limit=10**8, tpm_limit=10**9)  # no 429s to hide behind
    victim = make_account(balance="1")
    spare_keys = [accounts.create_key(state.engine, victim.name, "spare").record.id for _ in range(3)]
    pool_before = {c.id for c in state.credentials.list(None)}
    spare_pool = [state.credentials.add("openai", f"sk-fuzz-spare-{i}", label="fuzz").id for i in range(2)]
    byok = [state.credentials.add(p, f"sk-fuzz-byok-{p}", account_id=caller.id,
                                  base_url=emulator.url + ("/v1" if p == "openai" else "")).id
            for p in ("openai", "anthropic")]
    yield Target(key=caller.key, admin_key=state.settings.admin_key, account=victim.name,
                 key_ids=spare_keys, pool_ids=spare_pool, byok_ids=byok, emulator_url=emulator.url)
    for credential in state.credentials.list(None):
        if credential.id not in pool_before:
            state.credentials.remove(credential.id, None)
    emulator.reset()


def send(client: httpx.Client, req: Req) -> httpx.Response:
    return client.request(req.method, req.path, headers=req.headers, content=req.body)


def test_fuzz_every_route(relay, target: Target) -> None:
    secrets = [target.key, target.admin_key, SECRET, *[k for keys in POOL_KEYS.values() for k in keys],
               "sk-fuzz-byok-openai", "sk-fuzz-byok-anthropic", "sk-fuzz-spare-"]
    failures: dict[str, str] = {}
    statuses: dict[int, int] = {}
    capture = Capture()
    relay_logger = logging.getLogger("relay")
    level = relay_logger.level
    logging.getLogger().addHandler(capture)
    relay_logger.setLevel(logging.INFO)
    started = time.monotonic()
    client = httpx.Client(base_url=relay.url, timeout=30)

    @settings(max_examples=-(-REQUESTS // BATCH), derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(requests(target), min_size=BATCH, max_size=BATCH))
    def batch(reqs: list[Req]) -> None:
        for req in reqs:
            check(req)

    def check(req: Req) -> None:
        response = send(client, req)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        text = response.content.decode("utf-8", "replace")
        found = problems(req, response.status_code, text, secrets)
        if shape := shape_problem(req, response.status_code, text):
            found.append(shape)
        for problem in found:  # one example per kind of problem is enough to act on
            failures.setdefault(f"{problem} on {req.method} {req.path.split('?')[0][:60]}",
                                f"{req.describe()}\n  -> {response.status_code} {text[:300]}")

    try:
        batch()
    finally:
        client.close()
        logging.getLogger().removeHandler(capture)
        relay_logger.setLevel(level)
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    print(f"\nfuzz: {total} requests in {elapsed:.1f}s, statuses {dict(sorted(statuses.items()))}")
    for line in log_problems(capture.lines, secrets):
        failures.setdefault(line[:120], line)
    assert total >= REQUESTS
    assert not failures, f"{len(failures)} kinds of problem:\n" + "\n\n".join(
        f"{k}\n  {v}" for k, v in list(failures.items())[:25])
