"""One inbound WhatsApp message, end to end (DESIGN.md): route, limit, store, decide, answer
the burst once, reply or hand off, and answer live whatever arrives meanwhile.

The promises, and where each is kept:
- Postgres is the authority for "seen" (a unique provider sid): a request that failed before
  storing is stored when Twilio redelivers it, and a redelivery of a stored one changes nothing.
- Once stored, nothing raises: failures become rows (unhandled turns, queued or failed sends)
  the cleanup sweep finishes, and the webhook answers 200.
- A reply is committed before it is sent (`commit_reply` refuses when a human took over, the AI
  was paused, the turn was answered meanwhile, or a customer message arrived that the model did
  not see), so no turn is answered twice, no reply ignores what the customer just added, and
  the AI never talks over a person.
- One instance at a time holds a conversation's turn (in Postgres: `take_turn`, or as the
  message is stored), and answers, before it lets go, every message that arrived while it
  worked (`finish_turn`); the others return at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from shared.alerts import alert_advisor
from shared.assistant import AssistantError, AssistantTimeout, Reply
from shared.burst import burst_wait
from shared.hours import BusinessHours, describe_opening
from shared.media import last_inbound_is_voice, store_inbound_media, voice_reply
from shared.observability import capture, get_logger
from shared.reply_check import rejection
from shared.routing import Advisor
from shared.services import Deadline, Services
from shared.texts import notice, opt_keyword, split_message, system_prompt
from shared.twilio_payloads import InboundMessage
from shared.whatsapp import SendResult

log = get_logger(__name__)

# Seconds kept back from the budget for committing, sending and recording after the model.
_AFTER_MODEL_RESERVE = 3.0
# Below this much time left, a pending message is left to the sweep rather than half-answered.
_MIN_TURN_SECONDS = 4.0


@dataclass(frozen=True)
class Outcome:
    action: str
    message_id: str | None = None
    conversation_id: str | None = None


def handle_inbound(services: Services, msg: InboundMessage, deadline: Deadline) -> Outcome:
    """Store the message (errors before that propagate: the caller answers 503 and Twilio
    redelivers), then answer it; after storing, nothing propagates."""
    settings = services.settings
    sid = msg.message_sid
    advisor = services.router.advisor_for(msg.advisor_number)
    if advisor is None:
        # Postgres dedups unrouted rows by sid; the raw form is kept whole.
        services.db.value(
            "select public.store_unrouted(%s, %s, %s, %s)",
            (sid, msg.advisor_number, msg.customer_phone, Jsonb(msg.raw)),
        )
        log.warning("inbound for a number with no active advisor", to=msg.advisor_number, sid=sid)
        return Outcome("unrouted")

    opt = opt_keyword(msg.body)
    wait = _burst_wait(settings.burst_wait_seconds, msg)
    # A message answered at once takes the conversation's turn in the round trip that stores it.
    # The rate limits are asked after storing, only for a message the AI would answer.
    lease = None if wait > 0 else timedelta(seconds=settings.conversation_lock_seconds)
    state: dict[str, Any] = services.db.value(
        "select public.receive_inbound(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (lease, advisor.id, msg.customer_phone, msg.profile_name, sid, msg.body,
         Jsonb(msg.media_json()), opt, True, settings.history_limit, settings.knowledge_top_k),
    )  # fmt: skip
    message_id, conversation_id = str(state["message_id"]), str(state["conversation_id"])
    try:
        return _after_storing(services, advisor, msg, state, opt, wait, deadline)
    except Exception as exc:  # stored: the sweep finishes whatever did not happen
        log.error("failed after storing; left to the sweep", error=repr(exc)[:300], sid=sid)
        capture(exc)
        token = (state.get("turn") or {}).get("token")
        if token:
            _let_go(services, conversation_id, token)
        return Outcome("stored", message_id, conversation_id)


def _after_storing(
    services: Services,
    advisor: Advisor,
    msg: InboundMessage,
    state: dict[str, Any],
    opt: str | None,
    wait: float,
    deadline: Deadline,
) -> Outcome:
    message_id, conversation_id = str(state["message_id"]), str(state["conversation_id"])
    if not state["is_new"]:
        log.info("duplicate delivery", sid=msg.message_sid, message_id=message_id)
        return Outcome("duplicate", message_id, conversation_id)
    log.info("inbound stored", sid=msg.message_sid, message_id=message_id)
    claim: dict[str, Any] = state.get("turn") or {}
    limited = state["ai_allowed"] and not within_rate_limits(services, advisor, msg)
    if limited:
        services.db.value(
            "select public.withhold_turn(%s, %s, %s)",
            (conversation_id, message_id, claim.get("token")),
        )

    history: list[dict[str, Any]] = state["history"]
    images: dict[str, list[str]] = {}
    if msg.media:
        media = store_inbound_media(
            services, advisor.tenant_id, advisor.id, conversation_id, message_id,
            msg.media_json(), deadline,
        )  # fmt: skip
        services.db.value(
            "select public.update_inbound_media(%s, %s, %s)",
            (message_id, Jsonb(media.media), media.transcript),
        )
        for item in history:
            if str(item.get("id")) == message_id:
                item.update(media=media.media, transcript=media.transcript)
        if media.image_urls:
            images[message_id] = media.image_urls

    if limited:
        return Outcome("rate_limited", message_id, conversation_id)
    if state["opt_changed"] or not state["ai_allowed"]:
        if state["opt_changed"]:
            kind = "opted_out" if opt == "out" else "opted_in"
            reply = [{"author": "system", "body": notice(kind, advisor.settings)}]
            _commit_and_send(
                services, advisor, msg.customer_phone, conversation_id, [message_id], reply,
                require_ai=False,
            )  # fmt: skip
            return Outcome(kind, message_id, conversation_id)
        log.info("AI not answering", conversation_id=conversation_id,
                 ai_attention=state["ai_attention"], opted_out=bool(state["opted_out_at"]))  # fmt: skip
        return Outcome("stored", message_id, conversation_id)

    turn = Turn.from_state(state, images)
    if wait > 0:  # a fragment: the rest of the burst may follow
        services.sleep(min(wait, max(0.0, deadline.remaining() - _AFTER_MODEL_RESERVE * 2)))
        return answer_turn(
            services, advisor, msg.customer_phone, conversation_id, turn, deadline,
            waited=message_id,
        )  # fmt: skip
    if not claim["held"]:
        log.info("conversation busy, its holder answers", conversation_id=conversation_id)
        return Outcome("busy", message_id, conversation_id)
    return answer_turn(
        services, advisor, msg.customer_phone, conversation_id, turn, deadline,
        token=claim["token"],
    )  # fmt: skip


@dataclass(frozen=True)
class Turn:
    """What the model is asked about: the conversation window, the passages of the business's
    documents that match it, whether a voice answer is possible, this turn's images."""

    history: list[dict[str, Any]]
    knowledge: list[dict[str, Any]]
    audio_available: bool = False
    images: dict[str, list[str]] | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any], images: dict[str, list[str]] | None = None) -> Turn:
        """From what ingest_inbound, pending_turn or the sweep's claim returned."""
        return cls(
            state["history"],
            state.get("knowledge") or [],
            bool(state.get("audio_available")),
            images,
        )


