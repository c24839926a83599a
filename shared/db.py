"""Postgres access for the functions: one small pool per instance, one SQL function per call.

Every hot path is a SQL function (see supabase/migrations), so the code here only calls them.
Prepared statements are off so the Supabase pooler in transaction mode works. `round_trips`
counts every statement sent, for tests and benchmarks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout


class DatabaseUnavailable(RuntimeError):
    """Postgres could not be reached in time; callers answer 503 so the sender retries."""


# What a refusal by the database means for the caller of an HTTP function (SQLSTATE, or its
# two-character class). Anything else is treated as the database being unwell: 503, retry.
_REFUSALS = {
    "42501": (403, "forbidden"),  # insufficient_privilege
    "P0002": (404, "not_found"),  # no_data_found, raised by our functions
    "22": (422, "invalid_value"),  # data exception (bad text, number out of range, NUL byte)
    "23": (409, "conflict"),  # integrity constraint violation
}


def refusal(exc: psycopg.Error) -> tuple[int, str]:
    """(HTTP status, error code) for a database error; client-side data errors count as 22."""
    state = exc.sqlstate or ("22000" if isinstance(exc, psycopg.DataError) else "")
    return _REFUSALS.get(state) or _REFUSALS.get(state[:2]) or (503, "unavailable")


class Database:
    def __init__(self, url: str, pool_size: int = 4, timeout: float = 5.0) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            kwargs={
                "autocommit": True,
                "prepare_threshold": None,
                "connect_timeout": max(1, round(timeout)),
            },
            open=False,
            name="functions",
        )
        self._opened = False
        self._lock = threading.Lock()
        self.round_trips = 0

    def _ensure_open(self) -> None:
        if not self._opened:
            with self._lock:
                if not self._opened:
                    self._pool.open(wait=False)
                    self._opened = True

    def value(self, query: str, params: tuple[Any, ...] = (), *, actor: str | None = None) -> Any:
        """Run one statement and return the first column of its first row (or None).

        With `actor` (a user id from a verified token) the statement runs in a transaction with
        that user in `request.jwt.claims`, as Supabase's Data API runs it, so the audit
        triggers name who acted.

        A pooled connection that died (Postgres or the pooler restarted while it sat idle) is
        replaced and the statement tried once more on a fresh one: every statement we send is
        safe to repeat (ingest dedups by sid, commit_reply refuses a turn already answered)."""
        self._ensure_open()
        for attempt in (1, 2):
            try:
                with self._pool.connection() as conn:
                    with self._lock:
                        self.round_trips += 1
                    try:
                        if actor is None:
                            row = conn.execute(query.encode(), params).fetchone()
                        else:
                            with conn.transaction():
                                conn.execute(
                                    "select set_config('request.jwt.claims', %s, true)",
                                    (json.dumps({"sub": actor, "role": "authenticated"}),),
                                )
                                row = conn.execute(query.encode(), params).fetchone()
                    except psycopg.OperationalError:
                        if attempt == 1 and conn.broken:
                            continue  # the pool discards the broken connection
                        raise
                return None if row is None else row[0]
            except (PoolTimeout, psycopg.OperationalError) as exc:
                raise DatabaseUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction, for the few multi-statement paths."""
        self._ensure_open()
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._pool.close()
