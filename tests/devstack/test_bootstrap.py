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


def test_realtime_send_fails_soft_as_on_supabase(db: psycopg.Connection[Any]) -> None:
    notices: list[str] = []
    db.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    with db.transaction(force_rollback=True):
        db.execute("set local role anon")  # may not insert into realtime.messages
        db.execute("select realtime.send('{}'::jsonb, 'ping', 'test:soft', true)")
    assert any(n.startswith("ErrorSendingBroadcastMessage") for n in notices)


def test_realtime_messages_are_partitioned_by_day(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        "select count(*) as n from pg_inherits where inhparent = 'realtime.messages'::regclass"
    ).fetchone()
    assert row and row["n"] >= 4
    key = db.execute("select pg_get_partkeydef('realtime.messages'::regclass) as k").fetchone()
    assert key == {"k": "RANGE (inserted_at)"}


def test_roles_are_those_of_a_supabase_project(db: psycopg.Connection[Any]) -> None:
    roles = {
        r["rolname"]: (r["rolsuper"], r["rolbypassrls"])
        for r in db.execute(
            "select rolname, rolsuper, rolbypassrls from pg_roles where rolname in"
            " ('supabase_admin', 'postgres', 'anon', 'authenticated', 'service_role')"
        )
    }
    assert roles == {
        "supabase_admin": (True, True), "postgres": (False, True), "anon": (False, False),
        "authenticated": (False, False), "service_role": (False, True),
    }  # fmt: skip
    owners = {
        r["t"]: r["owner"]
        for r in db.execute(
            "select c.oid::regclass::text as t, pg_get_userbyid(c.relowner) as owner"
            " from pg_class c where c.oid in ('auth.users'::regclass,"
            " 'storage.objects'::regclass, 'realtime.messages'::regclass)"
        )
    }
    assert owners == {
        "auth.users": "supabase_auth_admin", "storage.objects": "supabase_storage_admin",
        "realtime.messages": "supabase_realtime_admin",
    }  # fmt: skip
    rls = db.execute(
        "select bool_and(relrowsecurity) as on from pg_class"
        " where oid in ('storage.buckets'::regclass, 'storage.objects'::regclass)"
    ).fetchone()
    assert rls == {"on": True}


def test_service_role_bypasses_rls(db: psycopg.Connection[Any]) -> None:
    row = db.execute("select rolbypassrls from pg_roles where rolname = 'service_role'").fetchone()
    assert row == {"rolbypassrls": True}
    pubs = db.execute("select pubname from pg_publication where pubname = 'supabase_realtime'")
    assert pubs.fetchone() == {"pubname": "supabase_realtime"}
