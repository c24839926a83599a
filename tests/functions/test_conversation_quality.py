"""What customers and advisors notice: the typing indicator, the handoff summary, business
hours, prompts the provider can cache, and replies checked before they go out (real Postgres
and Redis, Twilio and OpenAI at the HTTP level)."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Any
from unittest.mock import ANY

import psycopg
import pytest

from devstack.fake_openai import FakeOpenAI
from tests import factories as f
from tests.conftest import CleanupClient, TwilioApi, WebhookClient, as_user, eventually

pytestmark = pytest.mark.usefixtures("twilio_api")


@pytest.fixture
def advisor(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return f.advisor(
        db, f.tenant(db), name="Ana Ruiz", personal_phone=f.phone("+57302"),
        settings={"language": "es", "prompt": "Eres el asistente de Ana. Vendemos muebles."},
    )  # fmt: skip


def inbound_sids(db: psycopg.Connection[Any], advisor_id: str) -> list[str]:
    rows = db.execute(
        "select provider_sid from messages where advisor_id = %s and direction = 'inbound'"
        " order by created_at", (advisor_id,),
    ).fetchall()  # fmt: skip
    return [r["provider_sid"] for r in rows]


def conversation(db: psycopg.Connection[Any], advisor_id: str) -> dict[str, Any]:
    row = db.execute("select * from conversations where advisor_id = %s", (advisor_id,)).fetchone()
    assert row
    return dict(row)


# -- 1. the typing indicator --------------------------------------------------------------------
def test_each_ai_turn_shows_typing_for_the_newest_message_without_waiting_for_it(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:  # fmt: skip
    """The indicator call is held (Twilio slow): the reply still goes out; then it lands,
    once, naming the customer's message."""
    make_services()
    twilio_api.typing_hold = threading.Event()
    customer = f.phone("+57340")
    WebhookClient().inbound(customer, advisor["twilio_phone_number"], "Hola, buenas")
    assert len(twilio_api.bodies(customer)) == 1 and twilio_api.typing == []
    twilio_api.typing_hold.set()
    eventually(lambda: twilio_api.typing, what="the typing indicator")
    assert twilio_api.typing == inbound_sids(db, advisor["id"])


def test_the_typing_indicator_can_be_turned_off(
    make_services: Any, advisor: dict[str, Any], twilio_api: TwilioApi
) -> None:
    services = make_services(TYPING_INDICATOR="false")
    customer = f.phone("+57341")
    WebhookClient().inbound(customer, advisor["twilio_phone_number"], "Hola")
    services.whatsapp._background.shutdown(wait=True)  # anything submitted has finished
    assert len(twilio_api.bodies(customer)) == 1 and twilio_api.typing == []


# -- 2. the handoff summary, and giving the conversation back ------------------------------------
def test_a_handoff_stores_and_broadcasts_the_summary_and_alerts_with_it(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi, openai_stub: FakeOpenAI,
) -> None:  # fmt: skip
    make_services()
    f.ingest(db, advisor["id"], advisor["phone_number"], "hola", permitted=False)  # window open
    summary = "Quiere 10 sillas con descuento por volumen.\nYa le di el precio unitario."
    openai_stub.handoff("quiere negociar", "Te paso con Ana.", summary=summary)
    customer = f.phone("+57342")
    WebhookClient().inbound(customer, advisor["twilio_phone_number"], "¿me hacen descuento?")
    row = db.execute(
        "select handoff_summary, handoff_reason, handoff_at is not null as at from conversations"
        " where advisor_id = %s and customer_phone = %s", (advisor["id"], customer),
    ).fetchone()  # fmt: skip
    assert row == {"handoff_summary": summary, "handoff_reason": "quiere negociar", "at": True}
    broadcast = db.execute(
        "select count(*) as n from realtime.messages where topic = %s"
        " and payload -> 'record' ->> 'handoff_summary' = %s",
        (f"advisor:{advisor['id']}", summary),
    ).fetchone()
    assert broadcast and broadcast["n"] >= 1
    [alert] = twilio_api.bodies(advisor["phone_number"])
    assert summary in alert and "quiere negociar" in alert
    assert twilio_api.bodies(customer) == ["Te paso con Ana."]