def answer_turn(
    services: Services,
    advisor: Advisor,
    customer_phone: str,
    conversation_id: str,
    turn: Turn,
    deadline: Deadline,
    token: str | None = None,
    waited: str | None = None,
) -> Outcome:
    """Answer a conversation's turn (the webhook, or the recovery sweep), one instance at a
    time, then every message that arrived meanwhile, while the budget allows. `token`: the
    turn is held already (taken as the message was stored); `waited`: a fragment that waited
    for the rest of its burst, which leaves the turn to a newer message."""
    outcome = Outcome("busy", conversation_id=conversation_id)
    answered: list[str] = []
    settings = services.settings
    while True:
        if token is None:
            claim: dict[str, Any] = services.db.value(
                "select public.take_turn(%s, %s, %s)",
                (conversation_id, timedelta(seconds=settings.conversation_lock_seconds), waited),
            )
            if not claim["held"]:
                # busy: the holder answers this message before it lets go (see below);
                # superseded: a newer message's request answers the burst; answered: done.
                log.info("turn not taken", reason=claim["reason"], conversation_id=conversation_id)
                if claim["reason"] == "busy":
                    return outcome
                return Outcome("superseded", waited, conversation_id)
            token, waited = claim["token"], None
        try:
            outcome = _answer(services, advisor, customer_phone, conversation_id, turn, deadline)
        except BaseException:
            _let_go(services, conversation_id, token)
            raise
        # Let go, and learn in the same transaction what arrived meanwhile: whatever found the
        # turn taken is ours to answer.
        pending: dict[str, Any] = services.db.value(
            "select public.finish_turn(%s, %s, %s, %s)",
            (conversation_id, token, settings.history_limit, settings.knowledge_top_k),
        )
        token = None
        if deadline.remaining() < _MIN_TURN_SECONDS + _AFTER_MODEL_RESERVE:
            return outcome
        if not (pending and pending["unhandled"] and pending.get("ai_allowed")):
            return outcome
        if pending["unhandled"] == answered:  # our last answer could not take them: the sweep will
            return outcome
        answered = pending["unhandled"]
        log.info("answering what arrived meanwhile", count=len(pending["unhandled"]))
        turn = Turn.from_state(pending)


