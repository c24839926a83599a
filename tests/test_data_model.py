"""The schema's rules, on the real Postgres: RLS, dedup, ordering, isolation, indexes."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import psycopg
import pytest

from tests import factories as f
from tests.conftest import as_user

DENIED = "denied"


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> f.World:
    """A fresh pair of tenants per test: what one test adds, no other test counts."""
    return f.world(db)


def attempt(db: psycopg.Connection[Any], user_id: Any, query: str, params: Any = ()) -> Any:
    """Rows seen or changed by `query` run as that user, or DENIED."""
    role = "anon" if user_id is None else "authenticated"
    try:
        with as_user(db, user_id, role) as conn:
            cur = conn.execute(query, params)
            return len(cur.fetchall()) if cur.description else cur.rowcount
    except psycopg.errors.InsufficientPrivilege:
        return DENIED


# Which advisors (by key) and tenants each user may see.
VISIBLE = {
    "anon": ((), ()),
    "nobody": ((), ()),
    "advisor_a": (("a",), (1,)),
    "advisor_b": (("b",), (1,)),
    "admin1": (("a", "b"), (1,)),
    "supervisor1": (("a", "b"), (1,)),
    "advisor_c": (("c",), (2,)),
    "admin2": (("c",), (2,)),
}
MEMBERS_SEEN = {
    "advisor_a": 1,
    "advisor_b": 1,
    "admin1": 4,
    "supervisor1": 4,
    "advisor_c": 1,
    "admin2": 2,
}


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_select_matrix(db: psycopg.Connection[Any], world: f.World, who: str) -> None:
    advisors, tenants = VISIBLE[who]
    uid = world.users[who]
    ids = [world.advisors[k]["id"] for k in "abc"]
    tenant_ids = [world.tenant1, world.tenant2]
    expected_conversations = len(advisors)
    seen = {
        "tenants": attempt(db, uid, "select 1 from tenants where id = any(%s)", (tenant_ids,)),
        "tenant_members": attempt(
            db, uid, "select 1 from tenant_members where tenant_id = any(%s)", (tenant_ids,)
        ),
        "advisors": attempt(db, uid, "select 1 from advisors where id = any(%s)", (ids,)),
        "conversations": attempt(
            db, uid, "select 1 from conversations where advisor_id = any(%s)", (ids,)
        ),
        "messages": attempt(db, uid, "select 1 from messages where advisor_id = any(%s)", (ids,)),
        "ai_runs": attempt(db, uid, "select 1 from ai_runs where advisor_id = any(%s)", (ids,)),
        "unrouted_messages": attempt(db, uid, "select 1 from unrouted_messages"),
        "early_status_callbacks": attempt(db, uid, "select 1 from early_status_callbacks"),
    }
    if who == "anon":
        expected: dict[str, Any] = dict.fromkeys(seen, DENIED)
    else:
        expected = {
            "tenants": len(tenants),
            "tenant_members": MEMBERS_SEEN.get(who, 0),
            "advisors": len(advisors),
            "conversations": expected_conversations,
            "messages": 2 * expected_conversations,  # one inbound, one reply each
            "ai_runs": expected_conversations,
            "unrouted_messages": DENIED,
            "early_status_callbacks": DENIED,
        }
    assert seen == expected


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_write_matrix(db: psycopg.Connection[Any], world: f.World, who: str) -> None:
    uid = world.users[who]
    conv_a = world.conversations["a"]
    adv_a = world.advisors["a"]
    outcomes = {
        "insert message": attempt(
            db,
            uid,
            "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, status)"
            " values (%s, %s, %s, 'outbound', 'advisor', 'queued')",
            (world.tenant1, adv_a["id"], conv_a),
        ),
        "update message": attempt(
            db, uid, "update messages set body = 'x' where conversation_id = %s", (conv_a,)
        ),
        "delete message": attempt(
            db, uid, "delete from messages where conversation_id = %s", (conv_a,)
        ),
        "insert conversation": attempt(
            db,
            uid,
            "insert into conversations (tenant_id, advisor_id, customer_phone) values (%s, %s, '+5730000000')",
            (world.tenant1, adv_a["id"]),
        ),
        "handoff update": attempt(
            db,
            uid,
            "update conversations set ai_attention = false, unread_count = 0 where id = %s",
            (conv_a,),
        ),
        "move conversation": attempt(
            db,
            uid,
            "update conversations set advisor_id = %s where id = %s",
            (world.advisors["b"]["id"], conv_a),
        ),
        "delete conversation": attempt(
            db, uid, "delete from conversations where id = %s", (conv_a,)
        ),
        "delete ai run": attempt(
            db, uid, "delete from ai_runs where conversation_id = %s", (conv_a,)
        ),
        "rename advisor": attempt(
            db, uid, "update advisors set name = 'Z' where id = %s", (adv_a["id"],)
        ),
        "add advisor to tenant1": attempt(
            db,
            uid,
            "insert into advisors (tenant_id, name, twilio_phone_number) values (%s, 'N', %s)",
            (world.tenant1, f.phone("+1999")),
        ),
    }
    sees_a = "a" in VISIBLE[who][0]
    is_admin1 = who == "admin1"
    expected = {
        "insert message": DENIED,
        "update message": DENIED,
        "delete message": DENIED,
        "insert conversation": DENIED,
        "handoff update": DENIED if who == "anon" else (1 if sees_a else 0),
        "move conversation": DENIED,
        "delete conversation": DENIED,
        "delete ai run": DENIED,
        "rename advisor": DENIED if who == "anon" else (1 if is_admin1 else 0),
        "add advisor to tenant1": 1 if is_admin1 else DENIED,
    }
    assert outcomes == expected


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_realtime_topics(db: psycopg.Connection[Any], world: f.World, who: str) -> None:
    """Joining advisor:<id> works only for who may see that advisor, and carries its changes."""
    uid = world.users[who]
    joinable = set()
    for key, adv in world.advisors.items():
        topic = f"advisor:{adv['id']}"
        role = "anon" if uid is None else "authenticated"
        try:
            with as_user(db, uid, role) as conn:
                conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
                rows = conn.execute(
                    "select payload from realtime.messages where topic = %s", (topic,)
                ).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            rows = []
        if rows:
            joinable.add(key)
            tables = {r["payload"]["table"] for r in rows}
            assert tables == {"messages", "conversations"}
    assert joinable == set(VISIBLE[who][0])


def _concurrently(database_url: str, calls: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(len(calls))
    lock = threading.Lock()

    def run(args: tuple[Any, ...]) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            row = conn.execute("select ingest_inbound(%s, %s, %s, %s, %s)", args).fetchone()
            assert row
            with lock:
                results.append(row[0])

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_fifty_concurrent_same_sid_store_one(
    db: psycopg.Connection[Any], world: f.World, database_url: str
) -> None:
    adv = world.advisors["a"]["id"]
    message_sid, customer = f.sid(), f.phone("+57310")
    results = _concurrently(database_url, [(adv, customer, None, message_sid, "hola")] * 50)
    assert sum(r["is_new"] for r in results) == 1
    assert len({r["message_id"] for r in results}) == 1
    count = db.execute(
        "select count(*) as n from messages where provider_sid = %s", (message_sid,)
    ).fetchone()
    assert count == {"n": 1}


def test_fifty_concurrent_new_customer_one_conversation(
    db: psycopg.Connection[Any], world: f.World, database_url: str
) -> None:
    adv = world.advisors["b"]["id"]
    customer = f.phone("+57311")
    results = _concurrently(
        database_url, [(adv, customer, "Ana", f.sid(), f"m{i}") for i in range(50)]
    )
    assert all(r["is_new"] for r in results)
    assert len({r["conversation_id"] for r in results}) == 1
    row = db.execute(
        "select count(distinct c.id) as conversations, count(m.id) as messages, max(c.unread_count) as unread"
        " from conversations c join messages m on m.conversation_id = c.id"
        " where c.advisor_id = %s and c.customer_phone = %s",
        (adv, customer),
    ).fetchone()
    assert row == {"conversations": 1, "messages": 50, "unread": 50}


def _outbound(db: psycopg.Connection[Any], conversation_id: str, status: str = "queued") -> str:
    message_sid = f.sid()
    f.reply(db, conversation_id, status=status, provider_sid=message_sid)
    return message_sid


def _status(db: psycopg.Connection[Any], message_sid: str) -> dict[str, Any]:
    row = db.execute(
        "select status, error_code from messages where provider_sid = %s", (message_sid,)
    ).fetchone()
    assert row
    return dict(row)


def test_status_only_moves_forward(db: psycopg.Connection[Any], world: f.World) -> None:
    conv = world.conversations["a"]
    for seed in range(5):
        message_sid = _outbound(db, conv)
        updates = ["sending", "sent", "delivered", "read"] * 2
        random.Random(seed).shuffle(updates)
        for status in updates:
            db.execute("select apply_status(%s, %s)", (message_sid, status))
        assert _status(db, message_sid) == {"status": "read", "error_code": None}


def test_failed_keeps_its_code_and_repeats_are_noops(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    message_sid = _outbound(db, world.conversations["a"], "sent")
    first = db.execute(
        "select apply_status(%s, 'undelivered', 63016) as r", (message_sid,)
    ).fetchone()
    late = db.execute("select apply_status(%s, 'sent') as r", (message_sid,)).fetchone()
    again = db.execute(
        "select apply_status(%s, 'undelivered', 63016) as r", (message_sid,)
    ).fetchone()
    assert [first, late, again] == [{"r": "applied"}, {"r": "unchanged"}, {"r": "unchanged"}]
    assert _status(db, message_sid) == {"status": "undelivered", "error_code": 63016}


def test_callback_before_the_message_is_recorded(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    message_sid = f.sid()
    assert db.execute("select apply_status(%s, 'delivered') as r", (message_sid,)).fetchone() == {
        "r": "early"
    }
    assert db.execute("select apply_status(%s, 'sent') as r", (message_sid,)).fetchone() == {
        "r": "early"
    }
    f.reply(db, world.conversations["a"], provider_sid=message_sid)  # Twilio answers "queued"
    assert _status(db, message_sid) == {"status": "delivered", "error_code": None}
    left = db.execute(
        "select count(*) as n from early_status_callbacks where provider_sid = %s", (message_sid,)
    )
    assert left.fetchone() == {"n": 0}


def test_same_customer_two_advisors_two_private_threads(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    customer = f.phone("+57312")
    first = f.ingest(db, world.advisors["a"]["id"], customer, "secreto para A")
    second = f.ingest(db, world.advisors["b"]["id"], customer, "pregunta para B")
    again = f.ingest(db, world.advisors["a"]["id"], customer, "otra para A")
    assert first["conversation_id"] != second["conversation_id"]
    assert again["conversation_id"] == first["conversation_id"]
    assert [m["body"] for m in second["history"]] == ["pregunta para B"]
    assert [m["body"] for m in again["history"]] == ["secreto para A", "otra para A"]


def test_opt_out_and_in(db: psycopg.Connection[Any], world: f.World) -> None:
    customer = f.phone("+57313")
    adv = world.advisors["a"]["id"]
    assert f.ingest(db, adv, customer, "hola")["ai_allowed"] is True
    stop = f.ingest(db, adv, customer, "STOP", opt="out")
    assert stop["opt_changed"] is True and stop["ai_allowed"] is False
    assert f.ingest(db, adv, customer, "STOP", opt="out")["opt_changed"] is False
    assert f.ingest(db, adv, customer, "hola?")["ai_allowed"] is False
    start = f.ingest(db, adv, customer, "START", opt="in")
    assert start["opt_changed"] is True and start["opted_out_at"] is None
    assert f.ingest(db, adv, customer, "hola de nuevo")["ai_allowed"] is True


def test_handoff_pauses_the_ai(db: psycopg.Connection[Any], world: f.World) -> None:
    customer = f.phone("+57314")
    adv = world.advisors["b"]["id"]
    first = f.ingest(db, adv, customer, "quiero un humano")
    f.reply(db, first["conversation_id"], None, seen=[first["message_id"]],
            handoff={"reason": "asked", "hours": 24})  # fmt: skip
    nxt = f.ingest(db, adv, customer, "hola?")
    assert nxt["ai_attention"] is False and nxt["ai_allowed"] is False
    row = db.execute(
        "select handoff_reason, needs_human, human_override_until > now() + interval '23 hours' as long"
        " from conversations where id = %s",
        (first["conversation_id"],),
    ).fetchone()
    assert row == {"handoff_reason": "asked", "needs_human": True, "long": True}
    db.execute("select set_handoff(%s, true)", (first["conversation_id"],))
    assert f.ingest(db, adv, customer, "sigues?")["ai_allowed"] is True


def test_functions_role_executes_functions_and_reads_nothing(
    app_database_url: str, world: f.World
) -> None:
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        routed = conn.execute(
            "select route_advisor(%s)", (world.advisors["a"]["twilio_phone_number"],)
        ).fetchone()
        assert routed and routed[0]["id"] == str(world.advisors["a"]["id"])
        for table in ("messages", "conversations", "unrouted_messages", "tenant_members"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select 1 from public.{table} limit 1")


HOT_QUERIES = {
    "advisor by number": (
        "select * from advisors where twilio_phone_number = %(number)s and is_active",
        "advisors_twilio_phone_number_key",
    ),
    "conversation by customer": (
        "select * from conversations where advisor_id = %(advisor)s and customer_phone = %(customer)s",
        "conversations_advisor_id_customer_phone_key",
    ),
    "message by sid": (
        "select * from messages where provider_sid = %(sid)s",
        "messages_provider_sid_key",
    ),
    "history": (
        "select * from messages where conversation_id = %(conversation)s order by created_at desc limit 20",
        "messages_conversation_recent_idx",
    ),
    "dashboard list": (
        "select * from conversations where advisor_id = %(advisor)s"
        " order by last_message_at desc nulls last limit 50",
        "conversations_advisor_recent_idx",
    ),
}


@pytest.mark.own_database  # 100k rows and 3,000 advisors would change what other tests count
def test_hot_queries_use_indexes_at_100k_messages(db: psycopg.Connection[Any]) -> None:
    tenant = f.tenant(db)
    adv = f.advisor(db, tenant, name="Bulk")
    with db.transaction():
        db.execute("alter table messages disable trigger messages_broadcast_insert")
        db.execute("alter table conversations disable trigger conversations_broadcast")
        db.execute(
            "insert into advisors (tenant_id, name, twilio_phone_number)"
            " select %s, 'bulk ' || g, '+1888' || lpad(g::text, 7, '0') from generate_series(1, 3000) g",
            (tenant,),
        )
        db.execute(
            "insert into conversations (tenant_id, advisor_id, customer_phone, last_message_at)"
            " select %s, %s, '+5770' || lpad(g::text, 7, '0'), now() - g * interval '1 minute'"
            " from generate_series(1, 2000) g",
            (tenant, adv["id"]),
        )
        db.execute(
            "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body,"
            " provider_sid, status, created_at, handled_at)"
            " select %s, %s, c.id, 'inbound', 'customer', 'bulk', 'SMBULK' || c.id || g, 'received',"
            "   now() - g * interval '1 second', now()"
            " from conversations c, generate_series(1, 55) g where c.advisor_id = %s",
            (tenant, adv["id"], adv["id"]),
        )
        db.execute("alter table messages enable trigger messages_broadcast_insert")
        db.execute("alter table conversations enable trigger conversations_broadcast")
    db.execute("analyze advisors, conversations, messages")
    count = db.execute("select count(*) as n from messages").fetchone()
    assert count == {"n": 2000 * 55}
    sample = db.execute(
        "select c.id, c.customer_phone, m.provider_sid from conversations c"
        " join messages m on m.conversation_id = c.id where c.advisor_id = %s limit 1",
        (adv["id"],),
    ).fetchone()
    assert sample
    params = {
        "number": adv["twilio_phone_number"],
        "advisor": adv["id"],
        "customer": sample["customer_phone"],
        "sid": sample["provider_sid"],
        "conversation": sample["id"],
    }
    for name, (query, index) in HOT_QUERIES.items():
        plan = json.dumps(db.execute("explain (format json) " + query, params).fetchone())
        assert index in plan, f"{name}: {plan}"
        assert '"Seq Scan"' not in plan, f"{name}: {plan}"


# Hot-path functions whose statements would otherwise be planned anew on every call (their
# generic plan never looks cheaper to the planner). A SET clause belongs to a function's
# definition, so a later `create or replace` that leaves it out silently drops it.
PLANNED_ONCE_PER_SESSION = (
    "private.count_messages(uuid[])",
    "private.turn_knowledge(uuid,integer)",
    "public.commit_reply(uuid,uuid[],jsonb,jsonb,jsonb,boolean)",
)


def test_hot_path_functions_keep_one_generic_plan(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        "select given.name, p.proconfig as config"
        " from unnest(%s::text[]) as given (name) join pg_proc p on p.oid = given.name::regprocedure",
        (list(PLANNED_ONCE_PER_SESSION),),
    ).fetchall()
    settings = {row["name"]: row["config"] or [] for row in rows}
    assert set(settings) == set(PLANNED_ONCE_PER_SESSION)
    for name, config in settings.items():
        assert "plan_cache_mode=force_generic_plan" in config, name
        assert 'search_path=""' in config, name
