"""A Twilio REST stand-in for WhatsApp sending, plus signed status callbacks.

`POST /2010-04-01/Accounts/<AccountSid>/Messages.json` is answered like Twilio (201 with a
message resource and an SM sid, or Twilio's error JSON), every message is recorded, and
`sent`, `delivered`, `read` are posted, signed, to the message's StatusCallback shortly after.
`GET /messages` lists what was sent; `POST /fail` makes the next N sends fail with a code.
`POST /v2/Indicators/Typing.json` (WhatsApp's typing indicator, messaging.twilio.com) checks
the `messageId` format and answers `{"success": true}` (it accepts ids it never saw: the local
stack posts inbound messages straight to the webhook); `GET /indicators` lists the calls.
`host_media(data, content_type)` serves an inbound attachment at a Media URL of Twilio's shape
(`/2010-04-01/Accounts/<AccountSid>/Messages/<MM…>/Media/<ME…>`, account credentials required)
until a DELETE on it (the Media API's, with or without `.json`) removes it.
`chaos(rate)` makes that share of sends fail at random, as Twilio's bad days do: 429, 500, or
accepted but answered only after the client gave up (a read timeout on our side).
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
import uuid
from email.utils import formatdate
from typing import Any

import requests
from twilio.request_validator import RequestValidator

from devstack.local_server import LocalServer, Request, Response

API_VERSION = "2010-04-01"


def message_resource(
    account_sid: str, form: dict[str, list[str]], sid: str | None = None
) -> dict[str, Any]:
    """The JSON Twilio answers when a message is created (fields as in Twilio's docs)."""
    sid = sid or "SM" + uuid.uuid4().hex
    now = formatdate(usegmt=True)
    media = form.get("MediaUrl", [])
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": (form.get("Body") or [""])[0],
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": (form.get("From") or [""])[0],
        "messaging_service_sid": None,
        "num_media": str(len(media)),
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": uri + "/Media.json"},
        "to": (form.get("To") or [""])[0],
        "uri": uri + ".json",
    }


