"""The send function on the real Postgres with real RLS; Twilio REST through `responses`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests

import shared.services
from devstack import functions
from devstack.twilio_emulator import TwilioEmulator
from shared.auth import LEEWAY_SECONDS
from shared.db import DatabaseUnavailable
from tests import factories as f
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    DASHBOARD_ORIGIN,
    PUBLIC_URL,
    Jwks,
    SendClient,
    TwilioApi,
    eventually,
    mint_token,
)

pytestmark = pytest.mark.usefixtures("twilio_api")


@pytest.fixture
def team(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """Tenant with advisors A and B (each with a live conversation) and an admin."""
    tenant = f.tenant(db)
    users = {name: f.user(db) for name in ("a", "b", "admin", "other_admin")}
    f.member(db, tenant, users["a"], "advisor")
    f.member(db, tenant, users["b"], "advisor")
    f.member(db, tenant, users["admin"], "admin")
    f.member(db, f.tenant(db), users["other_admin"], "admin")
    advisors = {k: f.advisor(db, tenant, users[k], name=k.upper()) for k in ("a", "b")}
    conversations = {
        k: f.ingest(db, adv["id"], f.phone("+57350"), "hola")["conversation_id"]
        for k, adv in advisors.items()
    }
    return {"users": users, "advisors": advisors, "conversations": conversations}


def test_advisor_sends_in_their_conversation(
    send: SendClient, team: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    conversation = team["conversations"]["a"]
    response = send.post(
        {"conversation_id": conversation, "body": "Hola, soy A"}, mint_token(team["users"]["a"])
    )
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert answer["status"] == "queued"
    sent = twilio_api.sent[-1]
    assert sent["From"] == [f"whatsapp:{team['advisors']['a']['twilio_phone_number']}"]
    assert sent["Body"] == ["Hola, soy A"]
    assert sent["StatusCallback"] == [
        f"{PUBLIC_URL}/status?message_id={answer['message_id']}#rc=3&rp=all"
    ]
    row = db.execute(
        "select author, status, provider_sid from messages where id = %s", (answer["message_id"],)
    ).fetchone()
    assert row and row["author"] == "advisor" and row["provider_sid"].startswith("SM")
    # A human took over: the AI pauses for HANDOFF_HOURS.
    conv = db.execute(
        "select ai_attention, human_override_until > now() + interval '23 hours' as paused, needs_human"
        " from conversations where id = %s",
        (conversation,),
    ).fetchone()
    assert conv == {"ai_attention": False, "paused": True, "needs_human": False}


def test_token_checks(send: SendClient, team: dict[str, Any], jwks: Jwks) -> None:
    body = {"conversation_id": team["conversations"]["a"], "body": "hola"}
    user = team["users"]["a"]
    assert send.post(body).status_code == 401
    assert send.post(body, "not-a-jwt").status_code == 401
    assert send.post(body, mint_token(user, expires_in=-LEEWAY_SECONDS - 60)).status_code == 401
    assert (
        send.post(
            body, mint_token(user, secret="another-secret-of-at-least-32-chars!!")
        ).status_code
        == 401
    )
    assert send.post(body, mint_token(user, audience="anon")).status_code == 401
    fetches = jwks.fetches
    assert send.post(body, mint_token(user, rsa=jwks)).status_code == 202
    assert send.post(body, mint_token(user, rsa=jwks)).status_code == 202
    assert jwks.fetches - fetches == 1  # keys are cached, not fetched per request
    assert send.post(body, mint_token(user)).get_json()["status"] == "queued"


def test_rls_decides_who_may_send(send: SendClient, team: dict[str, Any]) -> None:
    users, conversations = team["users"], team["conversations"]
    # A cannot send into B's conversation even knowing its id: same answer as a missing one.
    forbidden = send.post(
        {"conversation_id": conversations["b"], "body": "x"}, mint_token(users["a"])
    )
    missing = send.post({"conversation_id": str(uuid.uuid4()), "body": "x"}, mint_token(users["a"]))
    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.get_json() == missing.get_json()
    for key in ("a", "b"):
        assert (
            send.post(
                {"conversation_id": conversations[key], "body": "x"}, mint_token(users["admin"])
            ).status_code
            == 202
        )
    other = send.post(
        {"conversation_id": conversations["a"], "body": "x"}, mint_token(users["other_admin"])
    )
    assert other.status_code == 404


@pytest.mark.parametrize(
    "payload",
    [
        {"body": "sin conversación"},
        {"conversation_id": "not-a-uuid", "body": "x"},
        {"conversation_id": "{c}", "body": "   "},
        {"conversation_id": "{c}"},
        {"conversation_id": "{c}", "body": "x" * 1601},
        {"conversation_id": "{c}", "body": "x", "media_url": ["http://insecure.example/a.jpg"]},
        {"conversation_id": "{c}", "body": "x", "media_url": ["not a url"]},
        {"conversation_id": "{c}", "body": "x", "template": {"content_sid": "HX" + "a" * 32}},
        {"conversation_id": "{c}", "template": {"content_sid": "nope"}},
    ],
)
def test_invalid_bodies_are_422(
    send: SendClient, team: dict[str, Any], payload: dict[str, Any]
) -> None:
    payload = {
        k: (v.replace("{c}", team["conversations"]["a"]) if isinstance(v, str) else v)
        for k, v in payload.items()
    }
    response = send.post(payload, mint_token(team["users"]["a"]))
    assert response.status_code == 422
    assert response.get_json()["error"] == "invalid_body" and response.get_json()["detail"]


def test_24_hour_window_needs_a_template(
    send: SendClient, team: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    conversation = team["conversations"]["a"]
    db.execute(
        "update conversations set last_inbound_at = now() - interval '25 hours' where id = %s",
        (conversation,),
    )
    token = mint_token(team["users"]["a"])
    late = send.post({"conversation_id": conversation, "body": "¿sigues ahí?"}, token)
    assert late.status_code == 422 and late.get_json()["error"] == "outside_24h_window"
    content_sid = "HX" + "b" * 32
    template = {
        "conversation_id": conversation,
        "template": {"content_sid": content_sid, "variables": {"1": "Ana"}},
    }
    assert send.post(template, token).status_code == 202
    assert twilio_api.sent[-1]["ContentSid"] == [content_sid]
    assert twilio_api.sent[-1]["ContentVariables"] == ['{"1": "Ana"}']


def test_opted_out_customer_is_409(
    send: SendClient, team: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    conversation = team["conversations"]["a"]
    db.execute("update conversations set opted_out_at = now() where id = %s", (conversation,))
    response = send.post(
        {"conversation_id": conversation, "body": "hola"}, mint_token(team["users"]["a"])
    )
    assert response.status_code == 409 and response.get_json()["error"] == "opted_out"


@pytest.mark.usefixtures("rate_clock")
def test_advisor_rate_limit_is_429(make_services: Any, team: dict[str, Any]) -> None:
    make_services(SEND_RATE_LIMIT_PER_MINUTE="2")
    send = SendClient()
    token = mint_token(team["users"]["a"])
    codes = [
        send.post(
            {"conversation_id": team["conversations"]["a"], "body": f"m{i}"}, token
        ).status_code
        for i in range(3)
    ]
    assert codes == [202, 202, 429]


def _customer_of(db: psycopg.Connection[Any], conversation_id: str) -> str:
    row = db.execute(
        "select customer_phone from conversations where id = %s", (conversation_id,)
    ).fetchone()
    assert row
    return str(row["customer_phone"])


def test_a_final_twilio_refusal_is_502_and_stored_failed(
    send: SendClient, team: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    twilio_api.fail_next(_customer_of(db, team["conversations"]["a"]), 400, 21211)
    response = send.post(
        {"conversation_id": team["conversations"]["a"], "body": "hola"},
        mint_token(team["users"]["a"]),
    )
    assert response.status_code == 502
    answer = response.get_json()
    assert answer["error"] == "twilio_error" and answer["twilio_code"] == 21211
    row = db.execute(
        "select status, error_code from messages where id = %s", (answer["message_id"],)
    ).fetchone()
    assert row == {"status": "failed", "error_code": 21211}


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (502, None)])
def test_a_passing_twilio_failure_is_202_and_left_to_the_sweep(
    send: SendClient,
    team: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    status: int,
    code: int | None,
) -> None:
    """Stored before Twilio was called: the advisor must not send it again (that would be the
    duplicate); the sweep sends it, after asking Twilio when it is unknown whether it went."""
    twilio_api.fail_next(_customer_of(db, team["conversations"]["a"]), status, code)
    response = send.post(
        {"conversation_id": team["conversations"]["a"], "body": "hola"},
        mint_token(team["users"]["a"]),
    )
    assert response.status_code == 202
    answer = response.get_json()
    assert answer["status"] == "queued" and answer["retrying"] is True
    row = db.execute(
        "select status, error_code from messages where id = %s", (answer["message_id"],)
    ).fetchone()
    # A gateway's 502 without Twilio's error body: unknown whether Twilio has it (code null).
    assert row == {"status": "failed", "error_code": code}


def test_idempotency_key_sends_once(
    send: SendClient, team: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    body = {"conversation_id": team["conversations"]["a"], "body": "una sola vez"}
    token = mint_token(team["users"]["a"])
    first = send.post(body, token, **{"Idempotency-Key": "k-1"})
    second = send.post(body, token, **{"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.get_json() == second.get_json()
    assert twilio_api.bodies().count("una sola vez") == 1
    # Another user's same key is their own request.
    admin = send.post(body, mint_token(team["users"]["admin"]), **{"Idempotency-Key": "k-1"})
    assert (
        admin.status_code == 202
        and admin.get_json()["message_id"] != first.get_json()["message_id"]
    )
    stored = db.execute("select count(*) as n from messages where body = 'una sola vez'").fetchone()
    assert stored == {"n": 2}


def test_an_idempotency_key_is_bound_to_its_request(
    send: SendClient, team: dict[str, Any], twilio_api: TwilioApi
) -> None:
    token = mint_token(team["users"]["a"])
    first = {"conversation_id": team["conversations"]["a"], "body": "primero"}
    assert send.post(first, token, **{"Idempotency-Key": "k-2"}).status_code == 202
    other = send.post({**first, "body": "otro"}, token, **{"Idempotency-Key": "k-2"})
    assert other.status_code == 422
    assert other.get_json()["error"] == "idempotency_key_reused"
    assert twilio_api.bodies() == ["primero"]


def test_a_request_that_died_after_sending_replays_from_the_stored_message(
    send: SendClient,
    team: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twilio accepted the message, then the database went away before the answer was saved:
    the advisor still gets 202, a replay waits out the lease (409), then answers with the
    stored message; the status callback that names the row records the sid; nothing is sent
    twice."""
    services = shared.services.get_services()
    value = services.db.value

    def database_gone_after_the_send(query: str, params: tuple[Any, ...] = (), **kw: Any) -> Any:
        if "update_outbound" in query or "finish_send_request" in query:
            raise DatabaseUnavailable("connection lost")
        return value(query, params, **kw)

    token = mint_token(team["users"]["a"])
    body = {"conversation_id": team["conversations"]["a"], "body": "una vez y ya"}
    with monkeypatch.context() as m:
        m.setattr(services.db, "value", database_gone_after_the_send)
        first = send.post(body, token, **{"Idempotency-Key": "k-3"})
    assert first.status_code == 202
    message_id = first.get_json()["message_id"]
    assert send.post(body, token, **{"Idempotency-Key": "k-3"}).status_code == 409
    db.execute(
        "update send_requests set created_at = now() - interval '61 seconds'"
        " where idempotency_key = 'k-3'"
    )
    replay = send.post(body, token, **{"Idempotency-Key": "k-3"})
    assert replay.status_code == 202
    assert replay.get_json() == {"message_id": message_id, "status": "queued"}
    sid = twilio_api.resources[-1]["sid"]
    db.execute("select record_status(%s, 'delivered', null, null, %s)", (sid, message_id))
    row = db.execute(
        "select status, provider_sid from messages where id = %s", (message_id,)
    ).fetchone()
    assert row == {"status": "delivered", "provider_sid": sid}
    assert twilio_api.bodies().count("una vez y ya") == 1


