"""One inbound WhatsApp message, end to end (DESIGN.md): route, limit, store, decide, answer
the burst once, reply or hand off, and answer live whatever arrives meanwhile.

The promises, and where each is kept:
- Postgres is the authority for "seen": Redis only short-circuits sids Postgres stored, so a
  request that failed before storing is stored when Twilio redelivers it.
- Once stored, nothing raises: failures become rows (unhandled turns, queued or failed sends)
  the cleanup sweep finishes, and the webhook answers 200.
- A reply is committed before it is sent (`commit_reply` refuses when a human took over, the AI
  was paused, the turn was answered meanwhile, or a customer message arrived that the model did
  not see), so no turn is answered twice, no reply ignores what the customer just added, and
  the AI never talks over a person.
- The instance that holds a conversation answers, before it lets go, every message that
  arrived while it worked; the others return at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
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
# How long a burst's newest-message mark outlives the burst.
_MARK_TTL_SECONDS = 300


@dataclass(frozen=True)
class Outcome:
    action: str
    message_id: str | None = None
    conversation_id: str | None = None


def handle_inbound(services: Services, msg: InboundMessage, deadline: Deadline) -> Outcome:
    """Store the message (errors before that propagate: the caller answers 503 and Twilio
    redelivers), then answer it; after storing, nothing propagates."""
    settings, upstash = services.settings, services.upstash
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

    seen_key = f"seen:{sid}"
    permitted = True
    if upstash:  # one Redis round trip: stored already?, and both rate limits
        admission = upstash.admit(
            seen_key,
            [
                ("rl:customer", settings.rate_limit_customer_per_minute, msg.customer_phone),
                ("rl:advisor", settings.rate_limit_advisor_per_minute, advisor.id),
            ],
        )
        if admission.seen:
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
        "select public.ingest_inbound(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (advisor.id, msg.customer_phone, msg.profile_name, sid, msg.body,
         Jsonb(msg.media_json()), opt, permitted, settings.history_limit,
         settings.knowledge_top_k),
    )  # fmt: skip
    message_id, conversation_id = str(state["message_id"]), str(state["conversation_id"])
    try:
        return _after_storing(services, advisor, msg, state, opt, seen_key, deadline)
    except Exception as exc:  # stored: the sweep finishes whatever did not happen
        log.error("failed after storing; left to the sweep", error=repr(exc)[:300], sid=sid)
        capture(exc)
        return Outcome("stored", message_id, conversation_id)


def _after_storing(
    services: Services,
    advisor: Advisor,
    msg: InboundMessage,
    state: dict[str, Any],
    opt: str | None,
    seen_key: str,
    deadline: Deadline,
) -> Outcome:
    upstash, ttl = services.upstash, services.settings.dedup_ttl_seconds
    message_id, conversation_id = str(state["message_id"]), str(state["conversation_id"])
    if not state["is_new"]:
        if upstash:
            upstash.remember(seen_key, ttl)
        log.info("duplicate delivery (database)", sid=msg.message_sid, message_id=message_id)
        return Outcome("duplicate", message_id, conversation_id)
    log.info("inbound stored", sid=msg.message_sid, message_id=message_id)

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

    # A message the AI will not answer is not marked seen in Redis: Postgres dedups its rare
    # redelivery (one round trip then), instead of a Redis call for every such message. The mark
    # rides with the conversation lock when the AI answers.
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

    superseded, mark = _burst(services, msg, conversation_id, message_id, state, deadline)
    if superseded:
        log.info("burst: a newer message will answer", message_id=message_id)
        return Outcome("superseded", message_id, conversation_id)

    return answer_turn(
        services, advisor, msg.customer_phone, conversation_id,
        Turn.from_state(state, images), deadline, remember=seen_key, mark=mark,
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
    remember: str | None = None,
    mark: tuple[str, str] | None = None,
) -> Outcome:
    """Answer a conversation's turn (the webhook, or the recovery sweep), one instance at a
    time, then every message that arrived meanwhile, while the budget allows. `remember` (a
    seen key) and `mark` (the burst's newest-message mark) ride with the lock."""
    outcome = Outcome("busy", conversation_id=conversation_id)
    answered: list[str] = []
    while True:
        with _conversation_lock(services, conversation_id, remember, mark) as held:
            remember = mark = None
            if not held:
                # The holder answers this message before it lets go (see below).
                log.info("conversation busy, its holder answers", conversation_id=conversation_id)
                return outcome
            outcome = _answer(services, advisor, customer_phone, conversation_id, turn, deadline)
        # Released: whatever arrived while we held the lock found it taken, so it is ours.
        if deadline.remaining() < _MIN_TURN_SECONDS + _AFTER_MODEL_RESERVE:
            return outcome
        settings = services.settings
        pending: dict[str, Any] = services.db.value(
            "select public.pending_turn(%s, %s, %s)",
            (conversation_id, settings.history_limit, settings.knowledge_top_k),
        )
        if not (pending and pending["unhandled"] and pending.get("ai_allowed")):
            return outcome
        if pending["unhandled"] == answered:  # our last answer could not take them: the sweep will
            return outcome
        answered = pending["unhandled"]
        log.info("answering what arrived meanwhile", count=len(pending["unhandled"]))
        turn = Turn.from_state(pending)


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


@contextmanager
def _conversation_lock(
    services: Services,
    conversation_id: str,
    remember: str | None = None,
    mark: tuple[str, str] | None = None,
) -> Iterator[bool]:
    """Redis lock with expiry; yields False if another instance holds it (True if Redis is down:
    then `commit_reply` alone keeps a turn from being answered twice). `remember` marks a stored
    sid and `mark` sets the burst's newest message in the same round trip."""
    upstash, settings = services.upstash, services.settings
    key = f"lock:conversation:{conversation_id}"
    token = (
        upstash.acquire_lock(
            key,
            settings.conversation_lock_seconds,
            (remember, settings.dedup_ttl_seconds) if remember else None,
            (mark[0], mark[1], _MARK_TTL_SECONDS) if mark else None,
        )
        if upstash
        else None
    )
    try:
        yield token is not False
    finally:
        if upstash and isinstance(token, str):
            upstash.release_lock(key, token)


def _burst(
    services: Services,
    msg: InboundMessage,
    conversation_id: str,
    message_id: str,
    state: dict[str, Any],
    deadline: Deadline,
) -> tuple[bool, tuple[str, str] | None]:
    """Wait for the customer to finish typing. Returns whether a newer message arrived meanwhile,
    and the mark (key, value) that makes this message the conversation's newest when it is
    still to be set: a message that reads as complete does not wait, and its mark rides with
    the conversation lock, so an older fragment that is waiting leaves the burst to it."""
    configured = services.settings.burst_wait_seconds
    if configured <= 0:
        return False, None
    mark = (f"latest:{conversation_id}", f"{state['created_us']:020d}:{message_id}")
    media_types = [m.content_type or "" for m in msg.media]
    wait = burst_wait(configured, msg.body, media_types, location=msg.latitude is not None)
    if wait <= 0:
        return False, mark
    upstash = services.upstash
    stored = upstash.set_if_newer(mark[0], mark[1], _MARK_TTL_SECONDS) if upstash else None
    services.sleep(min(wait, max(0.0, deadline.remaining() - _AFTER_MODEL_RESERVE * 2)))
    latest = upstash.get(mark[0]) if upstash and stored is not None else None
    if latest is not None:
        return latest != mark[1], None
    # Redis unavailable: ask the ground truth.
    newest = services.db.value("select public.latest_inbound_id(%s)", (conversation_id,))
    return str(newest) != message_id, None


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
