"""The Twilio facade: which failures are certain (Twilio answered with its error code) and
which leave it unknown whether Twilio has the message, and one client per thread."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
import responses

from devstack.twilio_emulator import message_resource, twilio_error
from shared.whatsapp import WhatsApp
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_MESSAGES_URL

CUSTOMER = "+573001112233"


@pytest.fixture
def whatsapp() -> Any:
    client = WhatsApp(ACCOUNT_SID, AUTH_TOKEN, None, "", timeout=1)
    yield client
    client.close()


RFC_9457 = {"type": "https://www.twilio.com/docs/api/errors/21211", "title": "Invalid 'To'",
            "status": 400, "code": 21211, "detail": "The 'To' number is not valid."}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "code"),
    [((429, json.dumps(twilio_error(429, 20429, "Too Many Requests"))), 20429),
     ((500, json.dumps(twilio_error(500, 20500, "Internal Server Error"))), 20500),
     ((400, json.dumps(RFC_9457)), 21211),
     ((502, "<html>Bad Gateway</html>"), None),
     ((504, ""), None),
     (requests.exceptions.ReadTimeout("read timed out"), None),
     (requests.exceptions.ConnectionError("connection reset"), None)],
    ids=["429", "twilio 500", "rfc 9457", "gateway 502", "gateway 504", "read timeout",
         "connection"],
)  # fmt: skip
def test_failures_say_whether_twilio_may_have_the_message(
    whatsapp: WhatsApp, answer: Any, code: int | None
) -> None:
    with responses.RequestsMock() as mock:
        if isinstance(answer, Exception):
            mock.add(responses.POST, TWILIO_MESSAGES_URL, body=answer)
        else:
            mock.add(responses.POST, TWILIO_MESSAGES_URL, status=answer[0], body=answer[1])
        result = whatsapp.send("+15550001111", CUSTOMER, "hola")
    assert (result.ok, result.sid, result.error_code) == (False, None, code)
    assert result.retryable is (code is None or code in (20429, 20500))


def test_a_send_reads_the_sid_and_status(whatsapp: WhatsApp) -> None:
    resource = message_resource(ACCOUNT_SID, {"To": [f"whatsapp:{CUSTOMER}"], "Body": ["hola"]})
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, TWILIO_MESSAGES_URL, status=201, json=resource)
        result = whatsapp.send("+15550001111", CUSTOMER, "hola")
    assert (result.ok, result.sid, result.status) == (True, resource["sid"], "queued")


def test_each_thread_has_its_own_twilio_client(whatsapp: WhatsApp) -> None:
    """twilio-python's client keeps the last response on itself: never shared by threads."""
    mine = whatsapp.client
    assert whatsapp.client is mine
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(whatsapp.client))
    thread.start()
    thread.join()
    assert theirs[0] is not mine and theirs[0].http_client is not mine.http_client
