"""Media and voice: Twilio media downloads and Supabase Storage at the HTTP level (`responses`,
`respx`), OpenAI's transcription and speech endpoints at the local stand-in, real Postgres."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import respx
from psycopg.types.json import Json

from devstack.fake_openai import FakeOpenAI
from tests import factories as f
from tests.conftest import (
    ACCOUNT_SID,
    SUPABASE_URL,
    CleanupClient,
    TwilioApi,
    WebhookClient,
    as_user,
)

pytestmark = pytest.mark.usefixtures("twilio_api")
OGG = b"OggS\x00\x02" + b"\x01" * 2000
JPEG = b"\xff\xd8\xff\xe0" + b"\x02" * 3000
PDF = b"%PDF-1.7\n" + b"\x03" * 4000


class FakeStorage:
    """Supabase Storage's object API, as storage3 calls it."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.uploads: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        router.route(host="127.0.0.1").pass_through()
        base = re.escape(SUPABASE_URL + "/storage/v1/object/")
        router.post(url__regex=base + r"sign/whatsapp-media/(?P<path>.+)$").mock(
            side_effect=self._sign
        )
        router.post(url__regex=base + r"whatsapp-media/(?P<path>.+)$").mock(
            side_effect=self._upload
        )
        router.delete(SUPABASE_URL + "/storage/v1/object/whatsapp-media").mock(
            side_effect=self._remove
        )
        self.removed: list[str] = []  # deleted objects
        self.asked: list[str] = []  # every name a delete call named
        self.fail_removes = 0  # the next N delete calls answer 500

    def _remove(self, request: httpx.Request) -> httpx.Response:
        if self.fail_removes:
            self.fail_removes -= 1
            return httpx.Response(
                500, json={"statusCode": "500", "error": "internal", "message": "down"}
            )
        asked = json.loads(request.content)["prefixes"]
        self.asked += asked
        gone = [p for p in asked if self.uploads.pop(p, None)]
        self.removed += gone
        return httpx.Response(200, json=[{"name": p} for p in gone])

    def _upload(self, request: httpx.Request, path: str) -> httpx.Response:
        body = request.content
        match = re.search(rb"Content-Type: ([\w/.+-]+)\r\n\r\n", body)
        self.content_types[path] = match.group(1).decode() if match else ""
        self.uploads[path] = body
        return httpx.Response(200, json={"Key": f"whatsapp-media/{path}", "Id": str(uuid.uuid4())})

    def _sign(self, request: httpx.Request, path: str) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "signedURL": f"/object/sign/whatsapp-media/{path}?token=signed-{uuid.uuid4().hex}"
            },
        )


@pytest.fixture
def storage() -> Iterator[FakeStorage]:
    with respx.mock(assert_all_called=False) as router:
        yield FakeStorage(router)


