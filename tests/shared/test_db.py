"""The Postgres facade: a pooled connection that died is replaced without failing the call;
database refusals map to clear HTTP answers."""

from __future__ import annotations

import psycopg
import pytest

from shared.db import Database, DatabaseUnavailable, refusal


def test_a_connection_killed_while_idle_is_replaced(
    pg_admin_url: str, app_database_url: str
) -> None:
    db = Database(app_database_url, pool_size=1, timeout=5)
    try:
        pid = db.value("select pg_backend_pid()")  # the pool's only connection
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:  # as if Postgres restarted
            conn.execute("select pg_terminate_backend(%s, 5000)", (pid,))
        assert db.value("select pg_backend_pid()") != pid  # replaced, and no error
    finally:
        db.close()


def test_the_functions_run_under_a_statement_timeout(app_database_url: str) -> None:
    """The login role carries the timeout (set as README's setup does); a statement past it is
    cancelled and answered like an unavailable database (503: the caller retries)."""
    db = Database(app_database_url, pool_size=1, timeout=5)
    try:
        assert db.value("select current_setting('statement_timeout')") == "10s"
        db.value("select set_config('statement_timeout', '50ms', false)")  # pool of one
        with pytest.raises(DatabaseUnavailable, match="statement timeout"):
            db.value("select pg_sleep(5)")
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
