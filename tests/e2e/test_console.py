"""Issue #17: the console at /console in headless Chromium (Debian's `chromium` through Playwright,
no browser download; the harness of test_docs_page.py), and the JSON routes it reads, which
scripts use too (/v1/usage/daily, /v1/limits, /v1/usage?format=csv, /admin/margin, /admin/overview,
/admin/stats/live). Screenshots of each view go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from relay import accounts, cli
from relay.db.models import UsageRecord
from relay.money import format_usd
from tests.e2e.test_docs_page import ARTIFACTS, browser  # noqa: F401 - the shared Chromium fixture

ADMIN = "admin-test-key"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello console"}]}


def chat(relay: Any, key: str, model: str = "gpt-4o-mini") -> None:
    answer = httpx.post(relay.url + "/v1/chat/completions", json={**CHAT, "model": model},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200, answer.text


def records(relay: Any, key: str, count: int) -> list[dict]:
    """The key's account's records once `count` are written (settlement is group-committed, so a
    record may land a moment after its answer)."""
    for _ in range(100):
        page = httpx.get(relay.url + "/v1/usage?limit=1000", headers={"Authorization": f"Bearer {key}"}).json()
        if len(page["data"]) >= count:
            break
        time.sleep(0.05)
    assert len(page["data"]) == count and not page["has_more"]
    return page["data"]


def relay_cli(capsys: Any, *argv: str) -> str:
    capsys.readouterr()
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.fixture
def cli_env(relay_env: dict[str, str], monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name, value in relay_env.items():
        monkeypatch.setenv(name, value)


def open_console(browser: Any, relay: Any, key: str) -> tuple[Any, list[str]]:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(relay.url + "/console")
    page.fill("#key", key)
    page.click("#signin-form button[type=submit]")
    return page, problems


def confirm(page: Any) -> None:
    page.wait_for_selector("dialog#confirm[open]")
    page.click("#confirm-yes")


def test_console_headers_and_wrong_keys(relay, browser, account) -> None:  # noqa: F811
    answer = httpx.get(relay.url + "/console")
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in answer.text and " style=" not in answer.text  # no inline script or style
    assert "http://" not in answer.text.replace(relay.url, "") and "https://" not in answer.text  # no other origin
    assert "x-frame-options" in httpx.get(relay.url + "/static/console/app.js").headers

    for wrong in ("sk-rr-" + "0" * 40, "not-the-admin-key"):
        page, problems = open_console(browser, relay, wrong)
        page.wait_for_selector("#signin-error:has-text('Refused')")
        assert page.is_visible("#signin") and not page.is_visible("#account") and not page.is_visible("#operator")
        assert page.evaluate("sessionStorage.length") == 0 and page.context.cookies() == []
        if wrong.startswith("sk-rr-"):
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-refused.png"), full_page=True)
        page.close()
    # The operator's data routes refuse an account key: the view has nothing to show without the admin key.
    assert httpx.get(relay.url + "/admin/overview", headers={"Authorization": f"Bearer {account.key}"}).status_code == 401


def test_account_view(relay, browser, make_account, capsys, cli_env) -> None:  # noqa: F811
    acct = make_account(balance="10")
    for model in ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "claude-haiku-5-5"):
        chat(relay, acct.key, model)
    data = records(relay, acct.key, 4)

    page, problems = open_console(browser, relay, acct.key)
    page.wait_for_selector("body[data-view='account']", timeout=15_000)
    shown = json.loads(relay_cli(capsys, "balance", "show", acct.name, "--json"))
    assert page.inner_text("#balance") == f"${shown['balance_usd']}"
    assert page.inner_text("#available") == f"${shown['available_usd']}"
    assert page.evaluate("sessionStorage.getItem('relay.console.key')") == acct.key
    assert page.context.cookies() == [] and acct.key not in page.url

    # The per-model table under the charts holds what the records add up to.
    per_model: dict[str, list] = defaultdict(lambda: [0, Decimal(0)])
    for r in data:
        per_model[r["model"]][0] += 1
        per_model[r["model"]][1] += Decimal(r["cost_usd"])
    rows = page.eval_on_selector_all("#by-model tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText))")
    assert {r[0]: [int(r[1]), Decimal(r[5].lstrip("$"))] for r in rows} == {m: v for m, v in per_model.items()}
    total = sum((Decimal(r["cost_usd"]) for r in data), Decimal(0))
    assert Decimal(page.get_attribute("#by-model", "data-total-cost")) == total
    assert page.get_attribute("#spend-chart", "data-points") == "30"
    assert set(page.get_attribute("#spend-chart", "data-series").split(",")) == set(per_model)
    assert page.locator("#spend-chart canvas").count() == 1
    log_ids = page.eval_on_selector_all("#log tbody tr td:last-child", "cells => cells.map(c => c.innerText)")
    assert log_ids == [r["id"] for r in data]
    assert "0 of" not in page.inner_text("#rpm") and page.inner_text("#rpm").endswith(f"of {acct_rpm(relay, acct)}")

    with page.expect_download() as download:
        page.click("#csv")
    exported = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert [row["id"] for row in exported] == [r["id"] for r in data]
    assert [row["cost_usd"] for row in exported] == [r["cost_usd"] for r in data]

    page.select_option("#byok-provider", "openai")
    secret = "sk-byok-console-" + uuid.uuid4().hex
    page.fill("#byok-key", secret)
    page.fill("#byok-label", "from the console")
    page.click("#byok-form button[type=submit]")
    confirm(page)
    page.wait_for_selector("#byok[data-count='1']")
    assert secret not in page.content() and "from the console" in page.inner_text("#byok")
    listed = httpx.get(relay.url + "/byok/credentials", headers={"Authorization": f"Bearer {acct.key}"}).json()["data"]
    assert [c["label"] for c in listed] == ["from the console"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-account.png"), full_page=True)
    page.click("#byok button:has-text('Verify')")  # against the provider (the emulator) now
    confirm(page)
    page.wait_for_selector("#toast:text-matches('^Key sk-')")
    verified = page.inner_text("#toast")
    assert verified.split(": ", 1)[1].split(" ")[0] in ("ok", "rejected", "unverified"), verified
    page.click("#byok button:has-text('Remove')")
    confirm(page)
    page.wait_for_selector("#byok[data-count='0']")
    assert httpx.get(relay.url + "/byok/credentials", headers={"Authorization": f"Bearer {acct.key}"}).json()["data"] == []
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    page.close()


def test_account_view_shows_the_keys_own_controls(relay, browser, make_account) -> None:  # noqa: F811
    from relay.key_admin import update_key

    acct = make_account(balance="10")
    key_id = accounts.list_keys(relay.state.engine, acct.name)[0].id
    update_key(relay.state.engine, relay.state.catalog, key_id, budget_usd="2.5", budget_period="day",
               models="gpt-4o-mini", rpm="7")
    page, _ = open_console(browser, relay, acct.key)
    page.wait_for_selector("body[data-view='account']", timeout=15_000)
    shown = page.inner_text("#keyinfo")
    assert "budget $2.5 (day)" in shown and "models: gpt-4o-mini" in shown and "7 RPM" in shown, shown
    page.close()


def acct_rpm(relay: Any, acct: Any) -> int:
    return httpx.get(relay.url + "/v1/limits", headers={"Authorization": f"Bearer {acct.key}"}).json()["rpm_limit"]


def test_operator_view(relay, browser) -> None:  # noqa: F811
    page, problems = open_console(browser, relay, ADMIN)
    page.wait_for_selector("body[data-view='operator']", timeout=15_000)
    assert page.evaluate("sessionStorage.getItem('relay.console.key')") == ADMIN
    name = f"console-{uuid.uuid4().hex[:8]}"
    page.fill("#new-account", name)
    page.select_option("#new-tier", "professional")
    page.click("#create-account button[type=submit]")
    confirm(page)
    page.wait_for_selector(f"#detail-name:has-text('{name}')")
    page.wait_for_selector(f"#accounts tr[data-account='{name}']")

    idem = "console-topup-" + uuid.uuid4().hex
    page.fill("#topup-amount", "5")
    page.fill("#topup-idem", idem)
    page.click("#topup button[type=submit]")
    confirm(page)
    page.wait_for_selector("#topup-result:has-text('Entry')")
    page.click("#topup button[type=submit]")  # the same key again: answered, not applied
    confirm(page)
    page.wait_for_selector("#topup-result:has-text('Already applied')")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert httpx.get(f"{relay.url}/admin/accounts/{name}/balance", headers=admin).json()["balance_usd"] == "5"

    page.click("#create-key button[type=submit]")
    confirm(page)
    page.wait_for_selector("#new-key:not([hidden])")
    key = page.inner_text("#new-key-value")
    assert key.startswith("sk-rr-")
    assert page.evaluate("JSON.stringify(sessionStorage)").count("sk-rr-") == 0  # shown, never stored

    live_before = httpx.get(relay.url + "/admin/stats/live", headers=admin).json()["requests_total"]
    chat(relay, key)
    spent = records(relay, key, 1)[0]["cost_usd"]
    page.click("#detail-refresh")
    page.wait_for_selector("#detail-usage[data-count='1']")
    row = page.locator(f"#accounts tr[data-account='{name}'] td").all_inner_texts()
    assert row[1] == "professional" and row[5] == "1" and row[3] != "$5"  # charged from the $5
    assert row[6] == f"${spent}" and "gpt-4o-mini" in page.inner_text("#detail-usage")
    for _ in range(50):  # the live view polls every 2 s (wait_for_function would need the eval the CSP forbids)
        if int(page.inner_text("#live-total") or 0) > live_before:
            break
        page.wait_for_timeout(200)
    assert int(page.inner_text("#live-total")) > live_before
    page.wait_for_selector("#live-chart canvas", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-operator.png"), full_page=True)

    page.select_option("#tier-select", "enterprise")
    page.click("#tier button[type=submit]")
    confirm(page)
    page.wait_for_selector(f"#accounts tr[data-account='{name}'] td:nth-child(2):text-is('enterprise')")
    page.fill("#limit-rpm", "77")
    page.click("#set-limits")
    confirm(page)
    page.wait_for_selector(f"#accounts tr[data-account='{name}'] td:nth-child(3):has-text('77 / tier')")
    shown = httpx.get(f"{relay.url}/admin/accounts/{name}", headers=admin).json()
    assert (shown["tier"], shown["rpm_limit"], shown["tpm_limit"]) == ("enterprise", 77, None)
    page.click("#keys button:has-text('Revoke')")
    confirm(page)
    page.wait_for_selector("#keys tbody tr td:nth-child(6):not(:empty)")

    # Another account, made elsewhere (here through the API), opened by name: its row is pinned
    # first in the table whichever page of accounts it is on.
    other = f"console-{uuid.uuid4().hex[:8]}"
    assert httpx.post(f"{relay.url}/admin/accounts", json={"name": other}, headers=admin).status_code == 201
    page.fill("#find-name", other)
    page.click("#find-account button[type=submit]")
    page.wait_for_selector(f"#detail-name:has-text('{other}')")
    page.wait_for_selector(f"#accounts tbody tr[data-account='{other}']")
    for _ in range(80):  # a key's lookup is cached for RELAY_AUTH_CACHE_TTL_S (5 s)
        refused = httpx.get(relay.url + "/v1/limits", headers={"Authorization": f"Bearer {key}"})
        if refused.status_code != 200:
            break
        time.sleep(0.1)
    assert refused.status_code in (401, 403), refused.text
    assert not [p for p in problems if "Content Security Policy" in p], problems
    page.close()


# --- the routes alone, as scripts use them ------------------------------------------------------

def seed_records(relay: Any, account_id: int, count: int, start: datetime, errors: bool = False) -> list[dict]:
    rows = [{"id": f"req_{uuid.uuid4().hex}", "account_id": account_id, "route": "chat.completions",
             "model": ("gpt-4o-mini", "gpt-4o")[i % 2], "provider": "openai", "source": ("pool", "byok")[i % 3 == 0],
             "usage": {"input_tokens": 10 + i, "cached_input_tokens": i % 5, "output_tokens": 3 + i % 7},
             "cost_nanos": 1_000 + 37 * i, "list_cost_nanos": 800 + 11 * i, "status": "error" if errors or i % 10 == 9 else "ok",
             "http_status": 502 if i % 10 == 9 else 200, "latency_ms": i % 300,
             "created_at": start + timedelta(minutes=17 * i)} for i in range(count)]
    with relay.state.engine.begin() as connection:
        connection.execute(insert(UsageRecord.__table__), rows)  # type: ignore[attr-defined]
    return rows


def margin_by_account(relay: Any, range_: str, limit: int) -> list[dict]:
    """Every page of GET /admin/margin?by=account, checked as it goes: account ids ascending
    across pages, `next_after` the page's last id, each page's totals its rows'."""
    rows: list[dict] = []
    after = 0
    while True:
        page = httpx.get(f"{relay.url}/admin/margin?{range_}&by=account&limit={limit}&after={after}",
                         headers={"Authorization": f"Bearer {ADMIN}"}).json()
        ids = [r["account_id"] for r in page["data"]]
        assert len(set(ids)) <= limit and ids == sorted(ids) and all(i > after for i in ids)
        assert page["page_totals"] == usd_totals(page["data"])
        rows += page["data"]
        if not page["has_more"]:
            assert page["next_after"] is None
            break
        assert page["next_after"] == ids[-1]
        after = ids[-1]
    return rows


