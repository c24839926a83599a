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


DIRECT = """
select m.conversation_id, count(*) filter (where m.direction = 'inbound') as inbound,
  count(*) filter (where m.author = 'ai') as ai, count(*) filter (where m.author = 'advisor') as advisor,
  count(*) filter (where m.direction = 'outbound' and m.status in ('failed', 'undelivered')) as failed
from messages m where m.advisor_id = %s group by 1 order by 1
"""
ROLLUP = """
select conversation_id, sum(inbound_messages) as inbound, sum(ai_messages) as ai,
  sum(advisor_messages) as advisor, sum(failed_sends) as failed
from conversation_activity where advisor_id = %s group by 1 order by 1
"""


def test_the_rollup_counts_what_the_messages_say(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    a = f.advisor(db, w.tenant1, None, name="Rollup")
    one = f.ingest(db, a["id"], f.phone())["conversation_id"]
    two = f.ingest(db, a["id"], f.phone())["conversation_id"]
    f.ingest(db, a["id"], f.phone())
    delivered = f.reply(db, one, "ok", provider_sid=f.sid(), status="delivered")
    failed = f.reply(db, two, "no", author="advisor", provider_sid=f.sid(), status="failed")
    f.reply(db, two, "otra", author="advisor", provider_sid=f.sid(), status="undelivered")
    # A delivered message later reported undelivered; a failed one resent and delivered.
    db.execute("update messages set status = 'undelivered' where id = %s", (delivered["id"],))
    db.execute("update messages set status = 'sent' where id = %s", (failed["id"],))
    db.execute("update messages set status = 'delivered' where id = %s", (failed["id"],))
    # A bulk insert (one statement, many rows) counts like single ones.
    db.execute(
        "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body, status)"
        " select tenant_id, advisor_id, id, 'inbound', 'customer', 'lote ' || g, 'received'"
        " from conversations, generate_series(1, 3) g where advisor_id = %s",
        (a["id"],),
    )

    direct = db.execute(DIRECT, (a["id"],)).fetchall()
    assert [tuple(r.values()) for r in db.execute(ROLLUP, (a["id"],)).fetchall()] == [
        tuple(r.values()) for r in direct
    ]
    assert sum(r["failed"] for r in direct) == 2 and sum(r["inbound"] for r in direct) == 12


def test_counts_outlive_the_messages_and_windows_are_whole_hours(
    db: psycopg.Connection[Any],
) -> None:
    w = f.world(db)
    a = f.advisor(db, w.tenant1, None, name="Hours")
    conversation = f.ingest(db, a["id"], f.phone())["conversation_id"]
    db.execute(
        "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body,"
        " status, created_at) values (%s, %s, %s, 'inbound', 'customer', 'x', 'received',"
        " '2030-01-01 10:40Z')",
        (w.tenant1, a["id"], conversation),
    )
    db.execute("delete from messages where conversation_id = %s", (conversation,))  # retention

    def inbound(start: str, end: str) -> int:
        with as_user(db, w.users["admin1"]) as conn:
            row = conn.execute(
                "select inbound_messages from advisor_metrics(%s, %s) where advisor_id = %s",
                (start, end, a["id"]),
            ).fetchone()
        assert row
        return int(row["inbound_messages"])

    assert inbound("2030-01-01 10:50Z", "2030-01-01 10:55Z") == 1  # the hour holding 10:40
    assert inbound("2030-01-01 09:00Z", "2030-01-01 10:00Z") == 0
    assert inbound("2030-01-01 11:00Z", "2030-01-02 00:00Z") == 0


def test_advisors_read_only_their_own_activity(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    with as_user(db, w.users["advisor_a"]) as conn:
        seen = {
            r["advisor_id"] for r in conn.execute("select advisor_id from conversation_activity")
        }
    assert seen == {w.advisors["a"]["id"]}
