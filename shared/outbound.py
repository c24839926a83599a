"""Advisors writing to customers (the send function): authorize under RLS, check WhatsApp's
rules, store the message before Twilio is called, send it, and remember the answer.

The message is committed (with its Idempotency-Key) before Twilio is called, so whatever
fails afterwards, the row exists and the cleanup sweep finishes it: a failure Twilio may not
have seen, or a database error after Twilio accepted it, never needs the advisor to send again
(202). Only a refusal that is final (Twilio's error code says so) answers 502.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from shared.db import DatabaseUnavailable
from shared.observability import capture, get_logger
from shared.services import Services
from shared.texts import WHATSAPP_MAX_CHARS

log = get_logger(__name__)
SERVICE_WINDOW = timedelta(hours=24)
# How long a request holding an Idempotency-Key is "in progress" (409) before a replay answers
# with the stored message instead (the first request's instance may have died after sending).
IDEMPOTENCY_LEASE = timedelta(seconds=60)


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$")
    variables: dict[str, str] = Field(default_factory=dict)


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: UUID
    body: str | None = Field(default=None, max_length=WHATSAPP_MAX_CHARS)
    # WhatsApp carries one attachment per message.
    media_url: list[HttpUrl] | None = Field(default=None, min_length=1, max_length=1)
    template: Template | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SendRequest:
        if self.body is not None and not self.body.strip():
            raise ValueError("body must not be empty")
        if self.template and (self.body or self.media_url):
            raise ValueError("send either a template or a body/media_url, not both")
        if not (self.template or self.body or self.media_url):
            raise ValueError("nothing to send: give body, media_url or template")
        for url in self.media_url or []:
            if url.scheme != "https":
                raise ValueError("media_url must be https (Twilio fetches it)")
        return self


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def error(status: int, code: str, detail: str, **extra: Any) -> Answer:
    return Answer(status, {"error": code, "detail": detail, **extra})


def send_advisor_message(
    services: Services, claims: dict[str, Any], request: SendRequest, idempotency_key: str | None
) -> Answer:
    user_id = str(claims["sub"])
    conversation = _visible_conversation(services, claims, request.conversation_id)
    if conversation is None:
        return error(404, "not_found", "conversation not found")
    if conversation["opted_out_at"] is not None:
        return error(409, "opted_out", "the customer opted out (STOP); they must write START first")
    last_inbound = conversation["last_inbound_at"]
    in_window = last_inbound is not None and datetime.now(UTC) - last_inbound < SERVICE_WINDOW
    if not request.template and not in_window:
        return error(
            422,
            "outside_24h_window",
            "the customer last wrote over 24 hours ago: WhatsApp only allows an approved template",
        )
    advisor_id = str(conversation["advisor_id"])
    if services.upstash and not services.upstash.allow(
        "rl:send", services.settings.send_rate_limit_per_minute, advisor_id
    ):
        return error(429, "rate_limited", "too many messages from this advisor, try again shortly")

    media: list[dict[str, Any]] = [{"url": str(u)} for u in request.media_url or []]
    if request.template:
        media = [{"type": "template", **request.template.model_dump()}]
    queued = services.db.value(
        "select public.queue_advisor_message(%s, %s, %s, %s, %s, %s, %s, %s)",
        (user_id, request.conversation_id, request.body, Jsonb(media),
         services.settings.handoff_hours, idempotency_key, request_hash(request),
         IDEMPOTENCY_LEASE),
        actor=user_id,
    )  # fmt: skip
    if queued["replay"]:
        stored = queued["response"]
        if stored is None:
            return error(
                409, "request_in_progress", "a request with this Idempotency-Key is running"
            )
        return Answer(int(stored["status"]), stored["body"])

    message_id = str(queued["message_id"])
    result = services.whatsapp.send(
        conversation["twilio_phone_number"],
        conversation["customer_phone"],
        body=request.body,
        media_urls=[str(u) for u in request.media_url or []] or None,
        content_sid=request.template.content_sid if request.template else None,
        content_variables=request.template.variables if request.template else None,
        message_id=message_id,
    )
    if result.ok:
        answer = Answer(202, {"message_id": message_id, "status": result.status})
    elif result.retryable:  # stored; the sweep sends it (after asking Twilio, if unknown)
        answer = Answer(202, {"message_id": message_id, "status": "queued", "retrying": True})
    else:
        answer = error(
            502, "twilio_error", result.error_message or "Twilio did not accept the message",
            message_id=message_id, twilio_code=result.error_code,
        )  # fmt: skip
    try:
        services.db.value(
            "select public.update_outbound(%s, %s, %s, %s, %s)",
            (message_id, result.sid, result.status, result.error_code, result.error_message),
        )
        if idempotency_key:
            services.db.value(
                "select public.finish_send_request(%s, %s, %s)",
                (user_id, idempotency_key, Jsonb({"status": answer.status, "body": answer.body})),
            )
    except DatabaseUnavailable as exc:
        # The message is committed and Twilio answered: the status callback (its URL names the
        # row) or the sweep records the outcome; a replay of the key answers after the lease.
        log.error("send outcome not recorded", message_id=message_id, error=str(exc)[:200])
        capture(exc)
    log.info("advisor message", message_id=message_id, status=answer.status, advisor_id=advisor_id)
    return answer


def mark_read(services: Services, claims: dict[str, Any], conversation_id: UUID) -> Answer:
    """A dashboard opened the conversation: nothing unread, and (best effort, in the
    background) the customer's newest message marked read at Twilio, as WhatsApp's blue ticks.
    Only for a user who may see the conversation, by the same rule as sending."""
    read: dict[str, Any] | None = services.db.value(
        "select public.mark_conversation_read(%s, %s)", (str(claims["sub"]), conversation_id)
    )
    if read is None:
        return error(404, "not_found", "conversation not found")
    sid = read["newest_inbound_sid"]
    receipt = bool(sid and services.settings.typing_indicator)
    if receipt:
        services.whatsapp.show_typing(sid)
    return Answer(200, {"conversation_id": str(conversation_id), "read_receipt": receipt})


def request_hash(request: SendRequest) -> str:
    """What an Idempotency-Key is bound to: the request's content, canonically serialized."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _visible_conversation(
    services: Services, claims: dict[str, Any], conversation_id: UUID
) -> dict[str, Any] | None:
    """The conversation if this user may see it, decided in SQL by the same rule as the
    conversations' RLS policy (public.conversation_for_sender)."""
    row: dict[str, Any] | None = services.db.value(
        "select public.conversation_for_sender(%s, %s)", (str(claims["sub"]), conversation_id)
    )
    if row is None:
        return None
    for key in ("opted_out_at", "last_inbound_at"):
        row[key] = datetime.fromisoformat(row[key]) if row[key] else None
    return row
