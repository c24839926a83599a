"""Shared fixtures: one real Postgres and one real Redis (behind the Upstash bridge) per session."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devstack import postgres, redis_server
from devstack.migrations import prepare_database
from devstack.upstash_bridge import UpstashBridge

APP_ROLE = "assistant_fn_test"
UPSTASH_TOKEN = "dev-upstash-token"


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres.server() as admin_url:
        yield admin_url


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with the Supabase bootstrap and every migration applied (owner URL)."""
    with postgres.fresh_database(pg_admin_url, prefix="test") as url:
        prepare_database(url)
        yield url


@pytest.fixture(scope="session")
def app_database_url(pg_admin_url: str, database_url: str) -> str:
    """What the functions use: a login role that only has assistant_functions' privileges."""
    postgres.ensure_login_role(pg_admin_url, APP_ROLE, "assistant_functions", "dev-password")
    return postgres.with_params(database_url, user=APP_ROLE, password="dev-password")


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An owner connection in autocommit for arranging and checking data."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_pool() -> Iterator[Any]:
    with redis_server.server() as pool:
        yield pool


@pytest.fixture(scope="session")
def upstash_bridge(redis_pool: Any) -> Iterator[UpstashBridge]:
    bridge = UpstashBridge(redis_pool, UPSTASH_TOKEN).start()
    yield bridge
    bridge.stop()


@contextmanager
def as_user(
    conn: psycopg.Connection[Any], user_id: uuid.UUID | str | None, role: str = "authenticated"
) -> Iterator[psycopg.Connection[Any]]:
    """Run inside a transaction as Supabase's API would: role switched, JWT claims set."""
    claims = {"role": role} if user_id is None else {"sub": str(user_id), "role": role}
    with conn.transaction(force_rollback=True):
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute(psycopg.sql.SQL("set local role {}").format(psycopg.sql.Identifier(role)))
        yield conn