def test_a_failed_model_still_leaves_the_advisor_a_summary(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any],
    openai_stub: FakeOpenAI,
) -> None:  # fmt: skip
    make_services()
    openai_stub.fail(500)
    customer = f.phone("+57343")
    WebhookClient().inbound(customer, advisor["twilio_phone_number"], "necesito factura de mayo")
    row = conversation(db, advisor["id"])
    assert row["needs_human"] is True
    assert row["handoff_summary"] == "Últimos mensajes del cliente: necesito factura de mayo"


def test_giving_the_conversation_back_to_the_ai_is_recorded(
    db: psycopg.Connection[Any],
) -> None:
    world = f.world(db)
    conversation_id = f.ingest(db, world.advisors["a"]["id"], f.phone("+57344"), "hola")[
        "conversation_id"
    ]
    db.execute(
        "select set_handoff(%s, false, now() + interval '1 day', 'advisor')", (conversation_id,)
    )
    with as_user(db, world.users["advisor_a"]) as conn:
        row = conn.execute(
            "update conversations set ai_attention = true where id = %s"
            " returning ai_resumed_by, ai_resumed_at is not null as at, human_override_until",
            (conversation_id,),
        ).fetchone()
    assert row == {"ai_resumed_by": world.users["advisor_a"], "at": True,
                   "human_override_until": None}  # fmt: skip
    db.execute("update conversations set human_override_until = now() - interval '1 second'"
               " where id = %s", (conversation_id,))  # fmt: skip
    db.execute("select expire_handoffs(100)")
    automatic = db.execute(
        "select ai_attention, ai_resumed_by, ai_resumed_at is not null as at from conversations"
        " where id = %s", (conversation_id,),
    ).fetchone()  # fmt: skip
    assert automatic == {"ai_attention": True, "ai_resumed_by": None, "at": True}


# -- 3. business hours ------------------------------------------------------------------------
OFFICE = {"time_zone": "America/Bogota", "weekly": {"mon": ["09:00-18:00"], "tue": ["09:00-18:00"]},
          "closed": ["2026-11-24"]}  # fmt: skip
# Monday 23 Nov 2026, 20:00 in Bogotá (UTC-5); Tuesday is a closed date: back Monday 30th.
EVENING = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


