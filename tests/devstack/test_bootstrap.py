from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

from tests.conftest import as_user


def test_auth_uid_reads_claims_under_authenticated(db: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    with as_user(db, user) as conn:
        row = conn.execute(
            "select auth.uid() as uid, auth.role() as role, current_user as who"
        ).fetchone()
        assert row == {"uid": user, "role": "authenticated", "who": "authenticated"}
        claims = conn.execute("select auth.jwt() ->> 'sub' as sub").fetchone()
        assert claims == {"sub": str(user)}
    # Claims set with is_local=true end with the transaction.
    assert db.execute("select auth.uid() as uid").fetchone() == {"uid": None}


def test_realtime_send_stores_broadcast_rows(db: psycopg.Connection[Any]) -> None:
    topic = f"test:{uuid.uuid4()}"
    db.execute("select realtime.send(%s::jsonb, 'ping', %s, true)", (json.dumps({"a": 1}), topic))
    row = db.execute(
        "select payload, event, private, extension from realtime.messages where topic = %s",
        (topic,),
    ).fetchone()
    assert row == {"payload": {"a": 1}, "event": "ping", "private": True, "extension": "broadcast"}


def test_service_role_bypasses_rls(db: psycopg.Connection[Any]) -> None:
    row = db.execute("select rolbypassrls from pg_roles where rolname = 'service_role'").fetchone()
    assert row == {"rolbypassrls": True}
    pubs = db.execute("select pubname from pg_publication where pubname = 'supabase_realtime'")
    assert pubs.fetchone() == {"pubname": "supabase_realtime"}
