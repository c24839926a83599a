"""The advisor console in a real browser, through the UI only (issue scenarios)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import psycopg
from playwright.sync_api import expect
from psycopg.types.json import Jsonb

from devstack.simulate import send_inbound
from devstack.stack import Stack
from tests.conftest import eventually
from tests.dashboard.conftest import (
    CARLOS_NUMBER,
    MARIA_NUMBER,
    conversation_item,
    customer_writes,
    sent_to,
)

_numbers = itertools.count(1)


def new_customer() -> str:
    return f"+5731555{next(_numbers):05d}"


def test_maria_sees_only_her_conversations_and_new_messages_arrive_live(
    stack: Stack, open_console: Any
) -> None:
    hers, his = new_customer(), new_customer()
    customer_writes(stack, hers, MARIA_NUMBER, "Hola, ¿cuál es el horario?")
    customer_writes(stack, his, CARLOS_NUMBER, "Hola Carlos")

    page = open_console("maria@demo.local")
    expect(conversation_item(page, hers)).to_have_count(1)
    expect(conversation_item(page, his)).to_have_count(0)

    # A new customer writes while she watches: it appears without a reload.
    newcomer = new_customer()
    customer_writes(stack, newcomer, MARIA_NUMBER, "Buenas, ¿hacen envíos a Medellín?")
    item = conversation_item(page, newcomer)
    expect(item).to_have_count(1)
    expect(item.get_by_test_id("conversation-state")).to_have_attribute("data-state", "ai")
    item.click()
    messages = page.get_by_test_id("message")
    expect(messages.filter(has_text="envíos a Medellín")).to_have_attribute(
        "data-author", "customer"
    )
    expect(page.locator('[data-testid="message"][data-author="ai"]')).to_have_count(1)


def test_takeover_answer_and_return_to_the_ai(stack: Stack, open_console: Any) -> None:
    customer = new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Hola, quiero hablar con María")
    assert len(sent_to(stack, customer)) == 1  # the AI answered

    page = open_console("maria@demo.local")
    conversation_item(page, customer).click()
    page.get_by_test_id("takeover-button").click()
    state = page.get_by_test_id("conversation").get_by_test_id("conversation-state")
    expect(state).to_have_attribute("data-state", "human")

    # Paused: the next customer message is stored and shown, and the AI stays quiet.
    customer_writes(stack, customer, MARIA_NUMBER, "¿Sigues ahí?")
    expect(page.get_by_test_id("message").filter(has_text="¿Sigues ahí?")).to_have_count(1)
    assert len(sent_to(stack, customer)) == 1

    # She answers: the customer receives it from her WhatsApp number.
    page.get_by_test_id("composer").fill("Hola, soy María. Te ayudo ahora mismo.")
    page.get_by_test_id("send-button").click()
    own = page.locator('[data-testid="message"][data-author="advisor"]')
    expect(own.filter(has_text="soy María")).to_have_count(1)
    sent = eventually(lambda: [m for m in sent_to(stack, customer) if "soy María" in m["body"]],
                      what="María's message at Twilio")  # fmt: skip
    assert sent[0]["from"] == f"whatsapp:{MARIA_NUMBER}"
    assert len(sent) == 1
    # The delivery callbacks come back as ticks.
    expect(own).to_have_attribute("data-status", "read")

    # Back to the AI: the next customer message is answered by it again.
    page.get_by_test_id("resume-ai-button").click()
    expect(state).to_have_attribute("data-state", "ai")
    customer_writes(stack, customer, MARIA_NUMBER, "¿Cuál es el horario de atención?")
    assert len(sent_to(stack, customer)) == 3
    expect(page.locator('[data-testid="message"][data-author="ai"]')).to_have_count(2)


def test_carlos_cannot_see_marias_conversations(stack: Stack, open_console: Any) -> None:
    hers, his = new_customer(), new_customer()
    customer_writes(stack, hers, MARIA_NUMBER, "Hola María")
    customer_writes(stack, his, CARLOS_NUMBER, "Hola Carlos")
    page = open_console("carlos@demo.local")
    expect(conversation_item(page, his)).to_have_count(1)
    expect(conversation_item(page, hers)).to_have_count(0)
    # Not even by searching for her customer's number.
    page.get_by_test_id("search").fill(hers)
    page.get_by_test_id("search").press("Enter")
    expect(page.get_by_test_id("conversation-item")).to_have_count(0)


def test_admin_sees_both_advisors_and_the_metrics(stack: Stack, open_console: Any) -> None:
    hers, his = new_customer(), new_customer()
    customer_writes(stack, hers, MARIA_NUMBER, "Hola María")
    customer_writes(stack, his, CARLOS_NUMBER, "Hola Carlos")
    page = open_console("admin@demo.local")
    expect(conversation_item(page, hers)).to_have_count(1)
    expect(conversation_item(page, his)).to_have_count(1)

    page.get_by_test_id("advisor-filter").select_option(label="Carlos Rodríguez")
    expect(conversation_item(page, hers)).to_have_count(0)
    expect(conversation_item(page, his)).to_have_count(1)

    page.get_by_test_id("metrics-tab").click()
    today = page.get_by_test_id("metrics-panel").get_by_test_id("metrics-today")
    for name in ("María González", "Carlos Rodríguez"):
        row = today.locator("tr", has_text=name)
        expect(row).to_have_count(1)
        inbound = row.locator('[data-metric="inbound_messages"]').inner_text()
        assert int(inbound) >= 1, (name, inbound)


def test_advisor_metrics_show_only_her_own_row(stack: Stack, open_console: Any) -> None:
    page = open_console("maria@demo.local")
    page.get_by_test_id("metrics-tab").click()
    rows = page.get_by_test_id("metrics-week").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("María González")


def test_after_a_dropped_connection_the_missed_message_is_on_screen(
    stack: Stack, open_console: Any
) -> None:
    customer = new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Primer mensaje")
    page = open_console("maria@demo.local")
    conversation_item(page, customer).click()
    expect(page.get_by_test_id("message").filter(has_text="Primer mensaje")).to_have_count(1)

    assert stack.supabase is not None
    stack.supabase.drop_realtime(accept_new=False)  # the laptop sleeps
    expect(page.get_by_test_id("offline-indicator")).to_be_visible()
    customer_writes(stack, customer, MARIA_NUMBER, "Mensaje mientras dormía")
    stack.supabase.drop_realtime(accept_new=True)  # it wakes up

    expect(page.get_by_test_id("offline-indicator")).to_have_count(0, timeout=30_000)
    expect(page.get_by_test_id("message").filter(has_text="mientras dormía")).to_have_count(1)
    expect(page.locator('[data-testid="message"][data-author="ai"]')).to_have_count(2)


def test_a_message_whose_transaction_spans_the_drop_is_on_screen_after_the_reconnect(
    stack: Stack, open_console: Any
) -> None:
    """A row's updated_at is its transaction's start: a transaction open when the connection
    drops commits later with a time older than rows the page already saw."""
    customer, other = new_customer(), new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Primer mensaje")
    customer_writes(stack, other, MARIA_NUMBER, "Otra conversación")
    page = open_console("maria@demo.local")
    conversation_item(page, customer).click()
    expect(page.get_by_test_id("message").filter(has_text="Primer mensaje")).to_have_count(1)

    with psycopg.connect(stack.database_url) as slow:  # a transaction that starts now ...
        slow.execute(
            "select public.ingest_inbound(a.id, %s, null, %s, 'Escrito antes del corte',"
            " p_ai_permitted => false) from advisors a where a.twilio_phone_number = %s",
            (customer, "SM" + "a" * 32, MARIA_NUMBER),
        )
        with psycopg.connect(stack.database_url, autocommit=True) as conn:  # ... a later row, seen
            conn.execute(
                "update conversations set customer_name = 'Cliente visto' where customer_phone = %s",
                (other,),
            )
        expect(conversation_item(page, other)).to_contain_text("Cliente visto")
        assert stack.supabase is not None
        stack.supabase.drop_realtime(accept_new=False)
        expect(page.get_by_test_id("offline-indicator")).to_be_visible()
    # ... and commits while the page is offline: its broadcast is lost.
    stack.supabase.drop_realtime(accept_new=True)
    expect(page.get_by_test_id("offline-indicator")).to_have_count(0, timeout=30_000)
    expect(page.get_by_test_id("message").filter(has_text="antes del corte")).to_have_count(1)


def test_phone_sized_screen_shows_the_list_then_the_conversation(
    stack: Stack, open_console: Any
) -> None:
    customer = new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Hola desde el celular")
    page = open_console("maria@demo.local", viewport={"width": 390, "height": 844})
    conversation_item(page, customer).click()
    expect(page.get_by_test_id("composer")).to_be_visible()
    expect(conversation_item(page, customer)).to_be_hidden()


def test_a_refused_send_is_explained_and_nothing_reaches_the_customer(
    stack: Stack, open_console: Any
) -> None:
    customer = new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Hola")
    customer_writes(stack, customer, MARIA_NUMBER, "STOP")
    before = len(sent_to(stack, customer))
    page = open_console("maria@demo.local")
    item = conversation_item(page, customer)
    expect(item.get_by_test_id("conversation-state")).to_have_attribute("data-state", "opted_out")
    item.click()
    page.get_by_test_id("composer").fill("¿Sigues interesado?")
    page.get_by_test_id("send-button").click()
    expect(page.get_by_test_id("error")).to_contain_text("STOP")  # the 409 in words
    assert len(sent_to(stack, customer)) == before


def test_outside_the_window_she_sends_an_approved_template(
    stack: Stack, open_console: Any
) -> None:
    customer = new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Hola, ¿tienen stock?")
    content_sid = "HX" + "a1" * 16
    templates = {"templates": [{"name": "Seguimiento", "content_sid": content_sid, "variables": ["1"]}]}
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        # What a tenant admin saves, and a customer who last wrote two days ago.
        conn.execute("update tenants set settings = %s", (Jsonb(templates),))
        conn.execute(
            "update conversations set last_inbound_at = now() - interval '2 days'"
            " where customer_phone = %s",
            (customer,),
        )
    before = len(sent_to(stack, customer))
    page = open_console("maria@demo.local")
    conversation_item(page, customer).click()
    expect(page.get_by_test_id("composer")).to_have_count(0)  # free text is not allowed
    expect(page.get_by_test_id("template-select")).to_have_value("0")
    page.locator('[data-variable="1"]').fill("Ana")
    # A broadcast re-renders the conversation while she types: what she typed stays.
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            "update conversations set customer_name = 'Cliente renombrado' where customer_phone = %s",
            (customer,),
        )
    expect(page.get_by_test_id("conversation").locator("h2")).to_contain_text("Cliente renombrado")
    expect(page.locator('[data-variable="1"]')).to_have_value("Ana")
    page.get_by_test_id("send-template-button").click()

    sent = eventually(lambda: sent_to(stack, customer)[before:], what="the template at Twilio")
    assert sent[0]["from"] == f"whatsapp:{MARIA_NUMBER}"
    assert sent[0]["content_sid"] == content_sid
    assert json.loads(sent[0]["content_variables"]) == {"1": "Ana"}
    expect(page.locator('[data-testid="message"][data-author="advisor"]')).to_have_count(1)


# A 1x1 PNG: what a customer's photo looks like to the pipeline.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da636460f85f0f0002870180eb47ba920000000049454e44ae426082"
)


def test_a_customers_photo_is_stored_and_shown_through_a_signed_url(
    stack: Stack, open_console: Any
) -> None:
    customer = new_customer()
    assert stack.twilio is not None
    media_url = stack.twilio.host_media(PIXEL, "image/png")
    response, _ = send_inbound(
        stack.env, customer, MARIA_NUMBER, "Mira la foto", media=(media_url, "image/png")
    )
    assert response.status_code == 200, response.text
    page = open_console("maria@demo.local")
    conversation_item(page, customer).click()
    image = page.get_by_test_id("media-image")
    expect(image).to_have_attribute("src", re.compile(r"/storage/v1/object/sign/whatsapp-media/"))
    # The browser fetched the stored bytes: a decoded 1x1 image.
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-testid=media-image]');"
        " return img && img.complete && img.naturalWidth === 1; }"
    )


def test_the_admin_exports_then_erases_a_customer(stack: Stack, open_console: Any) -> None:
    customer = new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Quiero que borren mis datos")
    page = open_console("admin@demo.local")
    conversation_item(page, customer).click()

    with page.expect_download() as download:
        page.get_by_test_id("export-customer-button").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["customer_phone"] == customer
    assert any(m["body"] == "Quiero que borren mis datos"
               for c in exported["conversations"] for m in c["messages"])  # fmt: skip

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("erase-customer-button").click()
    expect(page.get_by_test_id("notice")).to_contain_text("2")  # the message and the AI's reply
    expect(conversation_item(page, customer)).to_have_count(0)
    with psycopg.connect(stack.database_url) as conn:
        left = conn.execute(
            "select count(*) from conversations where customer_phone = %s", (customer,)
        ).fetchone()
    assert left == (0,)


def test_advisors_get_no_data_rights_buttons(stack: Stack, open_console: Any) -> None:
    customer = new_customer()
    customer_writes(stack, customer, MARIA_NUMBER, "Hola")
    page = open_console("maria@demo.local")
    conversation_item(page, customer).click()
    expect(page.get_by_test_id("takeover-button")).to_be_visible()
    expect(page.get_by_test_id("erase-customer-button")).to_have_count(0)