def _let_go(services: Services, conversation_id: str, token: str) -> None:
    """Release a turn after a failure; if even that fails, it lapses after
    CONVERSATION_LOCK_SECONDS and the sweep answers what is left."""
    try:
        services.db.value("select public.finish_turn(%s, %s, 0, 0)", (conversation_id, token))
    except Exception as exc:
        log.warning("turn not released; it lapses", error=repr(exc)[:200])


def _answer(
    services: Services,
    advisor: Advisor,
    customer_phone: str,
    conversation_id: str,
    turn: Turn,
    deadline: Deadline,
) -> Outcome:
    """Ask the model about the turn, commit its reply for exactly the messages it saw, send."""
    history = turn.history
    seen = [str(m["id"]) for m in history if m.get("direction") == "inbound"]
    settings = services.settings
    handoff: dict[str, Any] | None = None
    ai_run: dict[str, Any]
    reply: Reply | None = None
    voice: dict[str, Any] | None = None
    newest_sid = next(
        (m.get("sid") for m in reversed(history) if m.get("direction") == "inbound"), None
    )
    if settings.typing_indicator and newest_sid:
        services.whatsapp.show_typing(newest_sid)  # in the background: never delays the reply
    now = services.clock()
    hours = BusinessHours.from_settings(advisor.settings)
    opening = hours.next_opening(now) if hours else None
    closed = hours is not None and not hours.is_open(now)
    prompt = system_prompt(advisor.settings, advisor.name)
    language = str(advisor.settings.get("language") or "es")
    try:
        reply = services.assistant.reply(
            prompt,
            history,
            timeout=max(1.0, deadline.remaining() - _AFTER_MODEL_RESERVE),
            images=turn.images,
            turn_context=turn_context(
                now,
                hours,
                closed,
                opening,
                turn.knowledge,
                bool(advisor.settings.get("knowledge_only")),
            ),
            cache_key=conversation_id,
        )
        # A handoff may come without text (the notice is sent); anything said is checked.
        if reply.text or not reply.handoff_reason:
            why = rejection(reply.text, language, _customer_text(history), prompt)
            if why:
                raise RejectedReply(why, reply)
    except AssistantError as exc:
        outcome = "rejected" if isinstance(exc, RejectedReply) else (
            "timeout" if isinstance(exc, AssistantTimeout) else "error")  # fmt: skip
        log.error("no usable model reply, sending fallback", error=str(exc), outcome=outcome,
                  conversation_id=conversation_id)  # fmt: skip
        capture(exc)
        texts = [notice("fallback", advisor.settings, name=advisor.name)]
        ai_run = {"model": services.assistant.model, "error": str(exc), "outcome": outcome}
        if isinstance(exc, RejectedReply):
            ai_run.update(exc.usage)
        handoff = {
            "reason": f"assistant {outcome}",
            "summary": notice("summary_fallback", advisor.settings,
                              messages=_customer_text(history, last=3, separator=" / ")),
            "needs_human": True,
        }  # fmt: skip
        action, reply = "fallback", None
    if reply is not None:
        ai_run = {
            "model": reply.model,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "cached_tokens": reply.cached_tokens,
            "latency_ms": reply.latency_ms,
            "knowledge": [
                {"chunk_id": k["chunk_id"], "title": k["title"], "score": k["score"]}
                for k in turn.knowledge
            ],
            "outcome": "handoff" if reply.handoff_reason else "replied",
        }
        if reply.handoff_reason:
            if closed and opening is not None:  # say when a person will be back
                when = describe_opening(opening, language)
                texts = [notice("handoff_closed", advisor.settings, name=advisor.name,
                                opening=when)]  # fmt: skip
            else:
                texts = [reply.text or notice("handoff", advisor.settings, name=advisor.name)]
            summary = reply.handoff_summary or notice(
                "summary_fallback", advisor.settings,
                messages=_customer_text(history, last=3, separator=" / "),
            )  # fmt: skip
            handoff = {"reason": reply.handoff_reason, "summary": summary,
                       "hours": settings.handoff_hours}  # fmt: skip
            action = "handoff"
        else:
            texts = [reply.text or ""]
            action = "replied"
            if turn.audio_available and last_inbound_is_voice(history) and reply.text:
                voice = voice_reply(services, advisor, conversation_id, reply.text, deadline)

    # Every text, the handoff's included, in pieces Twilio accepts.
    parts: list[dict[str, Any]] = [
        {"author": "ai", "body": piece} for text in texts for piece in split_message(text)
    ]
    if voice:
        parts.append({"author": "ai", "body": None, "media": [voice]})
    committed = _commit_and_send(
        services, advisor, customer_phone, conversation_id, seen, parts,
        ai_run=ai_run, handoff=handoff,
    )  # fmt: skip
    if not committed:
        return Outcome("withheld", seen[-1] if seen else None, conversation_id)
    if action == "handoff" and handoff:
        alert_advisor(
            services, advisor, customer_phone, conversation_id, str(handoff["reason"]),
            handoff.get("summary"), hours, now,
        )  # fmt: skip
    log.info("turn answered", action=action, conversation_id=conversation_id,
             latency_ms=ai_run.get("latency_ms"))  # fmt: skip
    return Outcome(action, seen[-1] if seen else None, conversation_id)