def usd_totals(rows: list[dict]) -> dict[str, Any]:
    money = {k: format_usd(sum(int(Decimal(r[k]) * 10**9) for r in rows))
             for k in ("revenue_usd", "upstream_cost_usd", "margin_usd")}
    return {"requests": sum(r["requests"] for r in rows), **money}


def test_daily_margin_and_csv_routes(relay, make_account, capsys, cli_env) -> None:
    acct = make_account(balance="1")
    start = datetime(2026, 3, 1, 5, tzinfo=timezone.utc)
    rows = seed_records(relay, acct.id, 2_345, start)  # about 28 days, more than two CSV pages
    auth = {"Authorization": f"Bearer {acct.key}"}

    daily = httpx.get(relay.url + "/v1/usage/daily?from=2026-03-01&to=2026-03-31", headers=auth).json()
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in rows:
        cell = expected[(r["created_at"].date().isoformat(), r["model"])]
        u = r["usage"]
        cell[0] += 1
        cell[1] += r["status"] == "error"
        cell[2] += u["input_tokens"] + u["cached_input_tokens"]
        cell[3] += u["output_tokens"]
        cell[4] += r["cost_nanos"]
    got = {(d["day"], d["model"]): [d["requests"], d["errors"], d["input_tokens"], d["output_tokens"],
                                    int(Decimal(d["cost_usd"]) * 10**9)] for d in daily["data"]}
    assert got == dict(expected)
    assert daily["totals"]["requests"] == len(rows)
    assert Decimal(daily["totals"]["cost_usd"]) * 10**9 == sum(r["cost_nanos"] for r in rows)
    one_day = httpx.get(relay.url + "/v1/usage/daily?from=2026-03-02&to=2026-03-02&model=gpt-4o", headers=auth).json()
    assert [(d["day"], d["model"]) for d in one_day["data"]] == [("2026-03-02", "gpt-4o")]

    for bad in ("from=2026-13-01", "from=2026-03-05&to=2026-03-01", "to=yesterday", "from=2000-01-01&to=2026-01-01",
                "to=0001-01-05", "from=9999-12-31&to=9999-12-31", "from=2026-3-1"):
        answer = httpx.get(f"{relay.url}/v1/usage/daily?{bad}", headers=auth)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_range", bad

    margin = margin_by_account(relay, "from=2026-03-01&to=2026-03-31", limit=1)
    mine = {r["source"]: r for r in margin if r["account"] == acct.name}
    for source in ("pool", "byok"):
        billed = [r for r in rows if r["source"] == source and r["status"] != "error"]
        revenue = sum(r["cost_nanos"] for r in billed)
        upstream = sum(r["list_cost_nanos"] for r in billed) if source == "pool" else 0
        assert mine[source]["requests"] == len(billed)
        assert Decimal(mine[source]["revenue_usd"]) * 10**9 == revenue
        assert Decimal(mine[source]["margin_usd"]) * 10**9 == revenue - upstream

    for bad in ("by=key", "from=0001-01-01", "to=2026-02-30", "by=account&limit=0", "by=account&limit=1001",
                "by=account&after=-1", "by=account&after=x", "by=account&after=99999999999"):
        answer = httpx.get(f"{relay.url}/admin/margin?{bad}", headers={"Authorization": f"Bearer {ADMIN}"})
        assert answer.status_code == 400 and answer.json()["error"]["message"], bad
    # Relay-wide: March is long past, so it is read sealed (usage_daily_relay); twice, the same.
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for _ in range(2):
        relay_daily = httpx.get(relay.url + "/admin/usage/daily?from=2026-03-01&to=2026-03-31", headers=admin).json()
        assert {(d["day"], d["model"]): [d["requests"], d["errors"], d["input_tokens"], d["output_tokens"],
                                         int(Decimal(d["cost_usd"]) * 10**9)] for d in relay_daily["data"]} == dict(expected)
        by_model = httpx.get(relay.url + "/admin/margin?from=2026-03-01&to=2026-03-31&by=model", headers=admin).json()
        assert by_model["totals"] == usd_totals(margin)  # every page together: the range's totals
    one_account = httpx.get(f"{relay.url}/admin/usage/daily?account={acct.name}&from=2026-03-02&to=2026-03-02&model=gpt-4o",
                     headers=admin).json()
    assert one_account["data"] == one_day["data"] and one_account["totals"] == one_day["totals"]
    # Today is never sealed: a request now shows in the relay-wide day at once.
    today = datetime.now(timezone.utc).date().isoformat()
    before = httpx.get(f"{relay.url}/admin/usage/daily?from={today}&to={today}", headers=admin).json()["totals"]
    chat(relay, acct.key)
    for _ in range(100):  # settled (group commit may write the record a moment after the answer)
        if httpx.get(relay.url + "/v1/usage?limit=1", headers=auth).json()["totals"]["requests"] == len(rows) + 1:
            break
        time.sleep(0.05)
    after = httpx.get(f"{relay.url}/admin/usage/daily?from={today}&to={today}", headers=admin).json()["totals"]
    assert after["requests"] == before["requests"] + 1

    answer = httpx.get(relay.url + "/v1/usage?format=csv&since=2026-03-01&until=2026-04-01", headers=auth)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(answer.text)))
    newest_first = sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    assert [e["id"] for e in exported] == [r["id"] for r in newest_first]
    by_id = {r["id"]: r for r in rows}
    for e in exported:
        assert Decimal(e["cost_usd"]) * 10**9 == by_id[e["id"]]["cost_nanos"]
        assert int(e["input_tokens"]) == by_id[e["id"]]["usage"]["input_tokens"]
    assert httpx.get(relay.url + "/v1/usage?format=xml", headers=auth).status_code == 400

    out = relay_cli(capsys, "usage", acct.name, "--since", "2026-03-01", "--csv")
    since = httpx.get(relay.url + "/v1/usage?format=csv&since=2026-03-01", headers=auth).text
    assert len(since.splitlines()) == len(rows) + 2  # the header, March, and today's request
    assert out.replace("\r\n", "\n") == since.replace("\r\n", "\n")


