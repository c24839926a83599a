"""A customer's data rights through the send function (/customers/export, /customers/erase):
real Postgres, Storage and Twilio at the HTTP level. Plus the audit log the database writes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

import shared.services
from devstack.twilio_emulator import twilio_error
from shared.db import DatabaseUnavailable
from tests import factories as f
from tests.conftest import (
    ACCOUNT_SID,
    SUPABASE_URL,
    SendClient,
    TwilioApi,
    WebhookClient,
    as_user,
    mint_token,
)
from tests.functions.test_media import OGG, FakeStorage, media_fields, storage, twilio_media

__all__ = ["storage"]  # the fixture, used by name
pytestmark = pytest.mark.usefixtures("twilio_api", "openai_stub")


class World:
    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.tenant = f.tenant(db)
        self.admin, self.advisor_user = f.user(db), f.user(db)
        f.member(db, self.tenant, self.admin, "admin")
        f.member(db, self.tenant, self.advisor_user, "advisor")
        self.ana = f.advisor(db, self.tenant, self.advisor_user, name="Ana")
        self.luis = f.advisor(db, self.tenant, None, name="Luis")
        self.customer = f.phone("+57372")
        self.other = f.phone("+57373")
        # Words only this world's customers wrote (the database is shared between tests).
        self.mark, self.other_mark = "ZAFIRO" + uuid.uuid4().hex[:8], "RUBI" + uuid.uuid4().hex[:8]


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    return World(db)


def call(send: SendClient, action: str, user: Any, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {mint_token(user)}"}
    return send.client.post(f"/customers/{action}", json=body, headers=headers)


def customer_history(
    w: World, db: psycopg.Connection[Any], webhook: WebhookClient, send: SendClient,
    twilio_api: TwilioApi,
) -> dict[str, Any]:  # fmt: skip
    """The customer writes to two advisors (a voice note among them), an advisor answers with
    an Idempotency-Key, Twilio calls back early, and a message of theirs went unrouted. Another
    customer of the same advisor writes too."""
    media_url = twilio_media(twilio_api, OGG, "audio/ogg")
    webhook.inbound(w.customer, w.ana["twilio_phone_number"], w.mark + "-uno")
    webhook.inbound(
        w.customer, w.ana["twilio_phone_number"], "", **media_fields((media_url, "audio/ogg"))
    )
    webhook.inbound(w.customer, w.luis["twilio_phone_number"], w.mark + "-dos")
    webhook.inbound(w.other, w.ana["twilio_phone_number"], w.other_mark)
    conversation = db.execute(
        "select id from conversations where advisor_id = %s and customer_phone = %s",
        (w.ana["id"], w.customer),
    ).fetchone()
    assert conversation
    sent = send.post(
        {"conversation_id": str(conversation["id"]), "body": w.mark + "-asesora"},
        mint_token(w.advisor_user),
        **{"Idempotency-Key": "k-" + uuid.uuid4().hex},
    )
    assert sent.status_code == 202, sent.get_json()
    sid = db.execute(
        "select provider_sid from messages where conversation_id = %s and author = 'advisor'",
        (conversation["id"],),
    ).fetchone()
    assert sid
    db.execute(
        "insert into early_status_callbacks (provider_sid, status) values (%s, 'read')",
        (sid["provider_sid"],),
    )
    db.execute(
        "insert into unrouted_messages (provider_sid, to_number, from_number, payload)"
        " values (%s, 'whatsapp:+15550000000', %s, %s)",
        (f.sid(), f"whatsapp:{w.customer}", json.dumps({"Body": w.mark + "-perdido"})),
    )
    return {"media_url": media_url, "conversation_id": str(conversation["id"])}


def twilio_media_delete(twilio_api: TwilioApi, media_url: str, failures: int = 0) -> None:
    """Twilio's Media API: DELETE answers 500 `failures` times, 204 once, then 404 (gone)."""
    for _ in range(failures):
        twilio_api.mock.add("DELETE", media_url + ".json", status=500,
                            json=twilio_error(500, 20500, "Internal Server Error"))  # fmt: skip
    twilio_api.mock.add("DELETE", media_url + ".json", status=204)
    twilio_api.mock.add("DELETE", media_url + ".json", status=404,
                        json=twilio_error(404, 20404, "The requested resource was not found"))  # fmt: skip