def _commit_and_send(
    services: Services,
    advisor: Advisor,
    customer_phone: str,
    conversation_id: str,
    seen: list[str],
    parts: list[dict[str, Any]],
    *,
    ai_run: dict[str, Any] | None = None,
    handoff: dict[str, Any] | None = None,
    require_ai: bool = True,
) -> bool:
    """Commit the reply (refused if it may no longer be said), then send each part in order
    and record Twilio's answers in one round trip. False if the commit was refused."""
    result: dict[str, Any] = services.db.value(
        "select public.commit_reply(%s, %s, %s, %s, %s, %s)",
        (conversation_id, seen, Jsonb(parts), Jsonb(ai_run) if ai_run else None,
         Jsonb(handoff) if handoff else None, require_ai),
    )  # fmt: skip
    if not result["committed"]:
        log.info("reply withheld", reason=result["reason"], conversation_id=conversation_id)
        return False
    sent: list[dict[str, Any]] = []
    last: SendResult | None = None
    for message_id, part in zip(result["message_ids"], parts, strict=True):
        if last is not None and not last.ok:
            break  # later parts stay queued: the sweep sends them, never out of order
        urls = [item["url"] for item in part.get("media") or [] if item.get("url")] or None
        last = services.whatsapp.send(
            advisor.twilio_phone_number, customer_phone, part.get("body"), urls,
            message_id=str(message_id),
        )  # fmt: skip
        sent.append({"message_id": str(message_id), "provider_sid": last.sid,
                     "status": last.status, "error_code": last.error_code,
                     "error_message": last.error_message})  # fmt: skip
    services.db.value("select public.record_send_results(%s)", (Jsonb(sent),))
    return True


