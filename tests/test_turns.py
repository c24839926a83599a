"""A conversation's turn, held in Postgres (migration 20261123002200), tested in the database:
one holder at a time, a lapsed hold taken over, a waiting fragment that leaves the turn to a
newer message, and letting go together with what arrived meanwhile."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests import factories as f
from tests.conftest import DatabaseUrls

LEASE = timedelta(seconds=20)


@pytest.fixture
def advisor(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return f.advisor(db, f.tenant(db))


def take(db: psycopg.Connection[Any], conversation: Any, waited: Any = None) -> dict[str, Any]:
    row = db.execute("select take_turn(%s, %s, %s) as r", (conversation, LEASE, waited)).fetchone()
    assert row
    return dict(row["r"])


def finish(db: psycopg.Connection[Any], conversation: Any, token: Any) -> dict[str, Any]:
    row = db.execute("select finish_turn(%s, %s) as r", (conversation, token)).fetchone()
    assert row
    return dict(row["r"])


def receive(
    db: psycopg.Connection[Any], advisor_id: Any, customer: str, body: str, lease: Any = LEASE
) -> dict[str, Any]:
    row = db.execute(
        "select receive_inbound(%s, %s, %s, null, %s, %s) as r",
        (lease, advisor_id, customer, f.sid(), body),
    ).fetchone()
    assert row
    return dict(row["r"])


def test_one_holder_at_a_time_and_only_its_token_lets_go(
    db: psycopg.Connection[Any], advisor: dict[str, Any]
) -> None:
    conversation = f.ingest(db, advisor["id"], f.phone("+57391"))["conversation_id"]
    first = take(db, conversation)
    assert first["held"] is True
    assert take(db, conversation) == {"held": False, "reason": "busy"}
    finish(db, conversation, "00000000-0000-0000-0000-000000000000")  # not the holder's token
    assert take(db, conversation) == {"held": False, "reason": "busy"}
    finish(db, conversation, first["token"])
    assert take(db, conversation)["held"] is True


def test_a_lapsed_hold_is_taken_over_and_its_late_release_changes_nothing(
    db: psycopg.Connection[Any], advisor: dict[str, Any]
) -> None:
    conversation = f.ingest(db, advisor["id"], f.phone("+57392"))["conversation_id"]
    crashed = take(db, conversation)
    db.execute(
        "update private.turn_holders set held_until = now() - interval '1 second'"
        " where conversation_id = %s",
        (conversation,),
    )
    successor = take(db, conversation)
    assert successor["held"] is True
    finish(db, conversation, crashed["token"])  # the crashed holder comes back late
    assert take(db, conversation) == {"held": False, "reason": "busy"}


def test_concurrent_takers_one_wins(database: DatabaseUrls, advisor: dict[str, Any]) -> None:
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        row = conn.execute(
            "select ingest_inbound(%s, %s, null, %s, 'hola') ->> 'conversation_id'",
            (advisor["id"], f.phone("+57393"), f.sid()),
        ).fetchone()
    assert row
    conversation = row[0]

    def attempt(_: int) -> bool:
        with psycopg.connect(database.owner_url, autocommit=True) as conn:
            held = conn.execute(
                "select (take_turn(%s, %s) ->> 'held')::boolean", (conversation, LEASE)
            ).fetchone()
        return bool(held and held[0])

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(attempt, range(8))) == [False] * 7 + [True]


def test_a_waiting_fragment_leaves_the_turn_to_a_newer_message(
    db: psycopg.Connection[Any], advisor: dict[str, Any]
) -> None:
    customer = f.phone("+57394")
    fragment = f.ingest(db, advisor["id"], customer, "hola")
    conversation = fragment["conversation_id"]
    question = f.ingest(db, advisor["id"], customer, "¿tienen envíos?")
    assert take(db, conversation, fragment["message_id"]) == {
        "held": False, "reason": "superseded",
    }  # fmt: skip
    # The question's turn answered both: the fragment has nothing left to do.
    f.reply(db, conversation, seen=[fragment["message_id"], question["message_id"]])
    assert take(db, conversation, fragment["message_id"]) == {"held": False, "reason": "answered"}


def test_a_newer_message_the_ai_will_not_answer_does_not_supersede(
    db: psycopg.Connection[Any], advisor: dict[str, Any]
) -> None:
    customer = f.phone("+57395")
    fragment = f.ingest(db, advisor["id"], customer, "hola")
    f.ingest(db, advisor["id"], customer, "otra", permitted=False)  # rate limited: handled
    assert take(db, fragment["conversation_id"], fragment["message_id"])["held"] is True


def test_letting_go_returns_what_arrived_meanwhile(
    db: psycopg.Connection[Any], advisor: dict[str, Any]
) -> None:
    customer = f.phone("+57396")
    first = receive(db, advisor["id"], customer, "¿precio?")
    conversation, token = first["conversation_id"], first["turn"]["token"]
    assert first["turn"]["held"] is True
    f.reply(db, conversation, seen=[first["message_id"]])
    meanwhile = receive(db, advisor["id"], customer, "¿y envíos?")
    assert meanwhile["turn"] == {"held": False, "reason": "busy"}
    pending = finish(db, conversation, token)
    assert pending["unhandled"] == [meanwhile["message_id"]]
    assert pending["ai_allowed"] is True
    assert [m["body"] for m in pending["history"]][-1] == "¿y envíos?"
    assert take(db, conversation)["held"] is True  # free again: the holder takes it back


def test_receiving_takes_the_turn_only_for_a_message_the_ai_answers_now(
    db: psycopg.Connection[Any], advisor: dict[str, Any]
) -> None:
    customer = f.phone("+57397")
    waiting = receive(db, advisor["id"], customer, "hola", lease=None)  # a fragment: later
    assert "turn" not in waiting
    paused = f.phone("+57398")
    receive(db, advisor["id"], paused, "hola", lease=None)
    db.execute("update conversations set ai_attention = false where customer_phone = %s", (paused,))
    assert "turn" not in receive(db, advisor["id"], paused, "¿precio?")
    answered = receive(db, advisor["id"], customer, "¿precio?")
    assert answered["turn"]["held"] is True


def test_a_withheld_message_is_handled_alone_and_its_turn_let_go(
    db: psycopg.Connection[Any], advisor: dict[str, Any]
) -> None:
    customer = f.phone("+57399")
    fragment = receive(db, advisor["id"], customer, "hola", lease=None)  # still waiting
    limited = receive(db, advisor["id"], customer, "¿precio?")
    conversation = limited["conversation_id"]
    db.execute(
        "select withhold_turn(%s, %s, %s)",
        (conversation, limited["message_id"], limited["turn"]["token"]),
    )
    unhandled = db.execute(
        "select id from messages where conversation_id = %s and handled_at is null",
        (conversation,),
    ).fetchall()
    assert [str(r["id"]) for r in unhandled] == [fragment["message_id"]]
    assert take(db, conversation)["held"] is True


def test_only_the_functions_role_may_touch_turns(db: psycopg.Connection[Any]) -> None:
    for function in (
        "take_turn(uuid, interval, uuid)",
        "finish_turn(uuid, uuid, integer, integer)",
        "withhold_turn(uuid, uuid, uuid)",
        "receive_inbound(interval, uuid, text, text, text, text, jsonb, text, boolean, integer,"
        " integer)",
    ):
        allowed = db.execute(
            "select has_function_privilege('assistant_functions', %(f)s, 'execute') as fn,"
            " has_function_privilege('authenticated', %(f)s, 'execute') as auth,"
            " has_function_privilege('anon', %(f)s, 'execute') as anon",
            {"f": "public." + function},
        ).fetchone()
        assert allowed == {"fn": True, "auth": False, "anon": False}
    for role in ("anon", "authenticated", "service_role", "assistant_functions"):
        row = db.execute(
            "select has_table_privilege(%s, 'private.turn_holders', 'select') as r", (role,)
        ).fetchone()
        assert row == {"r": False}