def traces(db: psycopg.Connection[Any], needles: list[str]) -> dict[str, int]:
    """Rows mentioning any needle, per table: every table in public (each row as text, so a
    new table or column cannot escape) and Realtime's messages."""
    tables = [r["table_name"] for r in db.execute(
        "select table_name from information_schema.tables"
        " where table_schema = 'public' and table_type = 'BASE TABLE'"
    )]  # fmt: skip
    found = {}
    for schema, table in [("public", t) for t in tables] + [("realtime", "messages")]:
        query = sql.SQL("select count(*) as n from {}.{} x where x::text like any(%s)").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = db.execute(query, ([f"%{n}%" for n in needles],)).fetchone()
        if row and row["n"]:
            found[f"{schema}.{table}"] = row["n"]
    return found


def test_export_holds_exactly_the_customers_data(
    send: SendClient, webhook: WebhookClient, world: World, db: psycopg.Connection[Any],
    twilio_api: TwilioApi, storage: FakeStorage,
) -> None:  # fmt: skip
    customer_history(world, db, webhook, send, twilio_api)
    answer = call(send, "export", world.admin, {"customer_phone": world.customer})
    assert answer.status_code == 200, answer.get_json()
    export = answer.get_json()
    assert {c["advisor_name"] for c in export["conversations"]} == {"Ana", "Luis"}
    bodies = [m["body"] for c in export["conversations"] for m in c["messages"]]
    assert {f"{world.mark}-{n}" for n in ("uno", "dos", "asesora")} <= set(bodies)
    expected = db.execute(
        "select count(*) as n from messages m join conversations c on c.id = m.conversation_id"
        " where c.tenant_id = %s and c.customer_phone = %s",
        (world.tenant, world.customer),
    ).fetchone()
    assert expected and len(bodies) == expected["n"]
    text = json.dumps(export)
    assert world.other not in text and world.other_mark not in text
    runs = [r for c in export["conversations"] for r in c["ai_runs"]]
    assert runs and all(set(r) == {"model", "prompt_tokens", "completion_tokens",
                                   "cached_tokens", "latency_ms", "outcome", "created_at"}
                        for r in runs)  # fmt: skip
    [voice] = [i for c in export["conversations"] for m in c["messages"] for i in m["media"]]
    assert voice["url"].startswith(SUPABASE_URL + "/storage/v1/object/sign/whatsapp-media/")
    assert "twilio_url" not in voice and "/sign/whatsapp-media/" in voice["url"]


@pytest.mark.parametrize("action", ["export", "erase"])
def test_only_tenant_admins_and_clear_errors(
    send: SendClient, world: World, db: psycopg.Connection[Any], action: str
) -> None:
    body = {"customer_phone": world.customer}
    refused = call(send, action, world.advisor_user, body)
    assert (refused.status_code, refused.get_json()["error"]) == (403, "forbidden")
    bad = call(send, action, world.admin, {"customer_phone": "3001234567"})
    assert (bad.status_code, bad.get_json()["error"]) == (422, "invalid_body")
    other_admin = f.user(db)
    f.member(db, f.tenant(db), other_admin, "admin")
    f.member(db, world.tenant, other_admin, "admin")
    ambiguous = call(send, action, other_admin, body)
    assert (ambiguous.status_code, ambiguous.get_json()["error"]) == (422, "invalid_value")
    named = call(send, action, other_admin, {**body, "tenant_id": str(world.tenant)})
    assert named.status_code == (404 if action == "export" else 200)


