"""Where Twilio's answers meet our rows (private.complete_send, apply_status), in the database:
every path applies a status callback that beat it, and a callback racing the write of its
message's sid is never lost (both take an advisory lock on the sid)."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests import factories as f
from tests.conftest import DatabaseUrls, eventually


@pytest.fixture
def conversation(db: psycopg.Connection[Any]) -> str:
    advisor = f.advisor(db, f.tenant(db))
    return str(f.ingest(db, advisor["id"], f.phone("+57390"), "hola")["conversation_id"])


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def row(db: psycopg.Connection[Any], message_id: str) -> dict[str, Any]:
    found = db.execute(
        "select status, provider_sid, error_code from messages where id = %s", (message_id,)
    ).fetchone()
    assert found
    return dict(found)


def early(db: psycopg.Connection[Any], sid: str) -> int:
    found = db.execute(
        "select count(*) as n from early_status_callbacks where provider_sid = %s", (sid,)
    ).fetchone()
    assert found
    return int(found["n"])


@pytest.mark.parametrize(
    "complete",
    ["select update_outbound(%(id)s, %(sid)s, 'queued')",
     "select finish_resend(%(id)s, %(sid)s, 'queued', null, null)",
     "select record_status(%(sid)s, 'sent', null, null, %(id)s)"],
    ids=["first send", "resend", "callback naming the row"],
)  # fmt: skip
def test_every_path_applies_a_callback_that_arrived_first(
    db: psycopg.Connection[Any], conversation: str, complete: str
) -> None:
    message_id = str(f.reply(db, conversation, "hola")["id"])
    db.execute("update messages set status = 'sending' where id = %s", (message_id,))
    sid = new_sid()
    assert db.execute("select apply_status(%s, 'delivered') as r", (sid,)).fetchone() == {
        "r": "early"
    }
    db.execute(complete, {"id": message_id, "sid": sid})
    assert row(db, message_id) == {"status": "delivered", "provider_sid": sid, "error_code": None}
    assert early(db, sid) == 0


def test_a_late_failure_never_undoes_a_send_a_callback_proved(
    db: psycopg.Connection[Any], conversation: str
) -> None:
    """The callback naming the row came first (Twilio had it); the send's own answer was a
    read timeout (no sid): the row stays sent."""
    message_id = str(f.reply(db, conversation, "hola")["id"])
    sid = new_sid()
    db.execute("select record_status(%s, 'delivered', null, null, %s)", (sid, message_id))
    db.execute("select update_outbound(%s, null, 'failed', null, 'ReadTimeout')", (message_id,))
    assert row(db, message_id) == {"status": "delivered", "provider_sid": sid, "error_code": None}


def _waiting_for_a_lock(db: psycopg.Connection[Any], pid: int) -> bool:
    found = db.execute(
        "select wait_event_type, wait_event from pg_stat_activity where pid = %s", (pid,)
    ).fetchone()
    return found is not None and (found["wait_event_type"], found["wait_event"]) == (
        "Lock",
        "advisory",
    )


@pytest.mark.parametrize("first", ["send recorded", "callback"])
def test_a_callback_racing_the_sid_write_is_never_orphaned(
    db: psycopg.Connection[Any], database: DatabaseUrls, conversation: str, first: str
) -> None:
    """One side's transaction is open (written, not committed) when the other arrives: the
    second waits for the first's commit and then sees its write, so the callback is applied
    to the row either way. Without the lock, the callback would land in
    early_status_callbacks after the send looked there: an orphan."""
    message_id = str(f.reply(db, conversation, "hola")["id"])
    sid = new_sid()
    record = ("select update_outbound(%s, %s, 'queued')", (message_id, sid))
    callback = ("select apply_status(%s, 'failed', 63016, 'outside the window')", (sid,))
    opened, racing = (record, callback) if first == "send recorded" else (callback, record)
    with (
        psycopg.connect(database.owner_url, row_factory=dict_row) as holder,
        psycopg.connect(database.owner_url, autocommit=True, row_factory=dict_row) as racer,
        ThreadPoolExecutor(1) as pool,
    ):
        holder.execute(*opened)  # in a transaction, not committed yet
        racer_pid = racer.info.backend_pid
        answer = pool.submit(lambda: racer.execute(*racing).fetchone())
        eventually(lambda: _waiting_for_a_lock(db, racer_pid), what="the racer waiting on the sid")
        holder.commit()
        answer.result(timeout=30)
    assert row(db, message_id) == {"status": "failed", "provider_sid": sid, "error_code": 63016}
    assert early(db, sid) == 0


@pytest.mark.parametrize(
    ("media", "preview"),
    [([{"path": "t/a/c/voz.ogg", "content_type": "audio/ogg"}], "[media]"),
     ([{"type": "template", "content_sid": "HX" + "c3" * 16, "variables": {}}], "[template]")],
)  # fmt: skip
def test_a_media_only_reply_moves_the_conversation_up_the_list(
    db: psycopg.Connection[Any], conversation: str, media: list[dict[str, Any]], preview: str
) -> None:
    db.execute("update conversations set last_message_at = now() - interval '1 hour'"
               " where id = %s", (conversation,))  # fmt: skip
    db.execute(
        "select commit_reply(%s, '{}'::uuid[], %s::jsonb, null, null, false)",
        (conversation, json.dumps([{"author": "advisor", "body": None, "media": media}])),
    )
    found = db.execute(
        "select last_message_at > now() - interval '1 minute' as recent, last_message_preview"
        " from conversations where id = %s", (conversation,),
    ).fetchone()  # fmt: skip
    assert found == {"recent": True, "last_message_preview": preview}


def test_an_ai_reply_that_missed_a_newer_message_is_not_committed(
    db: psycopg.Connection[Any], conversation: str
) -> None:
    found = db.execute(
        "select c.advisor_id, c.customer_phone, m.id from conversations c"
        " join messages m on m.conversation_id = c.id where c.id = %s",
        (conversation,),
    ).fetchone()
    assert found
    first = str(found["id"])
    second = str(
        f.ingest(db, found["advisor_id"], found["customer_phone"], "y otra cosa")["message_id"]
    )
    reply = json.dumps([{"author": "ai", "body": "respuesta"}])

    def commit(seen: list[str], require_ai: bool = True) -> Any:
        return db.execute(
            "select commit_reply(%s, %s::uuid[], %s::jsonb, null, null, %s) as r",
            (conversation, seen, reply, require_ai),
        ).fetchone()["r"]  # type: ignore[index]

    assert commit([first]) == {"committed": False, "reason": "newer_message"}
    assert commit([first], require_ai=False)["committed"]  # a notice is not an answer
    assert commit([first, second])["committed"]
