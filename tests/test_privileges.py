"""Privileges as a Supabase project created today enforces them, tested in the database:
explicit grants, a functions' role that cannot escalate, read-only Realtime, tenant integrity,
and the database lint that keeps future migrations to these rules."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from devstack.db_lint import lint
from tests import factories as f
from tests.conftest import as_user

# Everything an API role may do with each table (table-level privileges; UPDATE/INSERT with
# their columns). Anything else found in the catalog fails the test.
GRANTS: dict[str, dict[str, set[str]]] = {
    "tenants": {"authenticated": {"SELECT", "UPDATE(name,retention_days,settings)"}},
    "tenant_members": {
        "authenticated": {"SELECT", "INSERT(role,tenant_id,user_id)", "UPDATE(role)", "DELETE"}
    },
    "advisors": {
        "authenticated": {
            "SELECT",
            "DELETE",
            "INSERT(is_active,name,phone_number,settings,tenant_id,twilio_phone_number,user_id)",
            "UPDATE(is_active,name,phone_number,settings,twilio_phone_number,user_id)",
        }
    },
    "conversations": {
        "authenticated": {
            "SELECT",
            "UPDATE(ai_attention,ai_disabled_at,audio_available,human_override_until,"
            "needs_human,status,unread_count)",
        }
    },
    "messages": {"authenticated": {"SELECT"}},
    "ai_runs": {"authenticated": {"SELECT"}},
    "advisor_alerts": {"authenticated": {"SELECT"}},
    "advisor_activity": {"authenticated": {"SELECT"}},
    "audit_events": {"authenticated": {"SELECT"}},
    "erasure_requests": {},
    "knowledge_sources": {"authenticated": {"SELECT"}},
    "knowledge_chunks": {"authenticated": {"SELECT"}},
    "knowledge_terms": {},
    "unrouted_messages": {},
    "early_status_callbacks": {},
    "send_requests": {},
}

_ACTUAL = """
with tables as (
  select g.table_name as t, g.grantee as r, g.privilege_type as p
  from information_schema.role_table_grants g
  where g.table_schema = 'public' and g.grantee in ('anon', 'authenticated', 'service_role')
),
columns as (
  select g.table_name as t, g.grantee as r,
    g.privilege_type || '(' || string_agg(g.column_name, ',' order by g.column_name) || ')' as p
  from information_schema.role_column_grants g
  where g.table_schema = 'public' and g.grantee in ('anon', 'authenticated', 'service_role')
    and g.privilege_type in ('INSERT', 'UPDATE')
    and not exists (select 1 from tables x where x.t = g.table_name and x.r = g.grantee
                    and x.p = g.privilege_type)
  group by 1, 2, g.privilege_type
)
select t, r, p from tables union all select t, r, p from columns
"""


def test_api_roles_hold_exactly_the_documented_grants(db: psycopg.Connection[Any]) -> None:
    actual: dict[str, dict[str, set[str]]] = {t: {} for t in GRANTS}
    for row in db.execute(_ACTUAL):
        actual.setdefault(row["t"], {}).setdefault(row["r"], set()).add(row["p"])
    assert actual == GRANTS


def test_the_schema_passes_the_database_lint(db: psycopg.Connection[Any]) -> None:
    assert lint(db) == []


def test_the_lint_catches_a_migration_that_forgets_the_rules(db: psycopg.Connection[Any]) -> None:
    throwaway = """
      create table public.lint_probe (id integer primary key);
      grant all on public.lint_probe to authenticated;
      create table public.lint_forgotten (id integer primary key);
      alter table public.lint_forgotten enable row level security;
      create function public.lint_probe_fn() returns integer
        language sql security definer as 'select 1';
    """
    with db.transaction(force_rollback=True):
        db.execute(throwaway)
        findings = lint(db)
    assert "rls_disabled: public.lint_probe" in findings
    assert "no_grant_decision: public.lint_forgotten" in findings
    assert {"dangerous_privilege: public.lint_probe authenticated TRUNCATE",
            "dangerous_privilege: public.lint_probe authenticated TRIGGER",
            "dangerous_privilege: public.lint_probe authenticated REFERENCES"} <= set(findings)  # fmt: skip
    assert "mutable_search_path: lint_probe_fn()" in findings
    assert "function_exposed: lint_probe_fn()" in findings
    assert "security_definer_exposed: lint_probe_fn()" in findings
    assert lint(db) == []  # rolled back


ESCALATIONS = [
    "create function public.evil() returns trigger language plpgsql as 'begin return new; end'",
    "create function private.evil() returns integer language sql as 'select 1'",
    "create table public.evil (id integer)",
    "create schema evil",
    "create trigger evil before insert on public.messages for each row"
    " execute function suppress_redundant_updates_trigger()",
    "truncate public.tenant_members",
    "alter table public.messages add column evil integer",
    "alter table public.messages disable row level security",
    "select * from auth.users",
    "select * from public.tenant_members",
    "select * from public.messages",
    "select * from realtime.messages",
    "select * from storage.objects",
    "insert into public.tenant_members (tenant_id, user_id, role)"
    " select tenant_id, user_id, 'admin' from public.tenant_members limit 1",
    "set role authenticated",
    "set role service_role",
    "set role postgres",
    "set role anon",
    "alter role current_user bypassrls",
]


@pytest.mark.parametrize("statement", ESCALATIONS)
def test_functions_login_role_cannot_escalate(app_database_url: str, statement: str) -> None:
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
        member_of = conn.execute(
            "select array_agg(b.rolname order by b.rolname) from pg_auth_members m"
            " join pg_roles b on b.oid = m.roleid where m.member = current_user::regrole"
        ).fetchone()
    assert member_of == (["assistant_functions"],)


def test_advisor_cannot_publish_to_realtime(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    for key in ("a", "c"):
        topic = f"advisor:{w.advisors[key]['id']}"
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege),
            as_user(db, w.users["advisor_a"]) as conn,
        ):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            conn.execute(
                "insert into realtime.messages (topic, extension, payload, event, private)"
                " values (%s, 'broadcast', %s, 'INSERT', true)",
                (topic, json.dumps({"fake": True})),
            )


def test_realtime_rows_are_read_only_on_their_own_topic(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    mine, other = (f"advisor:{w.advisors[k]['id']}" for k in ("a", "b"))
    with as_user(db, w.users["advisor_a"]) as conn:
        conn.execute("select set_config('realtime.topic', %s, true)", (mine,))
        seen = {r["topic"] for r in conn.execute("select topic from realtime.messages")}
        assert seen == {mine}  # joined to my topic: only my topic's rows, never b's
        assert conn.execute(
            "select count(*) as n from realtime.messages where topic = %s", (other,)
        ).fetchone() == {"n": 0}
        conn.execute("select set_config('realtime.topic', %s, true)", (other,))
        assert conn.execute("select count(*) as n from realtime.messages").fetchone() == {"n": 0}


def test_admin_cannot_point_an_advisor_at_another_tenants_user(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    with pytest.raises(psycopg.errors.CheckViolation), as_user(db, w.users["admin1"]) as conn:
        conn.execute(
            "update advisors set user_id = %s where id = %s",
            (w.users["advisor_c"], w.advisors["a"]["id"]),
        )
    outsider = f.user(db)
    with pytest.raises(psycopg.errors.CheckViolation), as_user(db, w.users["admin1"]) as conn:
        conn.execute(
            "insert into advisors (tenant_id, user_id, name, twilio_phone_number)"
            " values (%s, %s, 'X', %s)",
            (w.tenant1, outsider, f.phone("+1415")),
        )
    # Its own member is fine.
    with as_user(db, w.users["admin1"]) as conn:
        changed = conn.execute(
            "update advisors set user_id = %s where id = %s",
            (w.users["supervisor1"], w.advisors["a"]["id"]),
        )
        assert changed.rowcount == 1


def test_admin_cannot_take_another_tenants_number_or_advisor(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    taken = w.advisors["a"]["twilio_phone_number"]
    with pytest.raises(psycopg.errors.UniqueViolation), as_user(db, w.users["admin2"]) as conn:
        conn.execute(
            "insert into advisors (tenant_id, name, twilio_phone_number) values (%s, 'X', %s)",
            (w.tenant2, taken),
        )
    with pytest.raises(psycopg.errors.UniqueViolation), as_user(db, w.users["admin2"]) as conn:
        conn.execute(
            "update advisors set twilio_phone_number = %s where id = %s",
            (taken, w.advisors["c"]["id"]),
        )
    with as_user(db, w.users["admin2"]) as conn:  # another tenant's advisor is not even visible
        moved = conn.execute(
            "update advisors set twilio_phone_number = %s where id = %s",
            (f.phone("+1415"), w.advisors["a"]["id"]),
        )
        assert moved.rowcount == 0


def test_a_member_who_leaves_stops_being_an_advisor_login(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    db.execute(
        "delete from tenant_members where tenant_id = %s and user_id = %s",
        (w.tenant1, w.users["advisor_a"]),
    )
    row = db.execute("select user_id from advisors where id = %s", (w.advisors["a"]["id"],))
    assert row.fetchone() == {"user_id": None}


def test_migrations_ran_as_the_non_superuser_owner(db: psycopg.Connection[Any]) -> None:
    role = db.execute(
        "select rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = current_user"
    ).fetchone()
    assert current_user(db) == "postgres"
    assert role == {"rolsuper": False, "rolbypassrls": True, "rolcreaterole": True}
    owners = db.execute(
        "select distinct pg_get_userbyid(relowner) as owner from pg_class"
        " where relnamespace = 'public'::regnamespace and relkind = 'r'"
    ).fetchall()
    assert owners == [{"owner": "postgres"}]
    defaults = db.execute(
        "select count(*) as n from pg_default_acl d"
        " where d.defaclnamespace = 'public'::regnamespace"
        " and exists (select 1 from aclexplode(d.defaclacl) a"
        "   where a.grantee in ('anon'::regrole, 'authenticated'::regrole, 'service_role'::regrole))"
    ).fetchone()
    assert defaults == {"n": 0}  # nothing is granted to the API roles by default


def current_user(db: psycopg.Connection[Any]) -> str:
    row = db.execute("select current_user as u").fetchone()
    assert row
    return str(row["u"])


@pytest.mark.parametrize(
    "settings",
    [{"opted_out_message": 5}, {"prompt": None}, ["not", "an", "object"], {"prompt": "x" * 20_001}],
)
def test_advisor_settings_are_checked_when_saved(
    db: psycopg.Connection[Any], settings: Any
) -> None:
    w = f.world(db)
    with pytest.raises(psycopg.errors.CheckViolation), as_user(db, w.users["admin1"]) as conn:
        conn.execute(
            "update advisors set settings = %s where id = %s",
            (json.dumps(settings), w.advisors["a"]["id"]),
        )
    with as_user(db, w.users["admin1"]) as conn:  # odd but valid text is accepted
        changed = conn.execute(
            "update advisors set settings = %s where id = %s",
            (json.dumps({"opted_out_message": "Listo {name} $ {"}), w.advisors["a"]["id"]),
        )
        assert changed.rowcount == 1