def test_migration_rolls_up_existing_records(tmp_path) -> None:
    """Migration 0010 on a database that already has records: usage_daily holds their sums, and
    the trigger adds later records to the same rows."""
    from sqlalchemy import text

    from relay.db.engine import make_engine
    from relay.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'migrate.db'}"
    upgrade(url, "0009")
    engine = make_engine(url)
    insert_record = text("INSERT INTO usagerecord (id, account_id, route, model, provider, source, usage, cost_nanos, "
                         "list_cost_nanos, status, http_status, latency_ms, created_at) VALUES (:id, 1, 'chat', :model, "
                         "'openai', 'pool', :usage, :cost, 1, 'ok', 200, 5, :at)")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO account (id, name, tier, balance_nanos, held_nanos, created_at) "
                                "VALUES (1, 'm', 'starter', 0, 0, '2026-03-01 00:00:00')"))
        connection.execute(insert_record, [
            {"id": f"req_{i}", "model": "gpt-4o" if i % 2 else "gpt-4o-mini", "cost": 100 + i,
             "usage": json.dumps({"input_tokens": i, "cache_creation_tokens": 1, "output_tokens": 2}),
             "at": f"2026-03-0{1 + i % 3} 1{i % 10}:00:00.000000"} for i in range(30)])
    upgrade(url)
    with engine.begin() as connection:
        connection.execute(insert_record, {"id": "req_after", "model": "gpt-4o", "cost": 1000,
                                           "usage": json.dumps({"input_tokens": 7}), "at": "2026-03-02 23:59:59.000000"})
        rolled = {(str(r[0]), r[1]): tuple(r[2:]) for r in connection.execute(text(
            "SELECT day, model, requests, input_tokens, output_tokens, cost_nanos FROM usage_daily"))}
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for i in range(30):
        cell = expected[(f"2026-03-0{1 + i % 3}", "gpt-4o" if i % 2 else "gpt-4o-mini")]
        cell[0] += 1
        cell[1] += i + 1
        cell[2] += 2
        cell[3] += 100 + i
    after = expected[("2026-03-02", "gpt-4o")]
    after[0], after[1], after[3] = after[0] + 1, after[1] + 7, after[3] + 1000
    assert rolled == {k: tuple(v) for k, v in expected.items()}


