"""Hypothesis strategies for the fuzz suite (tests/e2e/test_fuzz.py, scripts/fuzz.py): requests
over every route of the relay, with valid and invalid auth, malformed JSON, wrong types, huge
ints, deep nesting, odd unicode and wrong content types; and the checks every answer must pass."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlencode
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st

# --- what a request is -----------------------------------------------------------------------------


@dataclass
class Target:
    """What the fuzz may touch: its own account, key and credentials, never the suite's others."""

    key: str  # a valid sk-rr- key of the fuzz account (balance, credentials)
    admin_key: str
    account: str  # the account admin actions may change (not the key's: its limits must hold)
    key_ids: list[int]  # sacrificial api key ids admin DELETE may revoke
    pool_ids: list[int]  # sacrificial pool credentials admin DELETE may remove
    byok_ids: list[int]
    emulator_url: str


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, bytes] = field(default_factory=dict)
    body: bytes | None = None

    def describe(self) -> str:
        body = (self.body or b"")[:300]
        return f"{self.method} {self.path[:200]} headers={sorted(self.headers)} body={body!r}"


# --- JSON values -----------------------------------------------------------------------------------

ODD_TEXT = ["", " ", "\u0000", "a\u0000b", "\u202e", "\u202egnp.exe", "\ufeff", "\ud7ff", "ключ", "名前",
            "😀" * 3, "<script>alert(1)</script>", "'; DROP TABLE account; --", "%s%n", "\r\nX-Injected: 1",
            "1_000", "NaN", "Infinity", "-1", "1e400", "0x10", "9" * 40, "x" * 10_000, "true", "null"]
HUGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**63) - 1]

odd_text = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=12))
huge_int = st.one_of(st.sampled_from(HUGE_INTS), st.integers())
scalar = st.one_of(st.none(), st.booleans(), huge_int, st.floats(allow_nan=False, allow_infinity=False),
                   odd_text)
json_value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(odd_text, inner, max_size=4)),
                          max_leaves=6)


NUMERIC_FIELDS = ["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "dimensions", "temperature",
                  "rpm", "tpm", "amount_usd", "id", "top_k", "seed"]
MODELS = ["gpt-4o-mini", "claude-haiku-4-5", "claude-sonnet-latest", "text-embedding-3-small", "gpt-image-2",
          "gpt-4o-2024-11-20", "nope", "", "GPT-4O-MINI"]


