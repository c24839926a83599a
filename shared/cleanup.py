"""One cleanup run: recovery (nothing lost), handoff expiry, retention. Each part is bounded in
batch size and time, claims its rows in the database (safe with overlapping runs), and reports
counts and duration; a failing part is reported and the others still run.

Recovery works item by item through one loop (`_drain`): an item is claimed (leased) just
before it is handled, and the deadline is checked before each claim, so no lease lapses while
other items are handled and a run ends within its budget. Recovery gets at most
RECOVERY_SHARE of the budget, so a backlog of turns to answer never starves retention.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from shared.alerts import send_due_alerts
from shared.inbound import Turn, answer_turn
from shared.media import store_inbound_media
from shared.observability import capture, get_logger
from shared.services import Deadline, Services
from shared.whatsapp import RETRYABLE_CODES, SendResult

log = get_logger(__name__)
Part = Callable[[Services, Deadline], dict[str, int]]
MEDIA_MAX_ATTEMPTS = 3
RECOVERY_SHARE = 0.6


def run_cleanup(services: Services, *, dry_run: bool = False) -> tuple[dict[str, Any], bool]:
    """Return the report and whether every part failed."""
    budget = services.settings.cleanup_budget_seconds
    deadline = Deadline(budget)
    if dry_run:
        parts: dict[str, Part] = {"preview": _preview}
    else:
        parts = {
            "recovery": _recovery,
            "handoff_expiry": _expire_handoffs,
            "advisor_alerts": _due_alerts,
            "retention": _retention,
        }
    report: dict[str, Any] = {"dry_run": dry_run}
    failures = 0
    for name, part in parts.items():
        started = time.monotonic()
        part_deadline = deadline.within(budget * RECOVERY_SHARE) if name == "recovery" else deadline
        try:
            result: dict[str, Any] = dict(part(services, part_deadline))
        except Exception as exc:
            failures += 1
            capture(exc)
            log.error("cleanup part failed", part=name, error=str(exc), exc_info=True)
            result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        result["ms"] = int((time.monotonic() - started) * 1000)
        report[name] = result
    log.info("cleanup run", **report)
    return report, failures == len(parts)


def _retry_codes() -> list[int]:
    return sorted(RETRYABLE_CODES)


def _preview(services: Services, deadline: Deadline) -> dict[str, int]:
    s = services.settings
    counts: dict[str, int] = services.db.value(
        "select public.cleanup_preview(%s, %s, %s, %s, %s)",
        (s.retention_days, timedelta(seconds=s.recovery_min_age_seconds),
         timedelta(seconds=s.recovery_max_age_seconds), s.resend_max_attempts, _retry_codes()),
    )  # fmt: skip
    return counts


def _drain(
    deadline: Deadline,
    seconds_per_item: float,
    claim: Callable[[], list[dict[str, Any]]],
    handle: Callable[[dict[str, Any]], str],
    counts: Counter[str],
) -> None:
    """Claim and handle one item at a time while an item's worst case still fits; each
    `handle` names the count its item adds to."""
    while deadline.remaining() > seconds_per_item:
        items = claim()
        if not items:
            return
        for item in items:
            counts[handle(item)] += 1


def _recovery(services: Services, deadline: Deadline) -> dict[str, int]:
    """Nothing lost: unanswered turns, failed media downloads, unsent messages."""
    s = services.settings
    counts: Counter[str] = Counter(
        turns_answered=0, turns_skipped=0, media_retried=0, media_failed=0,
        resent=0, resend_failed=0, already_sent=0, canceled=0,
    )  # fmt: skip
    _drain(
        deadline, s.conversation_lock_seconds,
        lambda: _claim_turn(services), lambda turn: _answer_turn(services, turn), counts,
    )  # fmt: skip
    _drain(
        deadline, s.media_timeout_seconds * 3,
        lambda: services.db.value(
            "select public.claim_media_retries(%s, %s, %s)", (1, timedelta(days=1), MEDIA_MAX_ATTEMPTS)
        ),
        lambda row: _retry_media(services, row), counts,
    )  # fmt: skip
    _drain(
        deadline, s.twilio_timeout_seconds * 2,
        lambda: _claim_resend(services, counts), lambda row: _resend(services, row), counts,
    )  # fmt: skip
    return dict(counts)


def _claim_turn(services: Services) -> list[dict[str, Any]]:
    s = services.settings
    turn = services.db.value(
        "select public.claim_unanswered_turn(%s, %s, %s, %s, %s)",
        (timedelta(seconds=s.recovery_min_age_seconds),
         timedelta(seconds=s.recovery_max_age_seconds),
         timedelta(seconds=s.conversation_lock_seconds), s.history_limit, s.knowledge_top_k),
    )  # fmt: skip
    return [turn] if turn else []


def _answer_turn(services: Services, turn: dict[str, Any]) -> str:
    advisor = services.router.advisor_for(turn["twilio_phone_number"])
    if advisor is None or not turn["ai_allowed"]:
        services.db.value(
            "select public.mark_turn_handled(%s, %s)", (turn["conversation_id"], turn["message_id"])
        )
        return "turns_skipped"
    outcome = answer_turn(
        services, advisor, turn["customer_phone"], str(turn["conversation_id"]),
        Turn.from_state(turn), Deadline(services.settings.request_budget_seconds),
    )  # fmt: skip
    return "turns_skipped" if outcome.action in ("busy", "withheld") else "turns_answered"


def _retry_media(services: Services, row: dict[str, Any]) -> str:
    media = store_inbound_media(
        services, str(row["tenant_id"]), str(row["advisor_id"]), str(row["conversation_id"]),
        str(row["message_id"]), row["media"], Deadline(services.settings.media_timeout_seconds * 3),
    )  # fmt: skip
    services.db.value(
        "select public.update_inbound_media(%s, %s, %s)",
        (row["message_id"], Jsonb(media.media), media.transcript),
    )
    failed = any(item.get("status") == "failed" for item in media.media)
    return "media_failed" if failed else "media_retried"


def _claim_resend(services: Services, counts: Counter[str]) -> list[dict[str, Any]]:
    """The next row to send; rows that may no longer be sent are canceled on the way."""
    s = services.settings
    while True:
        claimed: dict[str, Any] = services.db.value(
            "select public.claim_resends(%s, %s, %s, %s, %s, %s)",
            (1, timedelta(seconds=s.recovery_min_age_seconds),
             timedelta(seconds=s.recovery_max_age_seconds), s.resend_max_attempts,
             _retry_codes(), timedelta(seconds=s.resend_backoff_seconds)),
        )  # fmt: skip
        counts["canceled"] += int(claimed["canceled"])
        if claimed["rows"] or not claimed["canceled"]:
            rows: list[dict[str, Any]] = claimed["rows"]
            return rows


def _resend(services: Services, row: dict[str, Any]) -> str:
    """Send a claimed row again, unless it may already be at Twilio: a row committed but never
    recorded (queued, or left 'sending' by a dead run), or failed without a Twilio error code
    (a timeout, a dropped connection, a gateway 5xx) is first looked up in Twilio's list."""
    maybe_sent = row["status_before"] in ("queued", "sending") or (
        row["status_before"] == "failed" and row["error_code_before"] is None
    )
    result: SendResult | None = None
    if maybe_sent:
        try:
            result = services.whatsapp.find_sent(
                row["twilio_phone_number"], row["customer_phone"], row["body"],
                datetime.fromisoformat(row["created_at"]), frozenset(row["known_sids"]),
            )  # fmt: skip
        except Exception as exc:
            log.warning("could not ask Twilio whether a message was sent", error=repr(exc)[:200])
            result = SendResult(None, "failed", None, "unknown whether sent: Twilio's list failed")
    key = "already_sent" if result else "resent"
    if result is None and row["attempts"] > services.settings.resend_max_attempts:
        result = SendResult(None, "failed", None, "not sent: attempts exhausted")
    if result is None:
        result = _send_row(services, row)
    services.db.value(
        "select public.finish_resend(%s, %s, %s, %s, %s)",
        (row["message_id"], result.sid, result.status, result.error_code, result.error_message),
    )
    return key if result.ok else "resend_failed"