@pytest.mark.own_database
def test_a_handoff_after_hours_says_when_a_person_is_back_and_alerts_at_opening(
    make_services: Any, db: psycopg.Connection[Any], twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:  # fmt: skip
    advisor = f.advisor(
        db, f.tenant(db), name="Ana Ruiz", personal_phone=f.phone("+57303"),
        settings={"language": "es", "business_hours": OFFICE},
    )  # fmt: skip
    services = make_services()
    services.clock = lambda: EVENING
    f.ingest(db, advisor["id"], advisor["phone_number"], "hola", permitted=False)  # window open
    openai_stub.handoff("quiere una cotización", summary="Pide cotización de 3 mesas.")
    customer = f.phone("+57345")
    WebhookClient().inbound(customer, advisor["twilio_phone_number"], "quiero hablar con Ana")
    [told] = twilio_api.bodies(customer)
    assert "lunes 30 de noviembre, 09:00" in told
    assert "out of office; back Monday, November 30, 09:00" in openai_stub.requests[-1][
        "messages"][-1]["content"]  # fmt: skip
    assert twilio_api.bodies(advisor["phone_number"]) == []  # it waits for the opening
    alert = db.execute(
        "select status, send_after from advisor_alerts where advisor_id = %s", (advisor["id"],)
    ).fetchone()
    assert alert and alert["status"] == "scheduled"
    assert alert["send_after"] == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    flagged = db.execute(
        "select needs_human from conversations where advisor_id = %s and customer_phone = %s",
        (advisor["id"], customer),
    ).fetchone()
    assert flagged == {"needs_human": True}
    db.execute("update advisor_alerts set send_after = now() - interval '1 minute'"
               " where advisor_id = %s", (advisor["id"],))  # fmt: skip
    assert CleanupClient().run()["advisor_alerts"] == {"claimed": 1, "sent": 1, "ms": ANY}
    [sent] = twilio_api.bodies(advisor["phone_number"])
    assert "Pide cotización de 3 mesas." in sent
    assert CleanupClient().run()["advisor_alerts"]["claimed"] == 0  # sent once


@pytest.mark.own_database
def test_an_alert_a_dead_sweep_claimed_is_sent_by_a_later_run(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:  # fmt: skip
    """A run claimed the due alert (status queued), then died before sending it: once the
    claim is older than two cleanup budgets, the next run sends it."""
    make_services()
    f.ingest(db, advisor["id"], advisor["phone_number"], "hola", permitted=False)  # window open
    conversation = f.ingest(db, advisor["id"], f.phone("+57348"), "hola", permitted=False)
    db.execute(
        "select record_advisor_alert(%s, 'quiere precios', 'Pide precios.', 'none', null,"
        " 'scheduled', null, null, now() - interval '1 hour')", (conversation["conversation_id"],),
    )  # fmt: skip
    db.execute("select claim_due_alerts(10)")  # the run that died
    assert CleanupClient().run()["advisor_alerts"]["claimed"] == 0  # a fresh claim is left alone
    db.execute("update advisor_alerts set claimed_at = now() - interval '1 hour'"
               " where advisor_id = %s", (advisor["id"],))  # fmt: skip
    assert CleanupClient().run()["advisor_alerts"] == {"claimed": 1, "sent": 1, "ms": ANY}
    [sent] = twilio_api.bodies(advisor["phone_number"])
    assert "Pide precios." in sent


# -- 4. prompts the provider can cache ---------------------------------------------------------
def test_consecutive_prompts_share_their_prefix_until_a_block_trim(
    make_services: Any, db: psycopg.Connection[Any], openai_stub: FakeOpenAI
) -> None:
    """Every turn appends to the prompt (the per-turn context stays last), so the provider
    can reuse the cached prefix; the history is trimmed in blocks, not one message a turn."""
    long_prompt = "Eres el asistente de Ana. " + "Catálogo: sillas, mesas y repisas. " * 120
    advisor = f.advisor(db, f.tenant(db), name="Ana", settings={"prompt": long_prompt})
    make_services()
    webhook, customer = WebhookClient(), f.phone("+57346")
    first = len(openai_stub.requests)
    for n in range(17):  # 34 messages: the window passes 30 once
        webhook.inbound(customer, advisor["twilio_phone_number"], f"pregunta número {n}")
    requests = openai_stub.requests[first:]
    trims = []
    for n, (before, after) in enumerate(itertools.pairwise(requests)):
        kept = before["messages"][:-1]  # all but the per-turn context
        if after["messages"][: len(kept)] != kept:
            trims.append(n + 1)
            assert len(after["messages"]) < len(before["messages"])  # a trim shortens
            assert after["messages"][0] == before["messages"][0]  # the instructions stay
    assert trims == [15]  # messages 31..: the oldest 10 go, once
    cached = db.execute(
        "select cached_tokens from ai_runs where advisor_id = %s order by created_at",
        (advisor["id"],),
    ).fetchall()
    tokens = [r["cached_tokens"] for r in cached]
    assert tokens[0] == 0 and all(t > 0 for t in tokens[1:])


# -- 5. replies checked before they go out ------------------------------------------------------
@pytest.mark.parametrize(
    ("model_says", "why"),
    [("Yes, we ship to Medellín this week, and delivery takes two days.", "wrong_language"),
     ("Claro. (Uso handoff_to_human si hace falta.)", "leaked_instructions")],
)  # fmt: skip
def test_a_reply_that_fails_a_check_is_never_sent(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi, openai_stub: FakeOpenAI, model_says: str, why: str,
) -> None:  # fmt: skip
    make_services()
    openai_stub.reply_with(model_says)
    customer = f.phone("+57347")
    WebhookClient().inbound(
        customer, advisor["twilio_phone_number"], "¿Hacen envíos a Medellín esta semana?"
    )
    [sent] = twilio_api.bodies(customer)
    assert sent != model_says and "Ana Ruiz te contactará" in sent  # the fallback
    run = db.execute(
        "select outcome, error from ai_runs where advisor_id = %s", (advisor["id"],)
    ).fetchone()
    assert run == {"outcome": "rejected", "error": f"reply rejected: {why}"}
