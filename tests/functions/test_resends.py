"""The resend sweep keeps a first send's promises: the same rules (opt-out, active advisor,
24-hour window, age), the parts of a reply in order or not at all, and nothing sent twice when
Twilio may already have a message (looked up first)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

import shared.services
from tests import factories as f
from tests.conftest import CleanupClient, TwilioApi, WebhookClient, backdate

pytestmark = [pytest.mark.usefixtures("twilio_api"), pytest.mark.own_database]


@pytest.fixture
def advisor(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return f.advisor(db, f.tenant(db), name="Luis Gómez")


def commit(
    db: psycopg.Connection[Any], conversation: str, parts: list[dict[str, Any]]
) -> list[str]:
    """A reply of several parts, committed as the functions commit one."""
    found = db.execute(
        "select commit_reply(%s, '{}'::uuid[], %s::jsonb, null, null, false) as r",
        (conversation, json.dumps(parts)),
    ).fetchone()
    assert found
    return [str(i) for i in found["r"]["message_ids"]]


def failed(db: psycopg.Connection[Any], message_id: str, code: int | None) -> None:
    result = {"message_id": message_id, "provider_sid": None, "status": "failed",
              "error_code": code, "error_message": "Twilio error"}  # fmt: skip
    db.execute("select record_send_results(%s::jsonb)", (json.dumps([result]),))


def states(db: psycopg.Connection[Any], ids: list[str]) -> list[tuple[str, str | None]]:
    rows = db.execute(
        "select id::text, status, error_message from messages where id = any(%s::uuid[])", (ids,)
    ).fetchall()
    by_id = {r["id"]: (r["status"], r["error_message"]) for r in rows}
    return [by_id[i] for i in ids]


@pytest.mark.parametrize(
    ("change", "reason"),
    [("opt-out", "customer opted out"), ("advisor inactive", "advisor inactive"),
     ("window closed", "outside the 24-hour window"), ("too old", "too old to send")],
)  # fmt: skip
def test_a_resend_obeys_the_rules_of_a_first_send(
    cleanup: CleanupClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    change: str,
    reason: str,
) -> None:
    customer = f.phone("+57391")
    conversation = f.ingest(db, advisor["id"], customer, "hola", permitted=False)["conversation_id"]
    [reply] = commit(db, conversation, [{"author": "ai", "body": "respuesta"}])
    failed(db, reply, 20500)
    if change == "opt-out":
        f.ingest(db, advisor["id"], customer, "STOP", opt="out")
    elif change == "advisor inactive":
        db.execute("update advisors set is_active = false where id = %s", (advisor["id"],))
    elif change == "window closed":
        db.execute("update conversations set last_inbound_at = now() - interval '25 hours'"
                   " where id = %s", (conversation,))  # fmt: skip
    else:
        backdate(db, "messages", "id = %s", (reply,), created_at="2 hours")
    backdate(db, "messages", "id = %s", (reply,), updated_at="1 hour")
    report = cleanup.run()
    assert twilio_api.bodies(customer) == []
    assert states(db, [reply]) == [("canceled", f"not sent: {reason}")]
    assert report["recovery"]["canceled"] == 1 and report["recovery"]["resent"] == 0


def test_what_a_first_send_may_send_a_resend_sends(
    cleanup: CleanupClient, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:  # fmt: skip
    """The STOP confirmation is written after the opt-out, and a template goes outside the
    window: both are resent."""
    stopped, quiet = f.phone("+57392"), f.phone("+57393")
    f.ingest(db, advisor["id"], stopped, "hola", permitted=False)
    opted = f.ingest(db, advisor["id"], stopped, "STOP", opt="out")["conversation_id"]
    [confirmation] = commit(db, opted, [{"author": "system", "body": "No recibirás más mensajes."}])
    late = f.ingest(db, advisor["id"], quiet, "hola", permitted=False)["conversation_id"]
    db.execute("update conversations set last_inbound_at = now() - interval '3 days'"
               " where id = %s", (late,))  # fmt: skip
    template = {"type": "template", "content_sid": "HX" + "b2" * 16, "variables": {"1": "Ana"}}
    [reminder] = commit(db, late, [{"author": "advisor", "body": None, "media": [template]}])
    for message in (confirmation, reminder):
        failed(db, message, 20429)
    backdate(db, "messages", "id = any(%s::uuid[])", ([confirmation, reminder],),
             updated_at="1 hour")  # fmt: skip
    cleanup.run()
    assert twilio_api.bodies(stopped) == ["No recibirás más mensajes."]
    [sent] = [m for m in twilio_api.sent if m["To"] == [f"whatsapp:{quiet}"]]
    assert sent["ContentSid"] == [template["content_sid"]]
    assert [s for s, _ in states(db, [confirmation, reminder])] == ["queued", "queued"]


@pytest.mark.parametrize(
    ("first_code", "twilio_fails_again", "sent", "later_parts"),
    [(20500, False, ["uno", "dos", "tres"], "queued"),
     (20500, True, [], "queued"),
     (21211, False, [], "canceled")],
    ids=["retryable", "fails again", "final"],
)  # fmt: skip
def test_parts_of_a_reply_go_out_in_order_or_not_at_all(
    cleanup: CleanupClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    first_code: int,
    twilio_fails_again: bool,
    sent: list[str],
    later_parts: str,
) -> None:
    """As the webhook leaves a long reply whose first part failed: the part failed, the later
    parts queued (never sent before it)."""
    customer = f.phone("+57394")
    conversation = f.ingest(db, advisor["id"], customer, "hola", permitted=False)["conversation_id"]
    parts = commit(db, conversation, [{"author": "ai", "body": b} for b in ("uno", "dos", "tres")])
    failed(db, parts[0], first_code)
    backdate(db, "messages", "id = any(%s::uuid[])", (parts,), updated_at="1 hour")
    if twilio_fails_again:
        twilio_api.fail_next(customer, 503, 20503)
    cleanup.run()
    assert twilio_api.bodies(customer) == sent
    assert {s for s, _ in states(db, parts[1:])} == {later_parts}


def test_a_read_timeout_is_looked_up_never_resent_blindly(
    cleanup: CleanupClient, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:  # fmt: skip
    """Twilio accepted the reply but its answer never reached the webhook (read timeout) and
    no status callback arrived: the sweep finds the message in Twilio's list and records it."""
    customer = f.phone("+57395")
    twilio_api.time_out_next(customer)
    WebhookClient().inbound(customer, advisor["twilio_phone_number"], "¿abren hoy?")
    [row] = db.execute(
        "select id::text, status, error_code, provider_sid from messages"
        " where direction = 'outbound' and advisor_id = %s", (advisor["id"],),
    ).fetchall()  # fmt: skip
    assert (row["status"], row["error_code"], row["provider_sid"]) == ("failed", None, None)
    backdate(db, "messages", "id = %s", (row["id"],), updated_at="1 hour")
    report = cleanup.run()
    assert len(twilio_api.bodies(customer)) == 1
    assert report["recovery"]["already_sent"] == 1 and report["recovery"]["resent"] == 0
    after = db.execute("select provider_sid from messages where id = %s", (row["id"],)).fetchone()
    assert after == {"provider_sid": twilio_api.resources[-1]["sid"]}


