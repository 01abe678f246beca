"""The real PostgreSQL and Redis the suite runs against. Without CI a missing service skips the
tests that need it; with CI set they fail, so a green CI always means they ran."""

from __future__ import annotations

import os

import pytest

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: required services must be running)")
    pytest.skip(reason)


def postgres_url() -> str:
    url = os.environ.get("RELAY_TEST_DATABASE_URL") or DEFAULT_PG
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001
        unavailable(f"PostgreSQL unreachable at {url}: {exc}")
    return url


def redis_url() -> str:
    url = os.environ.get("RELAY_TEST_REDIS_URL") or DEFAULT_REDIS
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"Redis unreachable at {url}: {exc}")
    return url


def reset_postgres(url: str) -> None:
    """An empty public schema, so migrations run from scratch."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
