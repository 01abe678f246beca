"""The adaptive hold policy end to end (#16, relay.hold_policy): coding agents' max_tokens no
longer starve a small balance or a starter TPM, and the overdraft bound holds under 200-way
concurrency across two relay processes (SQLite here; PostgreSQL with RELAY_TEST_DATABASE_URL).

The emulator is told each answer's output token count (`x_emulator_patch` on usage), so a test
controls how far the real charge is from the hold."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlmodel import select

from relay import ledger, operator
from relay.db.engine import session_scope
from relay.db.models import Account, Hold, LedgerEntry
from relay.money import usd_to_nanos
from relay.tokens import count_messages_prompt
from relay.usage import Usage
from tests.e2e.billing_support import sell_cost, settled

HTTP = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16))


def turn(model: str, max_tokens: int, output_tokens: int, prompt: str = "next step, please") -> dict[str, Any]:
    """An agent's turn: the emulator answers with exactly `output_tokens` of output."""
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}],
            "x_emulator_patch": [[["usage", "output_tokens"], output_tokens]]}


def send(url: str, key: str, body: dict) -> httpx.Response:
    return HTTP.post(url + "/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"})


def adaptive(relay: Any, name: str, overdraft_usd: str) -> dict:
    return operator.set_hold_policy(relay.state.engine, name, "adaptive", overdraft_usd)


def test_adaptive_serves_an_agent_where_worst_case_refuses(relay, make_account) -> None:
    """$5, Claude at max_tokens 64,000, turns that cost cents: worst_case holds ~$3.68 a turn and
    refuses once the balance is below that; adaptive holds cents and serves every turn."""
    model = "claude-fable-5-1"
    body = turn(model, 64_000, 1_500)
    prompt = count_messages_prompt(body)
    worst = sell_cost(relay, model, Usage(input_tokens=prompt, output_tokens=64_000))
    real = sell_cost(relay, model, Usage(input_tokens=prompt, output_tokens=1_500))
    assert usd_to_nanos("3") < worst < usd_to_nanos("5") and real < usd_to_nanos("0.10")  # cents a turn
    turns = (usd_to_nanos("5") - worst) // real + 4  # the last few need more than worst_case can hold

    cautious, agent = make_account(balance="5"), make_account(balance="5")
    adaptive(relay, agent.name, "5")
    for account in (cautious, agent):
        statuses = [send(relay.url, account.key, body).status_code for _ in range(turns)]
        if account is cautious:
            refused = statuses.index(402)
            assert set(statuses[:refused]) == {200} and set(statuses[refused:]) == {402}
            left = settled(relay, account.id).balance_nanos
            assert left < worst and left > usd_to_nanos("3")  # over $3 of the $5 it could not spend
        else:
            assert statuses == [200] * turns
    view = settled(relay, agent.id)
    assert view.balance_nanos < settled(relay, cautious.id).balance_nanos and view.balance_nanos >= 0
    with session_scope(relay.state.engine) as session:
        holds = list(session.exec(select(Hold).where(Hold.account_id == agent.id)))
    assert len(holds) == turns
    for hold in holds:  # each held a few cents, its exposure the rest of the worst case
        assert hold.amount_nanos < worst // 20 and hold.amount_nanos + hold.exposure_nanos == worst
    assert ledger.check_invariant(relay.state.engine, agent.id) == []


def test_an_adaptive_stream_is_charged_its_real_usage_and_frees_its_exposure(relay, make_account) -> None:
    model = "claude-sonnet-5-5"
    body = {**turn(model, 64_000, 5_000), "stream": True}
    account = make_account(balance="5")
    adaptive(relay, account.name, "1")
    with HTTP.stream("POST", relay.url + "/v1/messages", json=body,
                     headers={"x-api-key": account.key, "anthropic-version": "2023-06-01"}) as answer:
        assert answer.status_code == 200 and "message_stop" in answer.read().decode()
    view = settled(relay, account.id)
    engine = relay.state.engine
    with session_scope(engine) as session:
        (hold,) = session.exec(select(Hold).where(Hold.account_id == account.id))
        (charge,) = session.exec(select(LedgerEntry).where(LedgerEntry.account_id == account.id,
                                                          LedgerEntry.kind == "charge"))
        exposure = session.exec(select(Account.exposure_nanos).where(Account.id == account.id)).one()
    worst = sell_cost(relay, model, Usage(input_tokens=count_messages_prompt(body), output_tokens=64_000))
    assert hold.status == "settled" and hold.amount_nanos + hold.exposure_nanos == worst
    assert -charge.amount_nanos > 4 * hold.amount_nanos  # 5,000 tokens charged on a ~1,024-token hold
    assert view.balance_nanos == usd_to_nanos("5") + charge.amount_nanos and exposure == 0
    assert ledger.check_invariant(engine, account.id) == []


async def fire(urls: list[str], key: str, body: dict, total: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=total)) as client:
        return await asyncio.gather(*[
            client.post(urls[i % len(urls)] + "/v1/messages", json=body,
                        headers={"x-api-key": key, "anthropic-version": "2023-06-01"}) for i in range(total)])