def test_operator_pages_margin_by_account(relay, browser) -> None:  # noqa: F811
    """101 accounts with usage in May 2025 (and one with only errors, which bill nothing): the
    route answers them in keyset pages whose sums are the by-model totals, and the operator view
    shows 100 then, on "More accounts", the rest, in id order. Last in this file: the relay is
    shared by the session, and these accounts would push the operator test's account off the
    overview's first page."""
    tag = uuid.uuid4().hex[:6]
    made = [accounts.create_account(relay.state.engine, f"mpage-{tag}-{i:03}", "starter") for i in range(102)]
    start = datetime(2025, 5, 3, 12, tzinfo=timezone.utc)
    for i, account in enumerate(made):
        seed_records(relay, account.id, 3 if i < 101 else 10, start + timedelta(days=i % 20), errors=i == 101)
    names = [a.name for a in made[:101]]

    may = "from=2025-05-01&to=2025-05-31"
    rows = margin_by_account(relay, may, limit=7)
    assert [r["account"] for r in rows if r["account"].startswith(f"mpage-{tag}") and r["source"] == "pool"] == names
    assert made[101].name not in {r["account"] for r in rows}
    by_model = httpx.get(f"{relay.url}/admin/margin?{may}&by=model", headers={"Authorization": f"Bearer {ADMIN}"})
    assert by_model.json()["totals"] == usd_totals(rows)

    page, problems = open_console(browser, relay, ADMIN)
    page.wait_for_selector("body[data-view='operator']", timeout=15_000)
    page.fill("#margin-from", "2025-05-01")
    page.fill("#margin-to", "2025-05-31")
    page.click("#margin-range button[type=submit]")
    page.wait_for_selector("#margin-account[data-accounts='100']")
    assert page.is_visible("#margin-account-more")
    while page.is_visible("#margin-account-more"):
        shown = page.get_attribute("#margin-account", "data-accounts")
        page.click("#margin-account-more")
        page.wait_for_selector(f"#margin-account:not([data-accounts='{shown}'])")
    listed = page.locator("#margin-account tbody tr td:first-child").all_inner_texts()
    assert [n for n in dict.fromkeys(listed) if n.startswith(f"mpage-{tag}")] == names
    assert "more follow" not in page.inner_text("#margin-account tfoot")
    page.screenshot(path=str(ARTIFACTS / "console-operator-margin.png"), full_page=True)
    assert not problems, problems
    page.close()