def test_erase_leaves_no_trace_and_a_second_erase_reports_zero(
    send: SendClient, webhook: WebhookClient, world: World, db: psycopg.Connection[Any],
    twilio_api: TwilioApi, storage: FakeStorage,
) -> None:  # fmt: skip
    history = customer_history(world, db, webhook, send, twilio_api)
    twilio_media_delete(twilio_api, history["media_url"])
    stored = [p for p in storage.uploads if history["conversation_id"] in p]
    assert stored and traces(db, [world.customer, world.mark])  # there is something to erase

    answer = call(send, "erase", world.admin, {"customer_phone": world.customer})
    assert answer.status_code == 200, answer.get_json()
    counts = answer.get_json()["counts"]
    assert counts["conversations"] == 2 and counts["messages"] >= 6
    assert counts["storage_objects"] == len(stored) and counts["twilio_media"] == 1
    assert counts["unrouted_messages"] == 1 and counts["early_status_callbacks"] == 1
    assert counts["idempotency_records"] == 1 and counts["realtime_messages"] > 0

    assert traces(db, [world.customer, world.mark]) == {}
    assert sorted(storage.removed) == sorted(stored)  # Storage was asked for every object
    media_calls = [c.request for c in twilio_api.mock.calls if "/Media/" in str(c.request.url)]
    assert media_calls[-1].method == "DELETE"  # Twilio's copy of the voice note too
    assert traces(db, [world.other, world.other_mark])  # the other customer is untouched

    again = call(send, "erase", world.admin, {"customer_phone": world.customer})
    assert again.status_code == 200
    assert set(again.get_json()["counts"].values()) == {0}

    webhook.inbound(world.customer, world.ana["twilio_phone_number"], "Hola de nuevo")
    fresh = db.execute(
        "select id from conversations where customer_phone = %s", (world.customer,)
    ).fetchall()
    assert len(fresh) == 1 and str(fresh[0]["id"]) != history["conversation_id"]