def twilio_media(
    twilio_api: TwilioApi,
    content: bytes,
    content_type: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> str:
    """A MediaUrl as Twilio gives it: the API URL redirects to its CDN."""
    media_sid = "ME" + uuid.uuid4().hex
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{uuid.uuid4().hex}/Media/{media_sid}"
    cdn = f"https://mms.twiliocdn.example/{ACCOUNT_SID}/{media_sid}"
    twilio_api.mock.add("GET", url, status=307, headers={"Location": cdn})
    twilio_api.mock.add(
        "GET", cdn, body=content, status=status, content_type=content_type, headers=headers or {}
    )
    return url


def media_fields(*items: tuple[str, str]) -> dict[str, str]:
    fields = {"NumMedia": str(len(items)), "MessageType": "media"}
    for n, (url, content_type) in enumerate(items):
        fields[f"MediaUrl{n}"] = url
        fields[f"MediaContentType{n}"] = content_type
    return fields


@pytest.fixture
def advisor(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return f.advisor(
        db, f.tenant(db), name="Ana López", settings={"language": "es", "audio_available": True}
    )


def stored_media(db: psycopg.Connection[Any], advisor_id: Any) -> dict[str, Any]:
    row = db.execute(
        "select id, conversation_id, tenant_id, media, transcript, body from messages"
        " where advisor_id = %s and direction = 'inbound' order by created_at desc limit 1",
        (advisor_id,),
    ).fetchone()
    assert row
    return dict(row)


def test_voice_note_is_stored_transcribed_and_understood(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    storage: FakeStorage,
) -> None:
    url = twilio_media(twilio_api, OGG, "audio/ogg")
    openai_stub.transcribe_as("Quiero saber el precio del plan")
    response = webhook.inbound(
        f.phone("+57370"), advisor["twilio_phone_number"], "", **media_fields((url, "audio/ogg"))
    )
    assert response.status_code == 200
    # Twilio was asked with the account's credentials; the CDN without them.
    api_call, cdn_call = twilio_api.mock.calls[0], twilio_api.mock.calls[1]
    assert api_call.request.headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in cdn_call.request.headers
    message = stored_media(db, advisor["id"])
    path = (
        f"{message['tenant_id']}/{advisor['id']}/{message['conversation_id']}/{message['id']}/0.ogg"
    )
    assert message["media"] == [{
        "twilio_url": url, "content_type": "audio/ogg", "size": len(OGG), "status": "stored", "path": path,
    }]  # fmt: skip
    assert message["transcript"] == "Quiero saber el precio del plan"
    assert OGG in storage.uploads[path] and storage.content_types[path] == "audio/ogg"
    assert OGG in openai_stub.transcriptions[0]
    assert openai_stub.user_turns() == ["Quiero saber el precio del plan"]


def test_image_and_pdf_are_stored_with_paths_and_types(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    storage: FakeStorage,
) -> None:
    image = twilio_media(twilio_api, JPEG, "image/jpeg")
    pdf = twilio_media(twilio_api, PDF, "application/pdf")
    fields = media_fields((image, "image/jpeg"), (pdf, "application/pdf"))
    webhook.inbound(f.phone("+57371"), advisor["twilio_phone_number"], "Mira esto", **fields)
    message = stored_media(db, advisor["id"])
    prefix = f"{message['tenant_id']}/{advisor['id']}/{message['conversation_id']}/{message['id']}"
    assert [(m["path"], m["content_type"], m["size"]) for m in message["media"]] == [
        (f"{prefix}/0.jpg", "image/jpeg", len(JPEG)),
        (f"{prefix}/1.pdf", "application/pdf", len(PDF)),
    ]
    assert storage.content_types == {
        f"{prefix}/0.jpg": "image/jpeg",
        f"{prefix}/1.pdf": "application/pdf",
    }
    content = openai_stub.user_turns()[-1]
    assert content[0]["type"] == "text" and "Mira esto" in content[0]["text"]
    assert "document (application/pdf)" in content[0]["text"]
    assert content[1]["type"] == "image_url" and "token=signed-" in content[1]["image_url"]["url"]


def test_images_become_a_note_when_the_model_has_no_vision(
    advisor: dict[str, Any],
    make_services: Any,
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    storage: FakeStorage,
) -> None:
    make_services(MODEL_SUPPORTS_IMAGES="false")
    image = twilio_media(twilio_api, JPEG, "image/jpeg")
    WebhookClient().inbound(
        f.phone("+57372"), advisor["twilio_phone_number"], "", **media_fields((image, "image/jpeg"))
    )
    assert openai_stub.user_turns() == ["[the customer sent an image]"]


def test_location_is_described_in_one_line(
    webhook: WebhookClient, advisor: dict[str, Any], openai_stub: FakeOpenAI
) -> None:
    webhook.inbound(
        f.phone("+57373"),
        advisor["twilio_phone_number"],
        "",
        Latitude="6.2442",
        Longitude="-75.5812",
    )
    assert openai_stub.user_turns() == ["[the customer shared a location: 6.2442, -75.5812]"]


def test_oversized_or_failing_download_keeps_the_message(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    storage: FakeStorage,
) -> None:
    big = twilio_media(
        twilio_api, b"x" * 10, "video/mp4", headers={"Content-Length": str(17 * 1024 * 1024)}
    )
    broken = twilio_media(twilio_api, b"", "image/png", status=500)
    customer = f.phone("+57374")
    webhook.inbound(
        customer,
        advisor["twilio_phone_number"],
        "dos archivos",
        **media_fields((big, "video/mp4"), (broken, "image/png")),
    )
    message = stored_media(db, advisor["id"])
    assert message["body"] == "dos archivos"
    too_large, failed = message["media"]
    assert too_large["status"] == "too_large" and too_large["size"] == 17 * 1024 * 1024
    assert failed["status"] == "failed" and "download" in failed["error"]
    assert storage.uploads == {}
    assert len(twilio_api.bodies(customer)) == 1  # the customer is still answered


@pytest.mark.own_database
def test_failed_media_is_retried_by_the_sweep(
    make_services: Any,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    storage: FakeStorage,
) -> None:
    make_services()
    url = twilio_media(twilio_api, OGG, "audio/ogg")
    conversation = f.ingest(db, advisor["id"], f.phone("+57375"), "", permitted=False)
    media = [
        {
            "twilio_url": url,
            "content_type": "audio/ogg",
            "status": "failed",
            "error": "download: timeout",
        }
    ]
    db.execute(
        "update messages set media = %s::jsonb where id = %s",
        (Json(media), conversation["message_id"]),
    )
    assert CleanupClient().run()["recovery"]["media_retried"] == 1
    row = db.execute(
        "select media, transcript from messages where id = %s", (conversation["message_id"],)
    ).fetchone()
    assert row and row["media"][0]["status"] == "stored" and row["media"][0]["attempts"] == 2
    assert row["transcript"]


@pytest.mark.parametrize("audio_available", [True, False])
def test_voice_reply_only_when_audio_is_available(
    webhook: WebhookClient,
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    storage: FakeStorage,
    audio_available: bool,
) -> None:
    advisor = f.advisor(db, f.tenant(db), settings={"audio_available": audio_available})
    customer = f.phone("+57376")
    openai_stub.reply_with("Claro, el plan cuesta 50 mil pesos.")
    url = twilio_media(twilio_api, OGG, "audio/ogg")
    webhook.inbound(
        customer, advisor["twilio_phone_number"], "", **media_fields((url, "audio/ogg"))
    )
    to_customer = [m for m in twilio_api.sent if m["To"] == [f"whatsapp:{customer}"]]
    assert to_customer[0]["Body"] == ["Claro, el plan cuesta 50 mil pesos."]
    if audio_available:
        assert len(to_customer) == 2
        voice_url = to_customer[1]["MediaUrl"][0]
        assert (
            voice_url.startswith(SUPABASE_URL + "/storage/v1/object/sign/whatsapp-media/")
            and "token=" in voice_url
        )
        assert openai_stub.speeches[-1]["input"] == "Claro, el plan cuesta 50 mil pesos."
        assert openai_stub.speeches[-1]["response_format"] == "opus"
        stored = db.execute(
            "select media from messages where advisor_id = %s and direction = 'outbound' and body is null",
            (advisor["id"],),
        ).fetchone()
        assert stored and stored["media"][0]["content_type"] == "audio/ogg"
    else:
        assert len(to_customer) == 1 and openai_stub.speeches == []


def test_speech_timeout_still_answers_with_text(
    make_services: Any,
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    storage: FakeStorage,
) -> None:
    make_services(TTS_TIMEOUT_SECONDS="1")
    advisor = f.advisor(db, f.tenant(db), settings={"audio_available": True})
    openai_stub.speech_delay = 2.0
    try:
        customer = f.phone("+57377")
        url = twilio_media(twilio_api, OGG, "audio/ogg")
        WebhookClient().inbound(
            customer, advisor["twilio_phone_number"], "", **media_fields((url, "audio/ogg"))
        )
    finally:
        openai_stub.speech_delay = 0.0
    to_customer = [m for m in twilio_api.sent if m["To"] == [f"whatsapp:{customer}"]]
    assert len(to_customer) == 1 and to_customer[0]["Body"]


def test_storage_policies_follow_conversation_visibility(db: psycopg.Connection[Any]) -> None:
    tenant = f.tenant(db)
    users = {k: f.user(db) for k in ("a", "b", "admin", "stranger")}
    f.member(db, tenant, users["a"], "advisor")
    f.member(db, tenant, users["b"], "advisor")
    f.member(db, tenant, users["admin"], "admin")
    advisors = {k: f.advisor(db, tenant, users[k]) for k in ("a", "b")}
    names = {
        k: f"{tenant}/{adv['id']}/{uuid.uuid4()}/{uuid.uuid4()}/0.ogg"
        for k, adv in advisors.items()
    }
    for name in names.values():
        db.execute(
            "insert into storage.objects (bucket_id, name) values ('whatsapp-media', %s)", (name,)
        )

    def visible(user: Any) -> set[str]:
        with as_user(db, user) as conn:
            rows = conn.execute(
                "select name from storage.objects where name = any(%s)", (list(names.values()),)
            )
            return {r["name"] for r in rows}

    assert visible(users["a"]) == {names["a"]}
    assert visible(users["b"]) == {names["b"]}
    assert visible(users["admin"]) == set(names.values())
    assert visible(users["stranger"]) == set()