def test_overdraft_bound_holds_under_200_way_concurrency(relay, make_account, spawn_relay, emulator) -> None:
    """Every answer is 60,000 output tokens while adaptive holds ~1,000: each charge is ~60× its
    hold. 200 at once across two processes: the balance goes negative, never below −overdraft."""
    model = "claude-sonnet-5-5"
    body = turn(model, 64_000, 60_000)
    account = make_account(balance="2")
    adaptive(relay, account.name, "1")
    # Out of the rate limits' way: each request pre-counts ~64,000 tokens, so the tier's 2M TPM
    # could refuse some with a 429 before their 402s give the tokens back (seen once in a full run).
    operator.set_limits(relay.state.engine, account.name, tpm=1_000_000_000)
    engine = relay.state.engine
    processes = [spawn_relay(), spawn_relay()]
    for process in processes:
        process.start()
    responses = asyncio.run(fire([p.url for p in processes], account.key, body, 200))
    for process in processes:
        process.stop()  # drains: every settlement is written once the processes have exited

    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 402}, statuses
    end = ledger.account_balance(engine, account.id)
    assert -usd_to_nanos("1") <= end.balance_nanos < 0  # overdrawn, within the bound
    assert end.held_nanos == 0 and ledger.check_invariant(engine, account.id) == []
    with session_scope(engine) as session:
        charges = list(session.exec(select(LedgerEntry).where(
            LedgerEntry.account_id == account.id, LedgerEntry.kind == "charge")))
    assert len({c.request_id for c in charges}) == len(charges) == statuses.count(200)
    assert sum(-c.amount_nanos for c in charges) == usd_to_nanos("2") - end.balance_nanos
    # Refused before the provider: no cost to the relay. (Only the answers' calls count: a spawned
    # process may also re-verify a failing key left by another test, a GET /v1/models.)
    assert len([r for r in emulator.requests if r.path == "/v1/messages"]) == statuses.count(200)
    refusals = [r.json()["error"] for r in responses if r.status_code == 402]
    assert all("max_tokens" in e["message"] for e in refusals)  # says what to change


def test_adaptive_admits_claude_code_turns_on_a_starter_tpm(relay, make_account, emulator) -> None:
    """Starter: 100,000 TPM. Three turns in flight at once, ~28k prompt and max_tokens 32,000:
    worst_case counts ~60k each and admits one; adaptive counts ~29k each and admits all three."""
    model = "claude-sonnet-5-5"
    body = turn(model, 32_000, 800, prompt="context " * 28_000)
    assert 27_000 < count_messages_prompt(body) < 29_000
    emulator.set_mode("slow", delay=0.1)  # answers take about a second: the three are in flight together
    results = {}
    for policy in ("worst_case", "adaptive"):
        account = make_account(tier="starter", balance="10")
        if policy == "adaptive":
            adaptive(relay, account.name, "0")
        with ThreadPoolExecutor(3) as pool:
            results[policy] = sorted(r.status_code for r in pool.map(lambda _: send(relay.url, account.key, body),
                                                                       range(3)))
    assert results == {"worst_case": [200, 429, 429], "adaptive": [200, 200, 200]}


def test_operators_set_the_policy_by_cli_and_admin(relay, make_account, monkeypatch, relay_env, capsys) -> None:
    from relay.cli import main

    account = make_account(balance="1")
    for name, value in relay_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RELAY_OVERDRAFT_LIMIT_USD", "2.5")
    assert main(["accounts", "set-hold-policy", account.name, "adaptive", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["hold_policy"], printed["overdraft_usd"]) == ("adaptive", operator.format_usd(usd_to_nanos("2.5")))
    shown = operator.show_account(relay.state.engine, account.name)
    assert (shown["hold_policy"], shown["overdraft_usd"]) == ("adaptive", operator.format_usd(usd_to_nanos("2.5")))
    with pytest.raises(SystemExit):  # argparse refuses a policy it does not know
        main(["accounts", "set-hold-policy", account.name, "sideways"])
    assert main(["accounts", "set-hold-policy", account.name, "adaptive", "--overdraft-usd", "-1"]) == 1
    admin = {"Authorization": "Bearer admin-test-key"}
    url = f"{relay.url}/admin/accounts/{account.name}/hold-policy"
    answer = httpx.put(url, json={"policy": "worst_case", "overdraft_usd": "0"}, headers=admin)
    assert answer.status_code == 200 and answer.json()["hold_policy"] == "worst_case"
    assert answer.json()["overdraft_usd"] == operator.format_usd(0)
    for bad in ({"policy": "sometimes"}, {"policy": "adaptive", "overdraft_usd": "-3"},
                {"policy": "adaptive", "overdraft_usd": True}, {"policy": 1}):
        refused = httpx.put(url, json=bad, headers=admin)
        assert refused.status_code == 400 and "error" in refused.json(), (bad, refused.text)
    assert httpx.put(url, json={"policy": "adaptive"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