def test_a_crash_mid_erase_resumes_the_same_erasure(
    send: SendClient, webhook: WebhookClient, world: World, db: psycopg.Connection[Any],
    twilio_api: TwilioApi, storage: FakeStorage, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    history = customer_history(world, db, webhook, send, twilio_api)
    twilio_media_delete(twilio_api, history["media_url"], failures=1)
    body = {"customer_phone": world.customer}

    # Storage fails: nothing of the rows is gone, the erasure stays open.
    storage.fail_removes = 1
    paused = call(send, "erase", world.admin, body)
    assert (paused.status_code, paused.get_json()["error"]) == (503, "erasure_incomplete")
    assert traces(db, [world.mark]) and not storage.removed

    # Twilio fails after Storage removed the objects: the rows stay, they still name the media.
    twilio_down = call(send, "erase", world.admin, body)
    assert (twilio_down.status_code, twilio_down.get_json()["error"]) == (503, "erasure_incomplete")
    assert storage.removed and traces(db, [world.mark])

    # The database goes away between Storage/Twilio and the rows.
    services = shared.services.get_services()
    real = services.db.value

    def down_once(query: str, *args: Any, **kwargs: Any) -> Any:
        if "finish_customer_erasure" in query and not hasattr(down_once, "done"):
            down_once.done = True  # type: ignore[attr-defined]
            raise DatabaseUnavailable("connection lost")
        return real(query, *args, **kwargs)

    monkeypatch.setattr(services.db, "value", down_once)
    lost = call(send, "erase", world.admin, body)
    assert lost.status_code == 503
    assert traces(db, [world.mark])  # the media went first; the rows wait for the next try

    done = call(send, "erase", world.admin, body)
    assert done.status_code == 200
    assert traces(db, [world.customer, world.mark]) == {}
    requests = db.execute(
        "select id, status, counts from erasure_requests where tenant_id = %s", (world.tenant,)
    ).fetchall()
    assert len(requests) == 1 and requests[0]["status"] == "done"  # one erasure, resumed
    assert (
        str(requests[0]["id"]) == done.get_json()["request_id"] == paused.get_json()["request_id"]
    )
    assert requests[0]["counts"]["twilio_media"] == 1  # deleted once, not counted again
    assert requests[0]["counts"]["storage_objects"] == len(storage.removed)


def test_media_stored_during_the_erasure_is_removed_before_the_rows(
    send: SendClient, webhook: WebhookClient, world: World, db: psycopg.Connection[Any],
    twilio_api: TwilioApi, storage: FakeStorage, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    history = customer_history(world, db, webhook, send, twilio_api)
    twilio_media_delete(twilio_api, history["media_url"])
    conversation = history["conversation_id"]
    late = f"{world.tenant}/{world.ana['id']}/{conversation}/replies/late.ogg"
    services = shared.services.get_services()
    real = services.db.value

    def reply_stored_meanwhile(query: str, *args: Any, **kwargs: Any) -> Any:
        if "finish_customer_erasure" in query and late not in storage.asked:
            # A voice reply reaches Storage after the erasure listed the objects.
            db.execute(
                "insert into storage.objects (bucket_id, name) values ('whatsapp-media', %s)"
                " on conflict do nothing",
                (late,),
            )
        return real(query, *args, **kwargs)

    monkeypatch.setattr(services.db, "value", reply_stored_meanwhile)
    answer = call(send, "erase", world.admin, {"customer_phone": world.customer})
    assert answer.status_code == 200, answer.get_json()
    assert late in storage.asked  # removed in a second round, before any row went
    assert traces(db, [world.customer, world.mark]) == {}


def test_audit_records_who_did_what_and_nobody_changes_it(
    send: SendClient,
    webhook: WebhookClient,
    world: World,
    db: psycopg.Connection[Any],
) -> None:
    webhook.inbound(world.customer, world.ana["twilio_phone_number"], "Hola")
    conversation = db.execute(
        "select id from conversations where customer_phone = %s", (world.customer,)
    ).fetchone()
    assert conversation
    cid = conversation["id"]
    # The console's changes, committed with the user's claims set as the Data API sets them.
    for statement in (
        "update conversations set ai_attention = false where id = %s",
        "update conversations set ai_attention = true where id = %s",
        "update conversations set ai_attention = false, ai_disabled_at = now() where id = %s",
    ):
        with db.transaction():
            db.execute(
                "select set_config('request.jwt.claims', %s, true)",
                (json.dumps({"sub": str(world.advisor_user), "role": "authenticated"}),),
            )
            db.execute(statement, (cid,))
    with db.transaction():
        db.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": str(world.admin), "role": "authenticated"}),),
        )
        db.execute(
            "update tenants set settings = '{\"templates\": []}' where id = %s", (world.tenant,)
        )
        db.execute("update advisors set name = 'Ana María' where id = %s", (world.ana["id"],))
        db.execute("update tenant_members set role = 'supervisor' where user_id = %s",
                   (world.advisor_user,))  # fmt: skip
    db.execute("update conversations set ai_attention = true, ai_disabled_at = null where id = %s",
               (cid,))  # fmt: skip
    sent = send.post(
        {"conversation_id": str(cid), "body": "Hola, soy Ana"}, mint_token(world.admin)
    )
    assert sent.status_code == 202, sent.get_json()
    document = {"title": "FAQ", "format": "text", "content": "Abrimos de 8 a 6."}
    headers = {"Authorization": f"Bearer {mint_token(world.admin)}"}
    source = send.client.post("/knowledge", json=document, headers=headers).get_json()["source_id"]
    assert send.client.delete(f"/knowledge/{source}", headers=headers).status_code == 200
    assert call(send, "export", world.admin, {"customer_phone": world.customer}).status_code == 200
    assert call(send, "erase", world.admin, {"customer_phone": world.customer}).status_code == 200

    with as_user(db, world.admin) as conn:
        events = conn.execute(
            "select action, actor_user_id, target_id, details from audit_events"
            " where tenant_id = %s order by id", (world.tenant,),
        ).fetchall()  # fmt: skip
    actions = [(e["action"], e["actor_user_id"]) for e in events]
    for expected in [
        ("conversation.taken_over", world.advisor_user), ("ai.resumed", world.advisor_user),
        ("ai.turned_off", world.advisor_user), ("tenant.settings_changed", world.admin),
        ("advisor.changed", world.admin), ("member.changed", world.admin),
        ("advisor.message_sent", world.admin), ("knowledge.uploaded", world.admin),
        ("knowledge.deleted", world.admin), ("customer.exported", world.admin),
        ("customer.erased", world.admin),
    ]:  # fmt: skip
        assert expected in actions, expected
    # Without claims (the functions acting alone) a resume is not a person's action.
    assert actions.count(("ai.resumed", world.advisor_user)) == 1
    assert ("ai.resumed", None) not in actions

    with as_user(db, world.advisor_user) as conn:  # advisors (now supervisor) read nothing
        assert conn.execute("select count(*) as n from audit_events").fetchone()["n"] == 0  # type: ignore[index]
    for statement in ("update audit_events set action = 'x'", "delete from audit_events"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(db, world.admin) as conn:
            conn.execute(statement)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot be changed"):
        db.execute("update audit_events set action = 'x'")


def test_retention_keeps_audit_events_for_the_configured_days(
    db: psycopg.Connection[Any], world: World
) -> None:
    db.execute(
        "insert into audit_events (tenant_id, action, target_type, created_at) values"
        " (%s, 'old', 'test', now() - interval '400 days'),"
        " (%s, 'recent', 'test', now() - interval '300 days')",
        (world.tenant, world.tenant),
    )
    purged = db.execute(
        "select public.purge_audit_events(now() - make_interval(days => 365), 1000) as n"
    ).fetchone()
    assert purged and purged["n"] == 1
    left = {r["action"] for r in db.execute(
        "select action from audit_events where tenant_id = %s and target_type = 'test'",
        (world.tenant,),
    )}  # fmt: skip
    assert left == {"recent"}


def test_twilio_media_urls_name_the_message_and_media() -> None:
    from shared.whatsapp import _MEDIA_URL

    url = (
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'a' * 32}"
        f"/Media/ME{'b' * 32}"
    )
    found = _MEDIA_URL.search(url)
    assert found and found["message"] == "MM" + "a" * 32 and found["media"] == "ME" + "b" * 32


def test_a_large_export_goes_to_storage_and_the_erasure_removes_it(
    send: SendClient, webhook: WebhookClient, world: World, db: psycopg.Connection[Any],
    twilio_api: TwilioApi, storage: FakeStorage, make_services: Any,
) -> None:  # fmt: skip
    history = customer_history(world, db, webhook, send, twilio_api)
    twilio_media_delete(twilio_api, history["media_url"])
    make_services(EXPORT_INLINE_MAX_BYTES="100")
    answer = call(send, "export", world.admin, {"customer_phone": world.customer})
    assert answer.status_code == 200
    link = answer.get_json()
    [path] = [p for p in storage.uploads if "/exports/" in p]
    assert storage.content_types[path] == "application/json"
    assert f'"customer_phone": "{world.customer}"'.encode() in storage.uploads[path]
    assert path in link["url"] and link["bytes"] > 100
    # What Storage records for the upload; the erasure finds the file by its folder.
    db.execute(
        "insert into storage.objects (bucket_id, name) values ('whatsapp-media', %s)", (path,)
    )
    assert call(send, "erase", world.admin, {"customer_phone": world.customer}).status_code == 200
    assert path in storage.removed
