"""Parsing Twilio's forms into typed models: what is accepted, and the reason when not."""

from __future__ import annotations

import pytest

from shared.twilio_payloads import InboundMessage, PayloadError, StatusCallback
from tests.conftest import inbound_form


def test_inbound_text() -> None:
    message = InboundMessage.from_form(inbound_form("+573001112233", "+14155238886", "Hola"))
    assert (message.customer_phone, message.advisor_number, message.body) == (
        "+573001112233", "+14155238886", "Hola",
    )  # fmt: skip
    assert message.media == [] and message.media_json() == []


def test_inbound_media_and_location() -> None:
    form = inbound_form("+573001112233", "+14155238886", "", NumMedia="2",
                        MediaUrl0="https://api.twilio.com/m/ME1", MediaContentType0="audio/ogg",
                        MediaUrl1="https://api.twilio.com/m/ME2", MediaContentType1="image/jpeg",
                        Latitude="4.65", Longitude="-74.05")  # fmt: skip
    items = InboundMessage.from_form(form).media_json()
    assert [i.get("content_type") for i in items] == ["audio/ogg", "image/jpeg", None]
    assert items[2] == {"type": "location", "latitude": 4.65, "longitude": -74.05}


@pytest.mark.parametrize(
    ("change", "field"),
    [({"From": "whatsapp:12"}, "From"), ({"MessageSid": ""}, "MessageSid"),
     ({"To": "whatsapp:+1abc"}, "To"), ({"NumMedia": "11"}, "NumMedia")],
)  # fmt: skip
def test_malformed_inbound_names_the_field(change: dict[str, str], field: str) -> None:
    with pytest.raises(PayloadError, match=field):
        InboundMessage.from_form({**inbound_form("+573001112233", "+14155238886"), **change})


def test_status_callback_blank_error_code_is_none() -> None:
    callback = StatusCallback.from_form(
        {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered", "ErrorCode": ""}
    )
    assert callback.error_code is None
    failed = StatusCallback.from_form(
        {"MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered", "ErrorCode": "63016"}
    )
    assert failed.error_code == 63016
    with pytest.raises(PayloadError, match="MessageStatus"):
        StatusCallback.from_form({"MessageSid": "SM" + "a" * 32})


@pytest.mark.parametrize(
    "sender", ["whatsapp:+12345", "whatsapp:+٣٠٠١١١٢٢٣٣", "whatsapp:+1234567890123456"]
)
def test_phone_rules_are_the_databases(sender: str) -> None:
    with pytest.raises(PayloadError, match="From"):
        InboundMessage.from_form({**inbound_form("+573001112233", "+14155238886"), "From": sender})


def test_odd_text_is_stored_clean_never_refused() -> None:
    form = inbound_form("+573001112233", "+14155238886", "hola\x00 mundo\x07\n" + "x" * 20_000)
    form.update(ProfileName="Ana\x00", Latitude="nan", Longitude="inf")
    message = InboundMessage.from_form(form)
    assert message.body.startswith("hola mundo\n") and message.body.endswith(" […]")
    assert len(message.body) == 16_000 + len(" […]")
    assert message.profile_name == "Ana"
    assert message.media_json() == []  # nan/inf: no location


def test_status_callback_odd_fields() -> None:
    callback = StatusCallback.from_form(
        {"MessageSid": "SM" + "a" * 32, "MessageStatus": "failed", "ErrorCode": str(2**40),
         "ErrorMessage": "bad\x00 thing"}
    )  # fmt: skip
    assert (callback.error_code, callback.error_message) == (None, "bad thing")
