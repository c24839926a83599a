"""The webhook as Cloud Functions runs it: functions-framework (gunicorn) in a subprocess,
driven over HTTP with Twilio-signed requests; Twilio and OpenAI are local HTTP stand-ins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests

from devstack import functions
from devstack.fake_openai import FakeOpenAI
from devstack.twilio_emulator import TwilioEmulator
from tests import factories as f
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, eventually, inbound_form, sign


@pytest.fixture
def served(settings_env: dict[str, str]) -> Iterator[tuple[str, TwilioEmulator]]:
    emulator = TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.05).start()
    port = functions.free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = {
        **settings_env,
        "WEBHOOK_PUBLIC_URL": public_url,
        "TWILIO_API_BASE_URL": emulator.url,
        "THREADS": "4",
    }
    process = functions.serve("webhook", port, env)
    try:
        functions.wait_until_listening(port, process)
        yield public_url, emulator
    finally:
        functions.stop(process)
        emulator.stop()


def test_served_webhook_answers_signed_messages(
    served: tuple[str, TwilioEmulator], db: psycopg.Connection[Any], openai_stub: FakeOpenAI
) -> None:
    url, emulator = served
    assert requests.get(url + "/health", timeout=5).json()["status"] == "ok"
    advisor = f.advisor(db, f.tenant(db))
    customer = f.phone("+57340")
    params = inbound_form(customer, advisor["twilio_phone_number"], "Hola, ¿precio del plan?")
    response = requests.post(
        url + "/", data=params, headers={"X-Twilio-Signature": sign(url, params)}, timeout=15
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")

    assert [m["to"] for m in emulator.messages] == [f"whatsapp:{customer}"]
    reply_sid = emulator.messages[0]["sid"]

    # The emulator's signed callbacks reach the served function and move the status forward.
    def status() -> str | None:
        row = db.execute("select status from messages where provider_sid = %s", (reply_sid,))
        found = row.fetchone()
        return found["status"] if found else None

    eventually(lambda: status() == "read", what="the status callbacks")
    assert {c["response"] for c in emulator.callbacks} == {200}

    unsigned = requests.post(url + "/", data=params, timeout=5)
    assert unsigned.status_code == 403