def dumps(value: Any) -> bytes:
    """JSON text, big integers included (orjson stops at 64 bits; the relay must not)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def deep(depth: int) -> str:
    return "[" * depth + '"x"' + "]" * depth


# --- bodies per route ------------------------------------------------------------------------------

def templates(target: Target) -> dict[str, dict[str, Any]]:
    """A valid body for each kind of JSON route: the fuzz mutates one field at a time."""
    user = {"role": "user", "content": "hi"}
    return {
        "chat": {"model": "gpt-4o-mini", "messages": [user], "max_tokens": 5},
        "embeddings": {"model": "text-embedding-3-small", "input": "hello"},
        "images": {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024"},
        "image_edit": {"model": "gpt-image-2", "prompt": "x", "images": [{"image_url": "https://e.x/a.png"}]},
        "messages": {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [user]},
        "count_tokens": {"model": "claude-haiku-4-5", "messages": [user]},
        "responses": {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 5},
        "byok": {"provider": "openai", "api_key": "sk-fuzz-byok-0001", "base_url": target.emulator_url + "/v1"},
        "pool": {"provider": "openai", "api_key": "sk-fuzz-pool-0001", "base_url": target.emulator_url + "/v1"},
        "account": {"name": "fuzz-acct", "tier": "starter"},
        "tier": {"tier": "professional"},
        "limits": {"rpm": 100, "tpm": "none"},
        "key": {"label": "fuzz", "budget_usd": "5", "budget_period": "day", "models": ["gpt-4o-mini"], "rpm": 10},
        "key_controls": {"budget_usd": "1", "budget_period": "week", "models": "gpt-4o-mini", "tpm": "none"},
        "hold_policy": {"policy": "adaptive", "overdraft_usd": "2"},
        "alert": {"low_balance_usd": "1"},
        "topup": {"amount_usd": "0.01", "note": "fuzz"},
        "delete": {"id": 1},
    }


@st.composite
def json_body(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    """The template, with up to three fields replaced, dropped or added; or not JSON at all."""
    kind = draw(st.sampled_from(["mutate"] * 6 + ["valid", "malformed", "deep", "not_object", "messages_deep",
                                                  "numbers", "numbers", "model"]))
    if kind == "valid":
        return orjson.dumps(template)
    if kind == "numbers":  # a numeric field at the edges of every integer type
        field_ = draw(st.sampled_from(NUMERIC_FIELDS))
        return dumps({**template, field_: draw(st.one_of(st.sampled_from(HUGE_INTS), st.sampled_from(
            [1.5, -0.0, 1e308, "5", True, None]), st.integers()))})
    if kind == "model":  # the body of one endpoint with the model of another provider or mode
        return dumps({**template, "model": draw(st.sampled_from(MODELS))})
    if kind == "malformed":
        text = orjson.dumps(template)
        return draw(st.one_of(st.just(text[: draw(st.integers(0, max(len(text) - 1, 0)))]),
                              st.binary(max_size=60), st.just(b"\xff\xfe{}"), st.just(b'{"a": "\\ud800"}'),
                              st.just(b'{"model": 1e400}'), st.just(b"")))
    if kind == "deep":
        return ('{"model": "gpt-4o-mini", "messages": %s}' % deep(draw(st.sampled_from([63, 65, 200, 1000, 1100])))
                ).encode()
    if kind == "messages_deep":
        content = deep(draw(st.sampled_from([10, 60, 1000])))
        return ('{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": '
                '[{"type": "tool_result", "content": %s}]}]}' % content).encode()
    if kind == "not_object":
        return dumps(draw(st.one_of(st.lists(scalar, max_size=3), scalar)))
    body = dict(template)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*body, *template, "stream", "n", "dimensions", "verify", "extra"]))
        action = draw(st.sampled_from(["replace", "replace", "drop", "list"]))
        if action == "drop":
            body.pop(name, None)
        elif action == "list":
            body[name] = draw(st.lists(json_value, max_size=3))
        else:
            body[name] = draw(json_value)
    return dumps(body)


# --- routes ----------------------------------------------------------------------------------------

INFERENCE = {"/chat/completions": "chat", "/embeddings": "embeddings", "/images/generations": "images",
             "/images/edits": "image_edit", "/messages": "messages", "/messages/count_tokens": "count_tokens",
             "/responses": "responses"}
ID_TEXT = ["0", "-1", "2147483647", "2147483648", "abc", "9" * 25, "9" * 5000, "9223372036854775807", "9223372036854775808",
           "%00", "1.5", "١٢", "resp_abc", "x" * 300]


_ID_TEXT = st.one_of(st.sampled_from(ID_TEXT), st.integers(10**12, 2**70).map(str))
_QUERY_VALUE = st.one_of(st.sampled_from(ID_TEXT + ["2026-01-01", "2026-01-01T00:00:00+14:00", "0001-01-01",
                                                    "9999-12-31T23:59:59-12:00", "", "yesterday"]), odd_text)


def some_id(mine: list[int]) -> st.SearchStrategy[str]:
    """An id for a DELETE: one the fuzz owns, one that cannot exist, or not an id at all."""
    return st.one_of(_ID_TEXT, st.sampled_from(mine).map(str)) if mine else _ID_TEXT


def query(draw: st.DrawFn, names: list[str]) -> str:
    """A query string of up to three of `names`, with dates, ids and odd text as values."""
    pairs = draw(st.lists(st.tuples(st.sampled_from(names), _QUERY_VALUE), max_size=3))
    return ("?" + urlencode(pairs)) if pairs else ""


@st.composite
def route(draw: st.DrawFn, target: Target) -> tuple[str, str, str | None]:
    """(method, path, body template name or None)."""
    area = draw(st.sampled_from(["inference"] * 4 + ["models", "usage", "responses", "byok", "admin"] * 2
                                + ["unknown"]))
    prefix = draw(st.sampled_from(["/v1", "/byok/v1"]))
    if area == "inference":
        path = draw(st.sampled_from(sorted(INFERENCE)))
        return "POST", prefix + path + draw(st.sampled_from(["", "", "?beta=true"])), INFERENCE[path]
    if area == "models":
        tail = draw(st.sampled_from(["", "/gpt-4o-mini", "/claude-sonnet-latest", "/nope", "/" + "m" * 500,
                                     "/%E2%80%AE", "/a/b/c"]))
        return "GET", prefix + "/models" + tail + query(draw, ["limit", "after_id", "before_id", "lifecycle"]), None
    if area == "usage":
        tail = draw(st.sampled_from(["/usage", "/usage", "/usage/daily", "/limits", "/key"]))
        return "GET", prefix + tail + query(draw, ["since", "until", "limit", "after", "model", "format", "from",
                                                   "to", "days"]), None
    if area == "responses":
        rid = draw(st.sampled_from(ID_TEXT))
        method, tail = draw(st.sampled_from([("GET", ""), ("DELETE", ""), ("GET", "/input_items")]))
        return method, f"{prefix}/responses/{rid}{tail}" + query(draw, ["limit", "after", "order"]), None
    if area == "byok":
        which = draw(st.sampled_from(["list", "add", "add", "delete", "delete_q", "delete_body", "verify"]))
        cid = draw(some_id(target.byok_ids)) if which in ("delete", "delete_q", "verify") else ""
        return {"list": ("GET", "/byok/credentials", None), "add": ("POST", "/byok/credentials", "byok"),
                "delete": ("DELETE", f"/byok/credentials/{cid}", None),
                "delete_q": ("DELETE", f"/byok/credentials?id={cid}", None),
                "delete_body": ("DELETE", "/byok/credentials", "delete"),
                "verify": ("POST", f"/byok/credentials/{cid}/verify", None)}[which]
    if area == "admin":
        return draw(admin_route(target))
    return draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])), draw(st.sampled_from(
        ["/nope", "/v2/chat/completions", "/admin", "/byok", "/v1/chat/completions/x", "/%00"])), None


@st.composite
def admin_route(draw: st.DrawFn, target: Target) -> tuple[str, str, str | None]:
    name = draw(st.one_of(st.just(target.account), st.sampled_from(["nobody", "x" * 300, "%E2%80%AE", "a%00b"])))
    accounts = f"/admin/accounts/{name}"
    # Lazily drawn: only the chosen route's ids and query strings cost generation time.
    choices = [
        ("GET", lambda: "/admin/accounts" + query(draw, ["limit", "after"]), None),
        ("POST", lambda: "/admin/accounts", "account"),
        ("GET", lambda: accounts, None),
        ("PUT", lambda: accounts + "/tier", "tier"),
        ("PUT", lambda: accounts + "/limits", "limits"),
        ("GET", lambda: accounts + "/keys", None),
        ("POST", lambda: accounts + "/keys", "key"),
        ("DELETE", lambda: f"/admin/keys/{draw(some_id(target.key_ids))}", None),
        ("GET", lambda: f"/admin/keys/{draw(some_id(target.key_ids))}", None),
        ("PATCH", lambda: f"/admin/keys/{draw(some_id(target.key_ids))}", "key_controls"),
        ("PUT", lambda: accounts + "/hold-policy", "hold_policy"),
        ("PUT", lambda: accounts + "/alert", "alert"),
        ("GET", lambda: draw(st.sampled_from(["/admin/usage/daily", "/admin/margin", "/admin/overview",
                                              "/admin/stats/live"]))
         + query(draw, ["from", "to", "days", "by", "limit", "after", "name"]), None),
        ("GET", lambda: accounts + "/balance", None),
        ("POST", lambda: accounts + "/topup", "topup"),
        ("GET", lambda: accounts + "/usage" + query(draw, ["since"]), None),
        ("GET", lambda: "/admin/pool", None),
        ("POST", lambda: "/admin/pool", "pool"),
        ("DELETE", lambda: f"/admin/pool/{draw(some_id(target.pool_ids))}", None),
        ("GET", lambda: accounts + "/byok", None),
        ("POST", lambda: accounts + "/byok", "byok"),
        ("DELETE", lambda: f"{accounts}/byok/{draw(some_id(target.byok_ids))}", None),
    ]
    method, path, template = draw(st.sampled_from(choices))
    return method, path(), template


@st.composite
def auth_headers(draw: st.DrawFn, target: Target, admin: bool) -> dict[str, bytes]:
    good = target.admin_key if admin else target.key
    choice = draw(st.sampled_from(["good"] * 12 + ["x-api-key", "none", "wrong", "scheme", "odd", "other"]))
    value = {
        "good": f"Bearer {good}", "none": None, "wrong": "Bearer sk-rr-" + "A" * 43,
        "scheme": "XXXXXXX" + good, "other": f"Bearer {target.key if admin else target.admin_key}",
        "odd": draw(st.sampled_from(["Bearer \u00e9\u00ff", "Bearer", "bearer x", "Bearer sk-rr-\u00a0x", "Basic Zm9v"])),
    }.get(choice)
    headers: dict[str, bytes] = {}
    if choice == "x-api-key":
        headers["x-api-key"] = good.encode()
    elif value is not None:
        headers["authorization"] = value.encode("latin-1")
    if draw(st.booleans()):
        headers["anthropic-version"] = b"2023-06-01"
    return headers


CONTENT_TYPES = [b"application/json"] * 8 + [b"application/json; charset=utf-8", b"text/plain",
                                             b"application/x-www-form-urlencoded", b"multipart/form-data",
                                             b"multipart/form-data; boundary=zz", b"application/vnd.api+json",
                                             b"\xe9/\xff", None]


@st.composite
def requests(draw: st.DrawFn, target: Target) -> Req:
    method, path, template = draw(route(target))
    headers = draw(auth_headers(target, path.startswith("/admin")))
    body = None
    if template is not None:
        body = draw(json_body(templates(target)[template]))
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type is not None:
            headers["content-type"] = content_type
    elif method in ("POST", "PUT", "DELETE") and draw(st.booleans()):
        body = draw(st.binary(max_size=30))
    return Req(method, path, headers, body)


# --- checks ----------------------------------------------------------------------------------------

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
SQL_LEAK = re.compile(r"\[parameters: |\[SQL: |sqlalchemy\.|sqlite3\.|psycopg\.")
RELAY_KEY = re.compile(r"sk-rr-[A-Za-z0-9_-]{20,}")


def problems(req: Req, status: int, body: str, secrets: list[str]) -> list[str]:
    """What is wrong with one answer (empty when nothing is)."""
    found = []
    if status >= 500:
        found.append(f"{status}")
    if TRACEBACK.search(body):
        found.append("traceback in body")
    if SQL_LEAK.search(body):
        found.append("SQL text or parameters in body")
    # POST /admin/accounts/{name}/keys answers its new key: that one is the answer, not a leak.
    minted = req.method == "POST" and req.path.startswith("/admin/") and req.path.endswith("/keys")
    if not minted and RELAY_KEY.search(body):
        found.append("an sk-rr- key in body")
    found += [f"secret {s[:10]}… in body" for s in secrets if s in body]
    return found


class Capture(logging.Handler):
    """Every log record of the run, formatted with its traceback, for the leak checks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is itself worth reporting
            text = repr(record.msg)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.levelname} {record.name} {text}")


