"""Issue #14: logs that never leak. Refused requests are visible to operators (one line each:
method, path, status, code), SQL errors carry no bound parameters, the dev key is never written to
stderr when stderr is not a terminal."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from relay.db.engine import make_engine
from tests.e2e.relay_server import ROOT


def test_a_4xx_is_logged_once_without_body_or_key(relay, account, caplog) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "secret-prompt"}], "max_tokens": -1}
    response = httpx.post(relay.url + "/v1/chat/completions?token=q-secret", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {account.key}"})
    assert response.status_code == 400
    request_id = response.headers["x-request-id"]
    # An inference route's 4xx is its relay.requests line alone (no second relay.http line).
    deadline = time.monotonic() + 5
    while not [r for r in caplog.records if r.name == "relay.requests" and request_id in r.getMessage()]:
        assert time.monotonic() < deadline, "no relay.requests line"
        time.sleep(0.05)
    [line] = [r.getMessage() for r in caplog.records if r.name == "relay.requests" and request_id in r.getMessage()]
    assert "http_status=400" in line and "error=invalid_request" in line
    assert not [r for r in caplog.records if r.name == "relay.http" and "/v1/chat/completions" in r.getMessage()]
    # A route without a request line (here /byok/credentials) keeps its relay.http line.
    bad = httpx.post(relay.url + "/byok/credentials?token=q-secret", json={"provider": "nope", "api_key": "k"},
                     headers={"Authorization": f"Bearer {account.key}"}, timeout=30)
    assert 400 <= bad.status_code < 500
    lines = [r.getMessage() for r in caplog.records if r.name == "relay.http"]
    assert any(l.startswith(f"POST /byok/credentials -> {bad.status_code} ") for l in lines), lines
    text_ = "\n".join(r.getMessage() for r in caplog.records if r.name in ("relay.http", "relay.requests"))
    assert account.key not in text_ and "secret-prompt" not in text_ and "q-secret" not in text_


def test_a_bad_admin_key_is_a_warning(relay, caplog) -> None:
    caplog.set_level(logging.INFO, logger="relay.http")
    httpx.get(relay.url + "/admin/pool", headers={"Authorization": "XXXXXXXadmin-test-key"})
    [record] = [r for r in caplog.records if r.name == "relay.http" and "/admin/pool" in r.getMessage()]
    assert record.levelno == logging.WARNING and "401 invalid_admin_key" in record.getMessage()
    assert "admin-test-key" not in record.getMessage()


def test_sql_errors_hide_their_parameters(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": "sk-secret-hash"})
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": "sk-secret-hash"})
    assert "sk-secret-hash" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)


def test_dev_key_never_reaches_a_redirected_stderr(tmp_path: Path) -> None:
    """No controlling terminal (a new session) and stderr to a file: the key goes to a 0600 file."""
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    script = ("from relay.db.migrate import upgrade; from relay.cli import seed_dev_account; "
              "from relay.settings import Settings; upgrade(%r); seed_dev_account(Settings(_env_file=None))" % url)
    env = {**os.environ, "RELAY_DATABASE_URL": url, "RELAY_ENV": "dev", "RELAY_SECRET_KEY": "k",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          start_new_session=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sk-rr-" not in done.stderr + done.stdout
    assert ".relay-dev-key" in done.stderr
    key_file = tmp_path / ".relay-dev-key"
    assert key_file.read_text().startswith("sk-rr-") and key_file.stat().st_mode & 0o777 == 0o600
