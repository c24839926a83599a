"""Twilio WhatsApp sending: a small typed facade over twilio's REST client.

Failures never raise: the result carries Twilio's error code when Twilio answered with one
(it certainly did not create the message), or None when it is unknown whether Twilio has the
message (a timeout, a dropped connection, a 5xx without Twilio's error body): the sweep looks
those up in Twilio's Messages list before it sends them again.

An instance serves several requests at once, and twilio-python's clients are not meant to be
shared by threads: each thread gets a client of its own, over `shared.twilio_http` (the SDK's
requests, without a requests Session's per-call overhead).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.rest import Client

from shared.observability import get_logger
from shared.twilio_http import AdapterHttpClient

log = get_logger(__name__)

# Twilio errors worth sending again later: rate limits and its own 5xx (an error code of None,
# "unknown whether sent", is retried too, after asking Twilio).
RETRYABLE_CODES = frozenset({20429, 20500, 20503, 429, 500, 502, 503, 504})


# Twilio's message statuses, folded into the ones we store (see the messages table).
STATUS_MAP = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "partially_delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "undelivered",
    "canceled": "canceled",
}


# The typing indicator names a message by its sid: SM… (text) or MM… (media).
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
# The environment's HTTP(S)_PROXY, read once per instance (requests would read it every call).
_PROXIES = urllib.request.getproxies()
# It is a courtesy: never worth more than this much waiting, in the background.
TYPING_TIMEOUT_SECONDS = 2.0


def whatsapp_address(number: str) -> str:
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


def bare_number(address: str) -> str:
    return address.removeprefix("whatsapp:").strip()


class MediaTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"media larger than allowed ({size} bytes or more)")
        self.size = size


@dataclass(frozen=True)
class SendResult:
    sid: str | None
    status: str  # queued/sent/... on success, "failed" otherwise
    error_code: int | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def retryable(self) -> bool:
        return not self.ok and (self.error_code is None or self.error_code in RETRYABLE_CODES)


# https://api.twilio.com/2010-04-01/Accounts/AC…/Messages/MM…/Media/ME…
_MEDIA_URL = re.compile(
    r"/Messages/(?P<message>(?:MM|SM)[0-9a-fA-F]{32})/Media/(?P<media>ME[0-9a-fA-F]{32})"
)


class WhatsApp:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        status_callback_url: str | None,
        connection_overrides: str,
        timeout: float,
        api_base_url: str | None = None,
    ) -> None:
        self.status_callback_url = status_callback_url
        self.fragment = f"#{connection_overrides}" if connection_overrides else ""
        self._auth = (account_sid, auth_token)
        self._timeout = timeout
        self._api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self._session = requests.Session()
        self._local = threading.local()
        self._clients: list[Client] = []
        self._clients_lock = threading.Lock()
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="twilio-typing")

    @property
    def client(self) -> Client:
        """This thread's Twilio client."""
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = Client(*self._auth, http_client=AdapterHttpClient(self._timeout, _PROXIES))
            if self._api_base_url:  # the local emulator stands in for Twilio's API domains
                client.api.base_url = self._api_base_url
                client.messaging.base_url = self._api_base_url
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        self._background.shutdown(wait=True, cancel_futures=True)
        self._session.close()
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.http_client.close()

    def download_media(self, url: str, max_bytes: int, timeout: float) -> tuple[bytes, str]:
        """Fetch an inbound MediaUrl with the account's credentials (Twilio redirects to its CDN;
        requests drops the credentials on the other host). Raises MediaTooLarge past max_bytes."""
        with self._session.get(
            url, auth=self._auth, timeout=timeout, stream=True, allow_redirects=True
        ) as response:
            response.raise_for_status()
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise MediaTooLarge(declared)
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLarge(size)
                chunks.append(chunk)
            content_type = response.headers.get("Content-Type", "application/octet-stream")
            return b"".join(chunks), content_type.split(";")[0].strip()

    def delete_media(self, media_url: str) -> bool:
        """Delete an inbound attachment Twilio still holds (its MediaUrl names the message and
        media sids). True when deleted, False when Twilio no longer has it; raises otherwise."""
        found = _MEDIA_URL.search(media_url)
        if not found:
            raise ValueError(f"not a Twilio media URL: {media_url[:120]}")
        try:
            return bool(self.client.messages(found["message"]).media(found["media"]).delete())
        except TwilioRestException as exc:
            if exc.status == 404:
                return False
            raise

    def send(
        self,
        from_number: str,
        to_number: str,
        body: str | None = None,
        media_urls: list[str] | None = None,
        content_sid: str | None = None,
        content_variables: dict[str, str] | None = None,
        message_id: str | None = None,
        track: bool = True,
    ) -> SendResult:
        """Send one message. With `message_id` (our row), the status callback URL names it, so a
        callback can complete the row even if Twilio's answer to this call never reaches us.
        `track=False` asks for no status callbacks (messages we keep no row for)."""
        params: dict[str, object] = {
            "from_": whatsapp_address(from_number),
            "to": whatsapp_address(to_number),
        }
        if body:
            params["body"] = body
        if media_urls:
            params["media_url"] = media_urls
        if content_sid:
            params["content_sid"] = content_sid
            params["content_variables"] = json.dumps(content_variables or {})
        if self.status_callback_url and track:
            query = f"?message_id={message_id}" if message_id else ""
            params["status_callback"] = self.status_callback_url + query + self.fragment
        try:
            message = self.client.messages.create(**params)  # type: ignore[arg-type,unused-ignore]
        except (TwilioRestException, TwilioServiceException) as exc:
            log.warning("twilio refused a message", status=exc.status, code=exc.code)
            if exc.status >= 500 and exc.code in (None, exc.status):
                # No Twilio error code (twilio-python then uses the HTTP status): a gateway
                # answered, not Twilio's API, which may have the message.
                return SendResult(None, "failed", None, f"HTTP {exc.status} without Twilio error")
            detail = exc.msg if isinstance(exc, TwilioRestException) else exc.detail or exc.title
            return SendResult(None, "failed", exc.code or exc.status, str(detail)[:500])
        except (requests.RequestException, TwilioException) as exc:
            log.warning("twilio unreachable", error=type(exc).__name__)
            return SendResult(None, "failed", None, f"{type(exc).__name__}: {exc}"[:500])
        return SendResult(message.sid, STATUS_MAP.get(str(message.status), "queued"))

    def show_typing(self, message_sid: str) -> Future[bool]:
        """WhatsApp's typing indicator for the customer's message `message_sid`: marks it read
        (blue ticks) and shows "typing…" until our reply arrives or 25 s pass. Runs in the
        background and never raises: the reply never waits for it."""
        return self._background.submit(self._typing, message_sid)

    def _typing(self, message_sid: str) -> bool:
        if not MESSAGE_SID.match(message_sid):
            return False
        client = self.client  # this background thread's own: its timeout is ours to set
        client.http_client.timeout = TYPING_TIMEOUT_SECONDS
        try:
            client.messaging.v2.typing_indicator.create(channel="whatsapp", message_id=message_sid)
        except (TwilioException, requests.RequestException) as exc:
            log.info("typing indicator not shown", error=type(exc).__name__)
            return False
        return True

    def find_sent(
        self,
        from_number: str,
        to_number: str,
        body: str | None,
        since: datetime,
        known_sids: frozenset[str] = frozenset(),
    ) -> SendResult | None:
        """A message Twilio already accepted from `from_number` to `to_number` with this body
        since then (what a crash or a lost answer may have left), other than `known_sids`
        (messages already recorded on other rows), or None.
        Raises on transport errors: not knowing is not "not sent"."""
        # Newest first; DateSent is empty while a message is still queued, so filter here.
        messages = self.client.messages.list(
            from_=whatsapp_address(from_number), to=whatsapp_address(to_number), limit=50
        )
        after = since - timedelta(minutes=1)
        for message in messages:
            created = message.date_created
            if created is not None and created < after:
                break
            if message.sid not in known_sids and (message.body or None) == (body or None):
                return SendResult(message.sid, STATUS_MAP.get(str(message.status), "queued"))
        return None
