"""One inbound WhatsApp message, end to end (DESIGN.md): dedup, route, limit, store, decide,
answer the burst once, reply or hand off. Nothing here raises for a downstream failure once the
message is stored: failures become rows (failed sends, error runs) the cleanup sweep can finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from shared.assistant import AssistantError, AssistantTimeout, Reply
from shared.media import last_inbound_is_voice, store_inbound_media, voice_reply
from shared.observability import capture, get_logger
from shared.routing import Advisor
from shared.services import Deadline, Services
from shared.texts import notice, opt_keyword, split_message, system_prompt
from shared.twilio_payloads import InboundMessage
from shared.whatsapp import SendResult

log = get_logger(__name__)

# Seconds kept back from the budget for sending and recording after the model answers.
_AFTER_MODEL_RESERVE = 3.0


@dataclass(frozen=True)
class Outcome:
    action: str
    message_id: str | None = None
    conversation_id: str | None = None


def handle_inbound(services: Services, msg: InboundMessage, deadline: Deadline) -> Outcome:
    settings, upstash = services.settings, services.upstash
    sid = msg.message_sid
    advisor = services.router.advisor_for(msg.advisor_number)
    if advisor is None:
        if upstash and upstash.claim(f"dedup:{sid}", settings.dedup_ttl_seconds) is False:
            return Outcome("duplicate")
        services.db.value(
            "select public.store_unrouted(%s, %s, %s, %s)",
            (sid, msg.advisor_number, msg.customer_phone, msg.model_dump_json(by_alias=True)),
        )
        log.warning("inbound for a number with no active advisor", to=msg.advisor_number, sid=sid)
        return Outcome("unrouted")

    # One Redis round trip: the sid's dedup claim and both rate limits.
    permitted = True
    if upstash:
        admission = upstash.admit(
            f"dedup:{sid}",
            settings.dedup_ttl_seconds,
            [
                ("rl:customer", settings.rate_limit_customer_per_minute, msg.customer_phone),
                ("rl:advisor", settings.rate_limit_advisor_per_minute, advisor.id),
            ],
        )
        if admission.new is False:
            log.info("duplicate delivery", sid=sid)
            return Outcome("duplicate")
        customer_ok, advisor_ok = admission.allowed
        permitted = customer_ok and advisor_ok
        if not permitted:
            log.warning(
                "rate limit: message stored, AI withheld",
                customer_limited=not customer_ok,
                advisor_limited=not advisor_ok,
                advisor_id=advisor.id,
                customer_phone=msg.customer_phone,
            )

    opt = opt_keyword(msg.body)
    state: dict[str, Any] = services.db.value(
        "select public.ingest_inbound(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            advisor.id,
            msg.customer_phone,
            msg.profile_name,
            sid,
            msg.body,
            _json(msg.media_json()),
            opt,
            permitted,
            settings.history_limit,
        ),
    )
    message_id, conversation_id = str(state["message_id"]), str(state["conversation_id"])
    outcome = Outcome("stored", message_id, conversation_id)
    if not state["is_new"]:
        log.info("duplicate delivery (database)", sid=sid, message_id=message_id)
        return Outcome("duplicate", message_id, conversation_id)
    log.info("inbound stored", sid=sid, message_id=message_id, conversation_id=conversation_id)

    history: list[dict[str, Any]] = state["history"]
    images: dict[str, list[str]] = {}
    if msg.media:
        media = store_inbound_media(
            services, advisor.tenant_id, advisor.id, conversation_id, message_id,
            msg.media_json(), deadline,
        )  # fmt: skip
        services.db.value(
            "select public.update_inbound_media(%s, %s, %s)",
            (message_id, _json(media.media), media.transcript),
        )
        for item in history:
            if str(item.get("id")) == message_id:
                item.update(media=media.media, transcript=media.transcript)
        if media.image_urls:
            images[message_id] = media.image_urls

    if state["opt_changed"]:
        kind = "opted_out" if opt == "out" else "opted_in"
        _send_and_record(
            services,
            advisor,
            msg.customer_phone,
            conversation_id,
            [notice(kind, advisor.settings)],
            author="system",
            handled_up_to=message_id,
        )
        return Outcome(kind, message_id, conversation_id)
    if not state["ai_allowed"]:
        log.info(
            "AI not answering",
            conversation_id=conversation_id,
            ai_attention=state["ai_attention"],
            opted_out=bool(state["opted_out_at"]),
            rate_limited=not permitted,
        )
        return outcome

    if _superseded(services, conversation_id, message_id, state, deadline):
        log.info("burst: a newer message will answer", message_id=message_id)
        return Outcome("superseded", message_id, conversation_id)

    return answer_turn(
        services, advisor, msg.customer_phone, conversation_id, message_id, history, deadline,
        audio_available=bool(state["audio_available"]), images=images,
    )  # fmt: skip


def answer_turn(
    services: Services,
    advisor: Advisor,
    customer_phone: str,
    conversation_id: str,
    message_id: str,
    history: list[dict[str, Any]],
    deadline: Deadline,
    audio_available: bool = False,
    images: dict[str, list[str]] | None = None,
) -> Outcome:
    """Answer a conversation's turn (the webhook, or the recovery sweep), one instance at a time."""
    with _conversation_lock(services, conversation_id) as held:
        if not held:
            # Another instance is answering this conversation; the sweep answers us if it missed us.
            log.info("conversation busy, leaving the turn to its holder", message_id=message_id)
            return Outcome("busy", message_id, conversation_id)
        wants_voice = audio_available and last_inbound_is_voice(history)
        settings = services.settings
        handoff: dict[str, Any] | None = None
        ai_run: dict[str, Any]
        reply: Reply | None = None
        voice: dict[str, Any] | None = None
        try:
            reply = services.assistant.reply(
                system_prompt(advisor.settings, advisor.name),
                history,
                timeout=max(1.0, deadline.remaining() - _AFTER_MODEL_RESERVE),
                images=images,
            )
        except AssistantError as exc:
            timed_out = isinstance(exc, AssistantTimeout)
            log.error(
                "model failed, sending fallback", error=str(exc), conversation_id=conversation_id
            )
            capture(exc)
            texts = [notice("fallback", advisor.settings, name=advisor.name)]
            ai_run = {
                "model": services.assistant.model,
                "outcome": "timeout" if timed_out else "error",
                "error": str(exc),
            }
            handoff = {
                "reason": f"assistant {'timeout' if timed_out else 'error'}",
                "needs_human": True,
            }
            action = "fallback"
        if reply is not None:
            ai_run = {
                "model": reply.model,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "latency_ms": reply.latency_ms,
                "outcome": "handoff" if reply.handoff_reason else "replied",
            }
            if reply.handoff_reason:
                texts = [reply.text or notice("handoff", advisor.settings, name=advisor.name)]
                handoff = {"reason": reply.handoff_reason, "hours": settings.handoff_hours}
                action = "handoff"
            else:
                texts = split_message(reply.text or "")
                action = "replied"
                if wants_voice and reply.text:
                    voice = voice_reply(services, advisor, conversation_id, reply.text, deadline)

        _send_and_record(
            services,
            advisor,
            customer_phone,
            conversation_id,
            texts,
            author="ai",
            handled_up_to=message_id,
            ai_run=ai_run,
            handoff=handoff,
            voice=voice,
        )
        if action == "handoff" and handoff:
            _alert_advisor(services, advisor, customer_phone, str(handoff["reason"]))
        log.info(
            "turn answered",
            action=action,
            conversation_id=conversation_id,
            latency_ms=ai_run.get("latency_ms"),
        )
        return Outcome(action, message_id, conversation_id)


