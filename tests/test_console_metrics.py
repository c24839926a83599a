"""`advisor_metrics`: per-advisor console figures, computed as the caller (RLS decides rows)."""

from __future__ import annotations

from datetime import timedelta
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


def sessions_by_hand(rows: list[dict[str, Any]], handoffs: list[Any]) -> tuple[int, int]:
    """Sessions and AI-only sessions, computed from the messages in Python: a customer message
    more than 24 h after the previous one (or the first) opens a session."""
    sessions: list[dict[str, Any]] = []
    last_inbound: dict[Any, Any] = {}
    for m in sorted(rows, key=lambda r: (r["created_at"], r["id"])):
        c = m["conversation_id"]
        if m["direction"] == "inbound":
            previous = last_inbound.get(c)
            if previous is None or m["created_at"] - previous > timedelta(hours=24):
                sessions.append(
                    {"conversation": c, "opened": m["created_at"], "ai": False, "human": False}
                )
            last_inbound[c] = m["created_at"]
        current = [s for s in sessions if s["conversation"] == c and s["opened"] <= m["created_at"]]
        if current:
            current[-1]["ai"] |= m["author"] == "ai"
            current[-1]["human"] |= m["author"] == "advisor"
    for conversation, at in handoffs:
        current = [s for s in sessions if s["conversation"] == conversation and s["opened"] <= at]
        current[-1]["human"] = True
    return len(sessions), sum(1 for s in sessions if s["ai"] and not s["human"])


COUNTERS = """
select coalesce(sum(inbound_messages), 0) as inbound, coalesce(sum(sessions), 0) as sessions,
  coalesce(sum(ai_only_sessions), 0) as ai_only, coalesce(sum(failed_sends), 0) as failed
from advisor_activity where advisor_id = %s
"""


def insert_message(
    db: psycopg.Connection[Any], a: dict[str, Any], conversation: Any, author: str, at: str
) -> None:
    direction = "inbound" if author == "customer" else "outbound"
    db.execute(
        "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body,"
        " status, created_at) values (%s, %s, %s, %s, %s, 'x', %s, %s)",
        (a["tenant_id"], a["id"], conversation, direction, author,
         "received" if direction == "inbound" else "sent", at),
    )  # fmt: skip


def test_the_counters_say_what_the_messages_say(db: psycopg.Connection[Any]) -> None:
    w = f.world(db)
    a = f.advisor(db, w.tenant1, None, name="Rollup")
    one = f.ingest(db, a["id"], f.phone())["conversation_id"]
    two = f.ingest(db, a["id"], f.phone())["conversation_id"]
    three = f.ingest(db, a["id"], f.phone())["conversation_id"]
    delivered = f.reply(db, one, "ok", provider_sid=f.sid(), status="delivered")
    failed = f.reply(db, two, "no", author="advisor", provider_sid=f.sid(), status="failed")
    f.reply(db, two, "otra", author="advisor", provider_sid=f.sid(), status="undelivered")
    f.reply(db, three, "hola", provider_sid=f.sid(), status="delivered")
    # A delivered message later reported undelivered; a failed one resent and delivered.
    db.execute("update messages set status = 'undelivered' where id = %s", (delivered["id"],))
    db.execute("update messages set status = 'sent' where id = %s", (failed["id"],))
    db.execute("update messages set status = 'delivered' where id = %s", (failed["id"],))
    # A handoff in conversation three after the AI replied: no longer AI-only.
    db.execute(
        "insert into ai_runs (tenant_id, advisor_id, conversation_id, model, outcome)"
        " values (%s, %s, %s, 'gpt', 'handoff')",
        (w.tenant1, a["id"], three),
    )
    # Days later the customer of `one` comes back twice (one session), 23 h apart, the AI answers.
    insert_message(db, a, one, "customer", "2100-01-01 10:00Z")
    insert_message(db, a, one, "ai", "2100-01-01 10:01Z")
    insert_message(db, a, one, "customer", "2100-01-02 09:00Z")
    # A bulk insert (one statement, many rows, across sessions) counts like single ones: for
    # each conversation, a customer message, an AI reply, then 25 h later a customer message
    # and an advisor's answer.
    db.execute(
        "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body,"
        "   status, created_at)"
        " select c.tenant_id, c.advisor_id, c.id, x.direction, x.author, 'lote', x.status,"
        "   '2100-02-01 08:00Z'::timestamptz + x.after"
        " from conversations c, (values"
        "   ('inbound', 'customer', 'received', interval '0'),"
        "   ('outbound', 'ai', 'sent', interval '1 minute'),"
        "   ('inbound', 'customer', 'received', interval '25 hours'),"
        "   ('outbound', 'advisor', 'failed', interval '26 hours')) as x(direction, author, status, after)"
        " where c.advisor_id = %s",
        (a["id"],),
    )

    rows = db.execute(
        "select id, conversation_id, direction, author, status, created_at from messages"
        " where advisor_id = %s",
        (a["id"],),
    ).fetchall()
    handoffs = [
        (r["conversation_id"], r["created_at"])
        for r in db.execute(
            "select conversation_id, created_at from ai_runs where advisor_id = %s"
            " and outcome = 'handoff'",
            (a["id"],),
        )
    ]
    sessions, ai_only = sessions_by_hand(rows, handoffs)
    counted = db.execute(COUNTERS, (a["id"],)).fetchone()
    assert counted == {
        "inbound": sum(r["direction"] == "inbound" for r in rows),
        "sessions": sessions,
        "ai_only": ai_only,
        "failed": sum(r["status"] in ("failed", "undelivered") for r in rows),
    }
    # 3 first sessions, one's return, then two per conversation in the bulk insert.
    assert (sessions, ai_only, counted["failed"]) == (10, 5, 5)


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
        seen = {r["advisor_id"] for r in conn.execute("select advisor_id from advisor_activity")}
    assert seen == {w.advisors["a"]["id"]}