def message_page(account_sid: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of Twilio's Messages list, newest first, in Twilio's paging envelope."""
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json?PageSize=50&Page=0"
    return {
        "messages": messages,
        "end": max(len(messages) - 1, 0),
        "first_page_uri": uri,
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": uri,
    }


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioEmulator:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        callback_delay: float = 0.2,
        callback_statuses: tuple[str, ...] = ("sent", "delivered", "read"),
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.callback_delay = callback_delay
        self.callback_statuses = callback_statuses
        self.messages: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.indicators: list[dict[str, str]] = []
        self.media: dict[str, tuple[bytes, str]] = {}
        self.deleted_media: list[str] = []
        self._failures: list[tuple[int, int, str]] = []
        self._chaos_rate = 0.0
        self._hang_seconds = 0.0
        self._callback_loss = 0.0
        self._random = random.Random(0)
        self._lock = threading.Lock()
        self.validator = RequestValidator(auth_token)
        self.server = LocalServer(self._serve, host, port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> TwilioEmulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def host_media(self, data: bytes, content_type: str) -> str:
        """Serve an inbound attachment as Twilio does; returns its MediaUrl."""
        path = (
            f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/MM{uuid.uuid4().hex}"
            f"/Media/ME{uuid.uuid4().hex}"
        )
        with self._lock:
            self.media[path] = (data, content_type)
        return self.url + path

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        code: int = 20500,
        message: str = "Internal Server Error",
    ) -> None:
        with self._lock:
            self._failures.extend([(status, code, message)] * count)

    def chaos(
        self, rate: float, hang_seconds: float = 0.0, seed: int = 0, callback_loss: float = 0.0
    ) -> None:
        """Fail this share of sends at random, a third each: 429 (20429), 500 (20500), and
        accepted but answered after `hang_seconds` (longer than the client waits); lose this
        share of status callbacks."""
        with self._lock:
            self._chaos_rate, self._hang_seconds = rate, hang_seconds
            self._callback_loss = callback_loss
            self._random = random.Random(seed)

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _serve(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/messages" and request.method == "GET":
            with self._lock:
                return Response(200, [self._summary(m) for m in self.messages])
        if path == "/indicators" and request.method == "GET":
            with self._lock:
                return Response(200, list(self.indicators))
        if path == "/v2/Indicators/Typing.json" and request.method == "POST":
            if not self._authorized(request):
                return Response(401, twilio_error(401, 20003, "Authenticate"))
            return self._typing(request.form())
        if path == "/fail" and request.method == "POST":
            spec = request.json() or {}
            self.fail_next(
                int(spec.get("count", 1)),
                int(spec.get("status", 500)),
                int(spec.get("code", 20500)),
            )
            return Response(200, {"ok": True})
        media_path = path.removesuffix(".json")
        if media_path.startswith(f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/") and (
            "/Media/" in media_path and request.method in ("GET", "DELETE")
        ):
            return self._media(request, media_path)
        if path == f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json":
            if not self._authorized(request):
                return Response(401, twilio_error(401, 20003, "Authenticate"))
            if request.method == "POST":
                return self._create(request.form())
            if request.method == "GET":
                return Response(200, message_page(self.account_sid, self._list(request.query)))
        return Response(404, twilio_error(404, 20404, "The requested resource was not found"))

    def _media(self, request: Request, path: str) -> Response:
        """An inbound attachment: GET its bytes, DELETE it (204) as the Media API does."""
        if not self._authorized(request):
            return Response(401, twilio_error(401, 20003, "Authenticate"))
        with self._lock:
            found = self.media.get(path)
            if found is not None and request.method == "DELETE":
                del self.media[path]
                self.deleted_media.append(path)
                return Response(204, b"")
        if found is None:
            return Response(404, twilio_error(404, 20404, "The requested resource was not found"))
        return Response(200, found[0], content_type=found[1])

    def _typing(self, form: dict[str, list[str]]) -> Response:
        message_id = next(iter(form.get("messageId", [])), "")
        channel = next(iter(form.get("channel", [])), "")
        if channel != "whatsapp" or not re.fullmatch(r"(SM|MM)[0-9a-f]{32}", message_id):
            return Response(400, twilio_error(400, 21211, "Invalid messageId or channel"))
        with self._lock:
            self.indicators.append({"messageId": message_id, "channel": channel})
        return Response(200, {"success": True})

    def _create(self, form: dict[str, list[str]]) -> Response:
        if not form.get("To") or not (
            form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")
        ):
            return Response(
                400,
                twilio_error(400, 21619, "A text message body or media urls must be specified."),
            )
        hang = 0.0
        with self._lock:
            lose_callbacks = self._random.random() < self._callback_loss
            failure = self._failures.pop(0) if self._failures else None
            if failure is None and self._random.random() < self._chaos_rate:
                kind = self._random.choice(("429", "500", "timeout"))
                if kind == "timeout":
                    hang = self._hang_seconds
                else:
                    failure = (int(kind), 20000 + int(kind), "chaos")
        if failure:
            status, code, message = failure
            return Response(status, twilio_error(status, code, message))
        resource = message_resource(self.account_sid, form)
        record = {
            **resource,
            "media_url": form.get("MediaUrl", []),
            "content_sid": next(iter(form.get("ContentSid", [])), None),
            "content_variables": next(iter(form.get("ContentVariables", [])), None),
            "status_callback": next(iter(form.get("StatusCallback", [])), None),
            "received_monotonic": time.monotonic(),  # benchmarks time replies with it
        }
        with self._lock:
            self.messages.append(record)
        if record["status_callback"] and not lose_callbacks:
            threading.Thread(target=self._post_callbacks, args=(record,), daemon=True).start()
        if hang:
            time.sleep(hang)  # accepted; the answer comes after the client stopped waiting
        return Response(201, resource)

    def _list(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """Newest first, filtered by To and From, as Twilio's Messages list answers."""
        keys = ("sid", "to", "from", "body", "status", "date_created")  # resource fields
        with self._lock:
            found = [
                m for m in reversed(self.messages)
                if all(m[k.lower()] == query[k][0] for k in ("To", "From") if k in query)
            ]  # fmt: skip
        base = message_resource(self.account_sid, {})
        return [{**base, **{k: m[k] for k in keys}} for m in found]

    def _post_callbacks(self, record: dict[str, Any]) -> None:
        for status in self.callback_statuses:
            time.sleep(self.callback_delay)
            with self._lock:
                record["status"] = status
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "From": record["from"],
                "To": record["to"],
                "MessageSid": record["sid"],
                "SmsSid": record["sid"],
                "MessageStatus": status,
                "SmsStatus": status,
                "ChannelPrefix": "whatsapp",
            }
            url = record["status_callback"]
            signature = self.validator.compute_signature(url, params)
            try:
                response = requests.post(
                    url, data=params, headers={"X-Twilio-Signature": signature}, timeout=5
                )
                outcome: Any = response.status_code
            except requests.RequestException as exc:
                outcome = str(exc)
            with self._lock:
                self.callbacks.append({"sid": record["sid"], "status": status, "response": outcome})

    @staticmethod
    def _summary(message: dict[str, Any]) -> dict[str, Any]:
        return {
            "sid": message["sid"],
            "from": message["from"],
            "to": message["to"],
            "body": message["body"],
            "media_url": message["media_url"],
            "content_sid": message["content_sid"],
            "content_variables": message["content_variables"],
            "status": message["status"],
        }
