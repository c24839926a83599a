"""`advisor_metrics`: per-advisor console figures, computed as the caller (RLS decides rows)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests import factories as f
from tests.conftest import as_user

WIDE = ("2000-01-01", "2100-01-01")


def metrics(db: psycopg.Connection[Any], user: Any) -> dict[str, dict[str, Any]]:
    with as_user(db, user) as conn:
        rows = conn.execute("select * from public.advisor_metrics(%s, %s)", WIDE).fetchall()
    return {str(row["advisor_id"]): row for row in rows}


def test_figures_per_advisor_and_who_sees_them(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    user = f.user(db)
    f.member(db, w.tenant1, user, "advisor")
    a = f.advisor(db, w.tenant1, user, name="Metrics")
    # One conversation the AI handled alone (two customer messages, one reply).
    customer = f.phone()
    alone = f.ingest(db, a["id"], customer)["conversation_id"]
    f.ingest(db, a["id"], customer)
    f.reply(db, alone, "respuesta", provider_sid=f.sid(), status="delivered")
    # One handed off: the advisor answers 90 s after the handoff; one of her sends failed.
    handed = f.ingest(db, a["id"], f.phone())["conversation_id"]
    db.execute(
        "insert into ai_runs (tenant_id, advisor_id, conversation_id, model, outcome, created_at)"
        " values (%s, %s, %s, 'gpt', 'handoff', now() - interval '90 seconds')",
        (w.tenant1, a["id"], handed),
    )
    f.reply(db, handed, "soy la asesora", author="advisor", provider_sid=f.sid(), status="sent")
    f.reply(
        db,
        handed,
        "otro",
        author="advisor",
        provider_sid=f.sid(),
        status="failed",
        error_code=63016,
    )

    admin = metrics(db, w.users["admin1"])
    row = admin[str(a["id"])]
    assert row["inbound_messages"] == 3
    assert row["conversations"] == 2
    assert float(row["ai_only_share"]) == 0.5
    assert row["handoffs"] == 1
    assert 85 <= float(row["median_first_response_seconds"]) <= 95
    assert row["failed_sends"] == 1
    assert str(w.advisors["b"]["id"]) in admin  # every advisor of the tenant, with zeros

    own = metrics(db, user)
    assert list(own) == [str(a["id"])]
    assert metrics(db, w.users["advisor_c"]).get(str(a["id"])) is None  # another tenant
    assert metrics(db, w.users["nobody"]) == {}


def test_only_authenticated_may_call_it(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        "select grantee from information_schema.routine_privileges"
        " where routine_name = 'advisor_metrics' and privilege_type = 'EXECUTE'"
    ).fetchall()
    assert {r["grantee"] for r in rows} - {"postgres"} == {"authenticated"}
