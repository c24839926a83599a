"""The cleanup function on the real Postgres: recovery, handoff expiry, retention, reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import requests
import respx

from devstack import functions
from tests import factories as f
from tests.conftest import CLEANUP_AUTH, CLEANUP_TOKEN, CleanupClient, TwilioApi, backdate
from tests.functions.test_webhook import in_parallel

# Sweeps act on every row of a database: each test here has one of its own.
pytestmark = [pytest.mark.usefixtures("twilio_api"), pytest.mark.own_database]


@pytest.fixture
def advisor(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return f.advisor(db, f.tenant(db), name="Luis Gómez")


def test_token_and_method(cleanup: CleanupClient) -> None:
    assert cleanup.client.post("/").status_code == 401
    assert cleanup.client.post("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert cleanup.client.get("/", headers=CLEANUP_AUTH).status_code == 405
    oidc_and_token = {"Authorization": "Bearer google-oidc-token", "X-Cleanup-Token": CLEANUP_TOKEN}
    assert cleanup.client.post("/?dry_run=1", headers=oidc_and_token).status_code == 200


def test_unanswered_message_gets_exactly_one_reply_even_with_overlapping_runs(
    cleanup: CleanupClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:
    customer = f.phone("+57360")
    stored = f.ingest(db, advisor["id"], customer, "¿me ayudas?")  # an instance died after this
    backdate(db, "messages", "id = %s", (stored["message_id"],), created_at="10 minutes")
    reports = in_parallel(cleanup.run, cleanup.run)
    assert len(twilio_api.bodies(customer)) == 1
    assert sum(r["recovery"]["turns_answered"] for r in reports) == 1
    row = db.execute(
        "select handled_at is not null as handled from messages where id = %s",
        (stored["message_id"],),
    ).fetchone()
    assert row == {"handled": True}
    cleanup.run()
    assert len(twilio_api.bodies(customer)) == 1


def test_unanswered_turn_under_human_override_is_not_answered(
    cleanup: CleanupClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:
    customer = f.phone("+57361")
    stored = f.ingest(db, advisor["id"], customer, "hola")
    db.execute(
        "select set_handoff(%s, false, now() + interval '1 hour', 'advisor')",
        (stored["conversation_id"],),
    )
    backdate(db, "messages", "id = %s", (stored["message_id"],), created_at="10 minutes")
    cleanup.run()
    assert twilio_api.bodies(customer) == []


def _outbound(db: psycopg.Connection[Any], conversation_id: str, **row: Any) -> str:
    body = row.pop("body", "reintento")
    return str(f.reply(db, conversation_id, body, author="advisor", **row)["id"])


def test_retryable_failure_is_resent_once_and_non_retryable_never(
    cleanup: CleanupClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:
    customer = f.phone("+57362")
    conversation = f.ingest(db, advisor["id"], customer, "hola", permitted=False)["conversation_id"]
    retryable = _outbound(db, conversation, status="failed", error_code=20500)
    window = _outbound(db, conversation, status="failed", error_code=63016, body="fuera de ventana")
    stuck = _outbound(db, conversation, status="queued", body="nunca enviado")
    backdate(db, "messages", "id = any(%s)", ([retryable, window, stuck],), updated_at="1 hour")
    in_parallel(cleanup.run, cleanup.run)
    cleanup.run()
    assert sorted(twilio_api.bodies(customer)) == ["nunca enviado", "reintento"]
    rows = {
        r["id"]: (r["status"], r["attempts"])
        for r in db.execute("select id::text, status, attempts from messages where id = any(%s::uuid[])",
                            ([retryable, window, stuck],))
    }  # fmt: skip
    assert rows == {retryable: ("queued", 2), window: ("failed", 1), stuck: ("queued", 1)}


def test_resend_gives_up_after_max_attempts(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    make_services(RESEND_MAX_ATTEMPTS="2")
    cleanup = CleanupClient()
    customer = f.phone("+57363")
    conversation = f.ingest(db, advisor["id"], customer, "hola", permitted=False)["conversation_id"]
    message = _outbound(db, conversation, status="failed", error_code=20429)
    for _ in range(3):
        twilio_api.fail_next(customer, 429, 20429)
        backdate(db, "messages", "id = %s", (message,), updated_at="1 day")
        cleanup.run()
    row = db.execute("select status, attempts from messages where id = %s", (message,)).fetchone()
    assert row == {"status": "failed", "attempts": 2}
    assert twilio_api.bodies(customer) == []


def test_handoff_expiry_respects_permanent_off(
    cleanup: CleanupClient, advisor: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    ids = [
        f.ingest(db, advisor["id"], f.phone("+57364"), "hola")["conversation_id"] for _ in range(3)
    ]
    expired, disabled, running = ids
    db.execute("update conversations set ai_attention = false, human_override_until = now() - interval '1 second'"
               " where id = any(%s::uuid[])", ([expired, disabled],))  # fmt: skip
    db.execute("update conversations set ai_disabled_at = now() where id = %s", (disabled,))
    db.execute("update conversations set ai_attention = false, human_override_until = now() + interval '1 hour'"
               " where id = %s", (running,))  # fmt: skip
    report = cleanup.run()
    assert report["handoff_expiry"]["conversations"] == 1
    states = {
        str(r["id"]): r["ai_attention"]
        for r in db.execute(
            "select id, ai_attention from conversations where id = any(%s::uuid[])", (ids,)
        )
    }
    assert states == {expired: True, disabled: False, running: False}


def test_retention_per_tenant_with_storage_cleanup(
    cleanup: CleanupClient, db: psycopg.Connection[Any]
) -> None:
    default_tenant, short_tenant = f.tenant(db, "default"), f.tenant(db, "short")
    db.execute("update tenants set retention_days = 7 where id = %s", (short_tenant,))
    long_adv, short_adv = f.advisor(db, default_tenant), f.advisor(db, short_tenant)
    old = f.ingest(db, long_adv["id"], f.phone("+57365"), "viejo")
    edge = f.ingest(db, long_adv["id"], f.phone("+57366"), "casi viejo")
    week = f.ingest(db, short_adv["id"], f.phone("+57367"), "de hace ocho días")
    week_kept_elsewhere = f.ingest(db, long_adv["id"], f.phone("+57368"), "de hace ocho días")
    db.execute("update messages set media = %s::jsonb where id = %s",
               (json.dumps([{"path": f"{short_tenant}/x/1.ogg", "content_type": "audio/ogg"}]), week["message_id"]))  # fmt: skip
    backdate(db, "messages", "id = %s", (old["message_id"],), created_at="91 days")
    backdate(db, "messages", "id = %s", (edge["message_id"],), created_at="89 days 23 hours")
    backdate(db, "messages", "id = any(%s::uuid[])", ([week["message_id"], week_kept_elsewhere["message_id"]],),
             created_at="8 days")  # fmt: skip
    with respx.mock(assert_all_called=False) as storage:
        storage.route(host="127.0.0.1").pass_through()  # the local Upstash bridge
        route = storage.delete(url__regex=r".*/storage/v1/object/whatsapp-media$").mock(
            return_value=httpx.Response(
                200, json=[{"name": f"{short_tenant}/x/1.ogg", "bucket_id": "whatsapp-media"}]
            )
        )
        report = cleanup.run()
    assert route.call_count == 1
    assert route.calls[0].request.headers["Authorization"].startswith("Bearer ")
    assert json.loads(route.calls[0].request.content) == {"prefixes": [f"{short_tenant}/x/1.ogg"]}
    assert report["retention"]["storage_objects"] == 1
    remaining = {
        str(r["id"]) for r in db.execute(
            "select id from messages where id = any(%s::uuid[])",
            ([old["message_id"], edge["message_id"], week["message_id"], week_kept_elsewhere["message_id"]],),
        )
    }  # fmt: skip
    assert remaining == {edge["message_id"], week_kept_elsewhere["message_id"]}
    closed = db.execute(
        "select status from conversations where id = any(%s::uuid[]) order by status",
        ([old["conversation_id"], edge["conversation_id"]],),
    ).fetchall()
    assert [r["status"] for r in closed] == ["closed", "open"]


def test_dry_run_changes_nothing(
    cleanup: CleanupClient, advisor: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    stored = f.ingest(db, advisor["id"], f.phone("+57369"), "viejo")
    backdate(db, "messages", "id = %s", (stored["message_id"],), created_at="100 days")
    report = cleanup.run(dry_run=True)
    assert report["dry_run"] is True and report["preview"]["messages"] == 1
    assert db.execute(
        "select count(*) as n from messages where id = %s", (stored["message_id"],)
    ).fetchone() == {"n": 1}


def test_a_failing_part_is_reported_and_the_others_run(
    cleanup: CleanupClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> dict[str, int]:
        raise RuntimeError("boom")

    monkeypatch.setattr("shared.cleanup._expire_handoffs", broken)
    report = cleanup.run()
    assert report["handoff_expiry"]["error"] == "RuntimeError: boom"
    assert "messages" in report["retention"] and "error" not in report["recovery"]
    for part in ("_recovery", "_due_alerts", "_retention"):
        monkeypatch.setattr(f"shared.cleanup.{part}", broken)
    assert cleanup.client.post("/", headers=CLEANUP_AUTH).status_code == 500


def test_two_hundred_thousand_old_messages_go_in_bounded_batches(
    make_services: Any, db: psycopg.Connection[Any]
) -> None:
    make_services(CLEANUP_BATCH_SIZE="20000")
    cleanup = CleanupClient()
    tenant = f.tenant(db, "bulk-retention")
    adv = f.advisor(db, tenant)
    with db.transaction():
        db.execute("alter table messages disable trigger messages_broadcast_insert")
        db.execute(
            "insert into conversations (tenant_id, advisor_id, customer_phone)"
            " select %s, %s, '+5790' || lpad(g::text, 6, '0') from generate_series(1, 1000) g",
            (tenant, adv["id"]),
        )
        db.execute(
            "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body, status,"
            " created_at, handled_at)"
            " select %s, %s, c.id, 'inbound', 'customer', 'old', 'received', now() - interval '120 days', now()"
            " from conversations c, generate_series(1, 200) g where c.advisor_id = %s",
            (tenant, adv["id"], adv["id"]),
        )
        db.execute("alter table messages enable trigger messages_broadcast_insert")
    report = cleanup.run()
    assert report["retention"]["messages"] == 200_000
    assert report["retention"]["batches"] >= 10
    left = db.execute(
        "select count(*) as n from messages where tenant_id = %s", (tenant,)
    ).fetchone()
    assert left == {"n": 0}
    closed = db.execute(
        "select count(*) as n from conversations where tenant_id = %s and status = 'closed'",
        (tenant,),
    ).fetchone()
    assert closed == {"n": 1000}


@pytest.fixture
def served_cleanup(settings_env: dict[str, str]) -> Iterator[str]:
    port = functions.free_port()
    process = functions.serve("cleanup", port, settings_env)
    try:
        functions.wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        functions.stop(process)


def test_served_cleanup_answers_http(served_cleanup: str) -> None:
    assert requests.post(served_cleanup, timeout=10).status_code == 401
    response = requests.post(served_cleanup + "?dry_run=1", headers=CLEANUP_AUTH, timeout=30)
    assert response.status_code == 200 and "preview" in response.json()


STORAGE_DELETE = r".*/storage/v1/object/whatsapp-media$"


def _old_messages_with_media(db: psycopg.Connection[Any], count: int) -> tuple[str, str]:
    tenant = f.tenant(db, "media-retention")
    adv = f.advisor(db, tenant)
    stored = f.ingest(db, adv["id"], f.phone("+57398"), "foto", name="Carla Ruiz")
    db.execute("update conversations set handoff_reason = 'quiere hablar con Luis'"
               " where id = %s", (stored["conversation_id"],))  # fmt: skip
    db.execute(
        "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body,"
        " status, media, created_at, handled_at)"
        " select %s, %s, %s, 'inbound', 'customer', null, 'received',"
        " jsonb_build_array(jsonb_build_object('path', %s || '/' || g || '.jpg')),"
        " now() - interval '100 days', now() from generate_series(1, %s) g",
        (tenant, adv["id"], stored["conversation_id"], str(tenant), count - 1),
    )
    backdate(db, "messages", "id = %s", (stored["message_id"],), created_at="100 days")
    return str(tenant), str(stored["conversation_id"])


def test_retention_removes_media_before_rows_in_calls_storage_accepts(
    cleanup: CleanupClient, db: psycopg.Connection[Any]
) -> None:
    """Storage deletes at most 1,000 objects a call; a Storage error keeps the rows (and so
    the paths) for the next run; a closed conversation forgets the customer."""
    tenant, conversation = _old_messages_with_media(db, 2_501)
    with respx.mock(assert_all_called=False) as storage:
        storage.route(host="127.0.0.1").pass_through()
        storage.delete(url__regex=STORAGE_DELETE).mock(
            return_value=httpx.Response(500, json={"statusCode": "500", "error": "internal"})
        )
        failed = cleanup.run()
    assert "error" in failed["retention"]
    left = db.execute("select count(*) as n from messages where tenant_id = %s", (tenant,))
    assert left.fetchone() == {"n": 2_501}
    with respx.mock(assert_all_called=False) as storage:
        storage.route(host="127.0.0.1").pass_through()
        route = storage.delete(url__regex=STORAGE_DELETE).mock(
            side_effect=lambda request: httpx.Response(
                200, json=[{"name": p} for p in json.loads(request.content)["prefixes"]]
            )
        )
        report = cleanup.run()
    sizes = [len(json.loads(call.request.content)["prefixes"]) for call in route.calls]
    assert sizes == [1000, 1000, 500] and report["retention"]["storage_objects"] == 2_500
    left = db.execute("select count(*) as n from messages where tenant_id = %s", (tenant,))
    assert left.fetchone() == {"n": 0}
    closed = db.execute(
        "select status, customer_name, last_message_preview, handoff_reason from conversations"
        " where id = %s", (conversation,),
    ).fetchone()  # fmt: skip
    assert closed == {"status": "closed", "customer_name": None, "last_message_preview": None,
                      "handoff_reason": None}  # fmt: skip


def test_recovery_leases_one_conversations_turn_at_a_time(
    advisor: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    """A claim leases exactly the messages of the turn it hands out: the next claim gets the
    next conversation at once, not after a lease meant for a whole batch ran out."""
    first = f.ingest(db, advisor["id"], f.phone("+57399"), "uno")
    second = f.ingest(db, advisor["id"], f.phone("+57399"), "dos")
    backdate(db, "messages", "id = any(%s::uuid[])",
             ([first["message_id"], second["message_id"]],), created_at="10 minutes")  # fmt: skip
    claim = ("select claim_unanswered_turn(interval '2 minutes', interval '1 hour',"
             " interval '20 seconds') as t")  # fmt: skip
    turns = [db.execute(claim).fetchone() for _ in range(3)]
    claimed = [t["t"]["conversation_id"] if t and t["t"] else None for t in turns]
    assert claimed == [first["conversation_id"], second["conversation_id"], None]
    leased = db.execute(
        "select count(*) as n from messages where id = any(%s::uuid[])"
        " and lease_until between now() + interval '19 seconds' and now() + interval '21 seconds'",
        ([first["message_id"], second["message_id"]],),
    ).fetchone()
    assert leased == {"n": 2}