def within_rate_limits(services: Services, advisor: Advisor, msg: InboundMessage) -> bool:
    """Both limits in one Redis round trip (allowed when Redis is down)."""
    if not services.upstash:
        return True
    settings = services.settings
    customer_ok, advisor_ok = services.upstash.admit(
        [
            ("rl:customer", settings.rate_limit_customer_per_minute, msg.customer_phone),
            ("rl:advisor", settings.rate_limit_advisor_per_minute, advisor.id),
        ]
    )
    if not (customer_ok and advisor_ok):
        log.warning(
            "rate limit: message stored, AI withheld",
            customer_limited=not customer_ok,
            advisor_limited=not advisor_ok,
            advisor_id=advisor.id,
            customer_phone=msg.customer_phone,
        )
    return customer_ok and advisor_ok


def _burst_wait(configured: float, msg: InboundMessage) -> float:
    """Seconds this message waits for the rest of its burst (shared/burst.py)."""
    if configured <= 0:
        return 0.0
    media_types = [m.content_type or "" for m in msg.media]
    return burst_wait(configured, msg.body, media_types, location=msg.latitude is not None)


class RejectedReply(AssistantError):
    """The model answered, but its reply failed a check (shared.reply_check)."""

    def __init__(self, why: str, reply: Reply) -> None:
        super().__init__(f"reply rejected: {why}")
        self.usage = {"model": reply.model, "prompt_tokens": reply.prompt_tokens,
                      "completion_tokens": reply.completion_tokens,
                      "cached_tokens": reply.cached_tokens, "latency_ms": reply.latency_ms}  # fmt: skip


def _customer_text(history: list[dict[str, Any]], last: int = 1, separator: str = "\n") -> str:
    """The customer's latest messages (what they wrote or said), oldest first."""
    said = [
        str(m.get("transcript") or m.get("body") or "")
        for m in history
        if m.get("direction") == "inbound"
    ]
    return separator.join(text for text in said[-last:] if text)


def turn_context(
    now: datetime,
    hours: BusinessHours | None,
    closed: bool,
    opening: datetime | None,
    knowledge: list[dict[str, Any]] | None = None,
    knowledge_only: bool = False,
) -> str:
    """What changes every turn, for the end of the prompt: the advisor's local time, whether a
    person is available, and the passages of the business's documents that match."""
    zone = hours.zone if hours else None
    local = now.astimezone(zone) if zone else now
    lines = [f"Context for this turn: it is {local:%Y-%m-%d %H:%M} ({local.tzname()})."]
    if hours is not None:
        if closed and opening is not None:
            lines.append(f"The advisor is out of office; back {describe_opening(opening, 'en')}.")
        elif closed:
            lines.append("The advisor is out of office.")
        else:
            lines.append("The advisor is in office hours.")
    text = " ".join(lines)
    if knowledge:
        missing = (
            "call handoff_to_human" if knowledge_only
            else "say plainly that you do not have that information and offer the advisor"
        )  # fmt: skip
        passages = "\n".join(
            f"[{n}] {k['title']}" + (f" / {k['heading']}" if k.get("heading") else "")
            + f": {k['content']}"
            for n, k in enumerate(knowledge, start=1)
        )  # fmt: skip
        text += (
            "\nPassages of the business's documents that match the customer's message. Answer "
            f"from them; if the answer is not there, {missing}.\n{passages}"
        )
    return text
