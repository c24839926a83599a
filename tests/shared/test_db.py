"""The Postgres facade: a pooled connection that died is replaced without failing the call;
database refusals map to clear HTTP answers."""

from __future__ import annotations

import psycopg
import pytest

from devstack import postgres
from shared.db import Database, DatabaseUnavailable, refusal
from tests.conftest import APP_ROLE


def test_a_connection_killed_while_idle_is_replaced(
    pg_admin_url: str, database_url: str, app_database_url: str
) -> None:
    db = Database(app_database_url, pool_size=1, timeout=5)
    try:
        assert db.value("select 1") == 1
        name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        admin = postgres.with_params(pg_admin_url, dbname=str(name))
        with psycopg.connect(admin, autocommit=True) as conn:  # Postgres restarts, as it were
            killed = conn.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where usename = %s and datname = %s",
                (APP_ROLE, name),
            ).fetchone()
        assert killed and killed[0] >= 1
        assert db.value("select 2") == 2  # the dead connection was replaced, no error
    finally:
        db.close()


def test_an_unreachable_database_is_unavailable() -> None:
    db = Database("postgresql://nobody@127.0.0.1:9/none", pool_size=1, timeout=1)
    try:
        with pytest.raises(DatabaseUnavailable):
            db.value("select 1")
    finally:
        db.close()


@pytest.mark.parametrize(
    ("error", "answer"),
    [
        (psycopg.errors.InsufficientPrivilege(), (403, "forbidden")),
        (psycopg.errors.NoDataFound(), (404, "not_found")),
        (psycopg.errors.InvalidTextRepresentation(), (422, "invalid_value")),
        (psycopg.DataError("NUL bytes"), (422, "invalid_value")),
        (psycopg.errors.UniqueViolation(), (409, "conflict")),
        (psycopg.errors.DeadlockDetected(), (503, "unavailable")),
    ],
)
def test_refusals_map_to_clear_answers(error: psycopg.Error, answer: tuple[int, str]) -> None:
    assert refusal(error) == answer