def _send_row(services: Services, row: dict[str, Any]) -> SendResult:
    items = row["media"] or []
    template = next((m for m in items if m.get("type") == "template"), None)
    urls = [m["url"] for m in items if m.get("url")]
    return services.whatsapp.send(
        row["twilio_phone_number"], row["customer_phone"], body=row["body"],
        media_urls=urls or None,
        content_sid=template["content_sid"] if template else None,
        content_variables=template.get("variables") if template else None,
        message_id=str(row["message_id"]),
    )  # fmt: skip


def _remove_objects(services: Services, paths: list[str]) -> int:
    """Remove Storage objects in calls Storage accepts; raises if any call fails (the caller
    keeps the rows, so the next run tries again)."""
    if not paths:
        return 0
    if services.storage is None:
        log.warning(
            "storage not configured: media objects of deleted messages kept", count=len(paths)
        )
        return 0
    return services.storage.remove(paths)


def _expire_handoffs(services: Services, deadline: Deadline) -> dict[str, int]:
    total = 0
    while deadline.remaining() > 0:
        count = int(
            services.db.value(
                "select public.expire_handoffs(%s)", (services.settings.cleanup_batch_size,)
            )
        )
        total += count
        if count < services.settings.cleanup_batch_size:
            break
    return {"conversations": total}