def test_a_message_with_the_same_text_already_recorded_is_not_mistaken_for_it(
    cleanup: CleanupClient, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:  # fmt: skip
    """Two advisor messages with the same text: the first went (its sid is recorded), the
    second timed out before Twilio had it. The second is sent, not matched to the first."""
    customer = f.phone("+57396")
    conversation = f.ingest(db, advisor["id"], customer, "hola", permitted=False)["conversation_id"]
    services = shared.services.get_services()
    first = services.whatsapp.send(advisor["twilio_phone_number"], customer, "Listo")
    f.reply(db, conversation, "Listo", author="advisor", status=first.status,
            provider_sid=first.sid)  # fmt: skip
    [second] = commit(db, conversation, [{"author": "advisor", "body": "Listo"}])
    failed(db, second, None)  # a timeout: unknown whether Twilio has it (it does not)
    backdate(db, "messages", "id = %s", (second,), updated_at="1 hour")
    report = cleanup.run()
    assert twilio_api.bodies(customer) == ["Listo", "Listo"]
    assert report["recovery"]["resent"] == 1


def test_a_row_a_dead_run_left_sending_is_finished_once(
    cleanup: CleanupClient, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:  # fmt: skip
    customer = f.phone("+57397")
    conversation = f.ingest(db, advisor["id"], customer, "hola", permitted=False)["conversation_id"]
    [message] = commit(db, conversation, [{"author": "ai", "body": "¿sigues ahí?"}])
    db.execute("update messages set status = 'sending', attempts = 1 where id = %s", (message,))
    backdate(db, "messages", "id = %s", (message,), updated_at="10 minutes")
    cleanup.run()
    cleanup.run()
    assert twilio_api.bodies(customer) == ["¿sigues ahí?"]
    assert states(db, [message]) == [("queued", None)]