def test_cors(send: SendClient) -> None:
    allowed = send.client.options("/messages", headers={"Origin": DASHBOARD_ORIGIN})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN
    assert "Idempotency-Key" in allowed.headers["Access-Control-Allow-Headers"]
    denied = send.client.options("/messages", headers={"Origin": "https://evil.example"})
    assert denied.status_code == 403 and "Access-Control-Allow-Origin" not in denied.headers
    assert send.client.get("/messages").status_code == 405


@pytest.fixture
def served_send(settings_env: dict[str, str]) -> Iterator[tuple[str, TwilioEmulator]]:
    emulator = TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, callback_statuses=()).start()
    port = functions.free_port()
    process = functions.serve("send", port, {**settings_env, "TWILIO_API_BASE_URL": emulator.url})
    try:
        functions.wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}", emulator
    finally:
        functions.stop(process)
        emulator.stop()


def test_served_send_answers_http(
    served_send: tuple[str, TwilioEmulator], team: dict[str, Any]
) -> None:
    url, emulator = served_send
    body = {"conversation_id": team["conversations"]["b"], "body": "desde el panel"}
    assert requests.post(url + "/messages", json=body, timeout=10).status_code == 401
    token = mint_token(team["users"]["b"])
    response = requests.post(
        url + "/messages", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 202, response.text
    assert [m["body"] for m in emulator.messages] == ["desde el panel"]


def test_a_body_the_database_cannot_store_is_422_and_nothing_is_sent(
    send: SendClient, team: dict[str, Any], twilio_api: TwilioApi
) -> None:
    response = send.post(
        {"conversation_id": team["conversations"]["a"], "body": "hola\x00"},
        mint_token(team["users"]["a"]),
    )
    assert response.status_code == 422 and response.get_json()["error"] == "invalid_value"
    assert twilio_api.sent == []


@pytest.mark.own_database
def test_a_database_refusal_is_403_not_500(
    send: SendClient, team: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    db.execute(
        "revoke execute on function public.conversation_for_sender(uuid, uuid)"
        " from assistant_functions"
    )
    response = send.post(
        {"conversation_id": team["conversations"]["a"], "body": "hola"},
        mint_token(team["users"]["a"]),
    )
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert twilio_api.sent == []


def test_a_token_whose_sub_is_not_a_user_id_is_401(send: SendClient, team: dict[str, Any]) -> None:
    body = {"conversation_id": team["conversations"]["a"], "body": "hola"}
    assert send.post(body, mint_token("service-account")).status_code == 401


def test_opening_a_conversation_marks_it_read_for_the_customer_too(
    send: SendClient, team: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    """Unread goes to 0, and the customer's newest message gets WhatsApp's read receipt (the
    typing indicator call); only for who may see the conversation."""
    conversation = team["conversations"]["a"]
    newest = f.ingest(db, team["advisors"]["a"]["id"], _customer_of(db, conversation), "¿sigues?")
    token = mint_token(team["users"]["a"])
    response = send.client.post(
        f"/conversations/{conversation}/read", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.get_json() == {"conversation_id": conversation, "read_receipt": True}
    unread = db.execute("select unread_count from conversations where id = %s", (conversation,))
    assert unread.fetchone() == {"unread_count": 0}
    sid = db.execute(
        "select provider_sid from messages where id = %s", (newest["message_id"],)
    ).fetchone()
    eventually(lambda: twilio_api.typing, what="the read receipt")
    assert sid and twilio_api.typing == [sid["provider_sid"]]
    stranger = mint_token(team["users"]["b"])
    hidden = send.client.post(
        f"/conversations/{conversation}/read", headers={"Authorization": f"Bearer {stranger}"}
    )
    assert hidden.status_code == 404
    assert send.client.post(f"/conversations/{conversation}/read").status_code == 401