def _due_alerts(services: Services, deadline: Deadline) -> dict[str, int]:
    """Handoff alerts that waited for the advisor's opening hours."""
    counts = {"claimed": 0, "sent": 0}
    while deadline.remaining() > services.settings.twilio_timeout_seconds * 2:
        claimed: list[dict[str, Any]] = services.db.value(
            "select public.claim_due_alerts(%s, %s)",
            (services.settings.recovery_batch_size,
             timedelta(seconds=services.settings.cleanup_budget_seconds * 2)),
        )  # fmt: skip
        if not claimed:
            break
        counts["claimed"] += len(claimed)
        counts["sent"] += send_due_alerts(services, claimed)
    return counts


def _retention(services: Services, deadline: Deadline) -> dict[str, int]:
    s, db = services.settings, services.db
    counts = {"messages": 0, "ai_runs": 0, "advisor_alerts": 0, "service_rows": 0, "audit_events": 0,
              "conversations_closed": 0, "storage_objects": 0, "batches": 0}  # fmt: skip
    cutoffs: list[dict[str, Any]] = db.value(
        "select public.retention_cutoffs(%s)", (s.retention_days,)
    )

    def drain(query: str, params: tuple[Any, ...], key: str) -> None:
        # Small batches, each its own short transaction: no long locks.
        while deadline.remaining() > 0:
            deleted = int(db.value(query, params))
            counts[key] += deleted
            counts["batches"] += 1
            if deleted < s.cleanup_batch_size:
                return

    def purge_messages(tenant_id: str, cutoff: str) -> None:
        # Media first: a row is deleted only once its objects are gone.
        while deadline.remaining() > 0:
            batch: dict[str, Any] = db.value(
                "select public.expired_messages(%s, %s, %s)",
                (tenant_id, cutoff, s.cleanup_batch_size),
            )
            if not batch["ids"]:
                return
            counts["storage_objects"] += _remove_objects(services, batch["media_paths"])
            counts["messages"] += int(
                db.value("select public.delete_messages(%s, %s)", (batch["ids"], cutoff))
            )
            counts["batches"] += 1
            if len(batch["ids"]) < s.cleanup_batch_size:
                return

    for tenant in cutoffs:
        purge_messages(tenant["tenant_id"], tenant["cutoff"])
        args = (tenant["tenant_id"], tenant["cutoff"], s.cleanup_batch_size)
        drain("select public.purge_ai_runs(%s, %s, %s)", args, "ai_runs")
        drain("select public.purge_advisor_alerts(%s, %s, %s)", args, "advisor_alerts")
    service_cutoff = db.value("select now() - make_interval(days => %s)", (s.retention_days,))
    drain(
        "select public.purge_service_rows(%s, %s)",
        (service_cutoff, s.cleanup_batch_size),
        "service_rows",
    )
    audit_cutoff = db.value("select now() - make_interval(days => %s)", (s.audit_retention_days,))
    drain(
        "select public.purge_audit_events(%s, %s)",
        (audit_cutoff, s.cleanup_batch_size),
        "audit_events",
    )
    drain(
        "select public.close_empty_conversations(%s)",
        (s.cleanup_batch_size,),
        "conversations_closed",
    )
    return counts