def log_problems(lines: list[str], secrets: list[str]) -> list[str]:
    found = []
    for line in lines:
        if TRACEBACK.search(line):
            found.append(f"traceback in log: {line[:300]}")
        if SQL_LEAK.search(line) and "hidden due to hide_parameters" not in line:
            found.append(f"SQL in log: {line[:300]}")
        if RELAY_KEY.search(line) or any(s in line for s in secrets):
            found.append(f"secret in log: {line[:120]}")
    return found


_ANTHROPIC_PATH = re.compile(r"/v1/messages(/|$|\?)")


def shape_problem(req: Req, status: int, body: str) -> str | None:
    """A 4xx must be in its route's protocol shape: Anthropic's on /v1/messages* (and the model
    list for Anthropic callers), OpenAI's (the relay's own) everywhere else."""
    if not 400 <= status < 500 or status == 499:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"{status} body is not JSON"
    anthropic = bool(_ANTHROPIC_PATH.search(req.path)) or (
        "/models" in req.path and ("anthropic-version" in req.headers or "x-api-key" in req.headers))
    if anthropic:
        ok = isinstance(parsed, dict) and parsed.get("type") == "error" and {"type", "message"} <= set(parsed["error"])
    else:
        ok = isinstance(parsed, dict) and isinstance(parsed.get("error"), dict) and "message" in parsed["error"]
    return None if ok else f"{status} not in {'Anthropic' if anthropic else 'OpenAI'} shape: {body[:200]}"
