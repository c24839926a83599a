"""The Twilio HTTP client over requests' adapter: the same requests as the SDK's own client,
one kept-alive connection, and requests' errors for the facade to read."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from devstack.twilio_emulator import message_page, message_resource
from shared.twilio_http import AdapterHttpClient
from shared.whatsapp import WhatsApp
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_MESSAGES_URL

MEDIA = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'a' * 32}/Media/ME{'b' * 32}.json"
SDK_HEADERS = ("User-Agent", "Accept", "Accept-Charset", "Content-Type", "Authorization")


def _calls(http_client: Any) -> list[Any]:
    """What the SDK sends for a send with two attachments, a list and a delete."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_MESSAGES_URL, status=201, json=message_resource(ACCOUNT_SID, {}))
        mock.get(TWILIO_MESSAGES_URL, json=message_page(ACCOUNT_SID, []))
        mock.delete(MEDIA, status=204)
        client.messages.create(
            from_="whatsapp:+14155238886", to="whatsapp:+573001112233", body="¿Hola? & más",
            media_url=["https://x.test/a.jpg", "https://x.test/b.jpg"],
            status_callback="https://hooks.test/status?message_id=1#rc=2",
        )  # fmt: skip
        client.messages.list(to="whatsapp:+573001112233", limit=20)
        client.messages(f"MM{'a' * 32}").media(f"ME{'b' * 32}").delete()
        return [call.request for call in mock.calls]


def _bytes(body: str | bytes | None) -> bytes:
    return body.encode() if isinstance(body, str) else body or b""


def test_sends_what_the_sdks_own_client_sends() -> None:
    ours, theirs = _calls(AdapterHttpClient(timeout=5)), _calls(TwilioHttpClient(timeout=5))
    assert len(ours) == len(theirs) == 3
    for mine, sdk in zip(ours, theirs, strict=True):
        assert (mine.method, mine.url) == (sdk.method, sdk.url)
        assert _bytes(mine.body) == _bytes(sdk.body)
        assert {h: mine.headers.get(h) for h in SDK_HEADERS} == {
            h: sdk.headers.get(h) for h in SDK_HEADERS
        }
        assert mine.headers.get("Content-Length") == sdk.headers.get("Content-Length")
    form = parse_qs(ours[0].body.decode())
    assert form["MediaUrl"] == ["https://x.test/a.jpg", "https://x.test/b.jpg"]
    assert form["Body"] == ["¿Hola? & más"]


def test_a_json_body_is_sent_as_json() -> None:
    with responses.RequestsMock() as mock:
        mock.post("https://content.twilio.com/v1/Content", json={})
        AdapterHttpClient(timeout=5).request(
            "post", "https://content.twilio.com/v1/Content", data={"friendly_name": "x"},
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert mock.calls[0].request.body == b'{"friendly_name": "x"}'


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AdapterHttpClient(timeout=5).request("GET", TWILIO_MESSAGES_URL, timeout=0)


class _Twilio(BaseHTTPRequestHandler):
    """Answers every send like Twilio, over HTTP/1.1, and records each request's connection."""

    protocol_version = "HTTP/1.1"
    connections: list[tuple[str, int]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = parse_qs(self.rfile.read(length).decode())
        body = json.dumps(message_resource(ACCOUNT_SID, form)).encode()
        self.connections.append(self.client_address)
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_twilio() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    connections: list[tuple[str, int]] = []
    handler = type("Handler", (_Twilio,), {"connections": connections})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", connections
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_thread_keeps_its_connection_alive(local_twilio: tuple[str, list[Any]]) -> None:
    url, connections = local_twilio
    whatsapp = WhatsApp(ACCOUNT_SID, AUTH_TOKEN, None, "", timeout=5, api_base_url=url)
    try:
        results = [whatsapp.send("+14155238886", "+573001112233", f"hola {i}") for i in range(3)]
    finally:
        whatsapp.close()
    assert all(result.ok and result.sid for result in results)
    assert len(connections) == 3 and len(set(connections)) == 1


def test_a_refused_connection_leaves_the_send_unknown() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Twilio) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}"
    whatsapp = WhatsApp(ACCOUNT_SID, AUTH_TOKEN, None, "", timeout=5, api_base_url=url)
    try:
        result = whatsapp.send("+14155238886", "+573001112233", "hola")
    finally:
        whatsapp.close()
    assert (result.ok, result.error_code, result.retryable) == (False, None, True)
    assert result.error_message and result.error_message.startswith("ConnectionError")