@contextmanager
def _conversation_lock(services: Services, conversation_id: str) -> Iterator[bool]:
    """Redis lock with expiry; yields False if another instance holds it (True if Redis is down)."""
    upstash = services.upstash
    key = f"lock:conversation:{conversation_id}"
    token = (
        upstash.acquire_lock(key, services.settings.conversation_lock_seconds) if upstash else None
    )
    try:
        yield token is not False
    finally:
        if upstash and isinstance(token, str):
            upstash.release_lock(key, token)


def _superseded(
    services: Services,
    conversation_id: str,
    message_id: str,
    state: dict[str, Any],
    deadline: Deadline,
) -> bool:
    """Wait for the customer to finish typing; True if a newer message arrived meanwhile."""
    wait = services.settings.burst_wait_seconds
    if wait <= 0:
        return False
    mine = f"{state['created_us']:020d}:{message_id}"
    key = f"latest:{conversation_id}"
    upstash = services.upstash
    stored = upstash.set_if_newer(key, mine, 300) if upstash else None
    services.sleep(min(wait, max(0.0, deadline.remaining() - _AFTER_MODEL_RESERVE * 2)))
    latest = upstash.get(key) if upstash and stored is not None else None
    if latest is not None:
        return latest != mine
    # Redis unavailable: ask the ground truth.
    newest = services.db.value("select public.latest_inbound_id(%s)", (conversation_id,))
    return str(newest) != message_id


def _send_and_record(
    services: Services,
    advisor: Advisor,
    customer_phone: str,
    conversation_id: str,
    texts: list[str],
    *,
    author: str,
    handled_up_to: str | None,
    ai_run: dict[str, Any] | None = None,
    handoff: dict[str, Any] | None = None,
    voice: dict[str, Any] | None = None,
) -> list[SendResult]:
    """Send each text (then the voice note) in order, and record them all in one round trip."""
    parts: list[tuple[str | None, list[dict[str, Any]]]] = [(text, []) for text in texts]
    if voice:
        parts.append((None, [voice]))
    results: list[SendResult] = []
    for text, media in parts:
        # After a failure, later parts are not sent out of order: they are queued for the sweep.
        if results and not results[-1].ok:
            results.append(SendResult(None, "queued"))
            continue
        urls = [item["url"] for item in media] or None
        results.append(
            services.whatsapp.send(advisor.twilio_phone_number, customer_phone, text, urls)
        )
    rows = [
        {
            "author": author,
            "body": text,
            "media": media,
            "provider_sid": r.sid,
            "status": r.status,
            "error_code": r.error_code,
            "error_message": r.error_message,
        }
        for (text, media), r in zip(parts, results, strict=True)
    ]
    services.db.value(
        "select public.record_outbound(%s, %s, %s, %s, %s)",
        (
            conversation_id,
            _json(rows),
            _json(ai_run) if ai_run else None,
            _json(handoff) if handoff else None,
            handled_up_to,
        ),
    )
    return results


def _alert_advisor(services: Services, advisor: Advisor, customer_phone: str, reason: str) -> None:
    """The dashboard hears of the handoff through Realtime; WhatsApp to the advisor if enabled."""
    enabled = advisor.settings.get("notify_on_handoff", services.settings.notify_advisor_on_handoff)
    if not (enabled and advisor.phone_number):
        return
    text = notice("advisor_alert", advisor.settings, customer=customer_phone, reason=reason)
    result = services.whatsapp.send(advisor.twilio_phone_number, advisor.phone_number, text)
    log.info("advisor alerted", advisor_id=advisor.id, ok=result.ok, code=result.error_code)


def _json(value: Any) -> Jsonb:
    return Jsonb(value)
