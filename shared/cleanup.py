"""One cleanup run: recovery (nothing lost), handoff expiry, retention. Each part is bounded in
batch size and time, claims its rows in the database (safe with overlapping runs), and reports
counts and duration; a failing part is reported and the others still run."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from shared.inbound import answer_turn
from shared.media import store_inbound_media
from shared.observability import capture, get_logger
from shared.services import Deadline, Services
from shared.whatsapp import RETRYABLE_CODES, SendResult

log = get_logger(__name__)
Part = Callable[[Services, Deadline], dict[str, int]]
MEDIA_MAX_ATTEMPTS = 3


def run_cleanup(services: Services, *, dry_run: bool = False) -> tuple[dict[str, Any], bool]:
    """Return the report and whether every part failed."""
    deadline = Deadline(services.settings.cleanup_budget_seconds)
    if dry_run:
        parts: dict[str, Part] = {"preview": _preview}
    else:
        parts = {"recovery": _recovery, "handoff_expiry": _expire_handoffs, "retention": _retention}
    report: dict[str, Any] = {"dry_run": dry_run}
    failures = 0
    for name, part in parts.items():
        started = time.monotonic()
        try:
            result: dict[str, Any] = dict(part(services, deadline))
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


def _recovery(services: Services, deadline: Deadline) -> dict[str, int]:
    """Nothing lost: unanswered turns, failed media downloads, unsent messages."""
    return {
        **_answer_unanswered(services, deadline),
        **_retry_media(services, deadline),
        **_resend(services, deadline),
    }


def _answer_unanswered(services: Services, deadline: Deadline) -> dict[str, int]:
    s = services.settings
    counts = {"turns_answered": 0, "turns_skipped": 0}
    while deadline.remaining() > s.request_budget_seconds:
        turns: list[dict[str, Any]] = services.db.value(
            "select public.claim_unanswered_turns(%s, %s, %s, %s, %s)",
            (s.recovery_batch_size, timedelta(seconds=s.recovery_min_age_seconds),
             timedelta(seconds=s.recovery_max_age_seconds),
             timedelta(seconds=s.request_budget_seconds * 4), s.history_limit),
        )  # fmt: skip
        if not turns:
            break
        for turn in turns:
            advisor = services.router.advisor_for(turn["twilio_phone_number"])
            if advisor is None or not turn["ai_allowed"]:
                services.db.value(
                    "select public.mark_turn_handled(%s, %s)",
                    (turn["conversation_id"], turn["message_id"]),
                )
                counts["turns_skipped"] += 1
                continue
            outcome = answer_turn(
                services, advisor, turn["customer_phone"], str(turn["conversation_id"]),
                turn["history"], Deadline(s.request_budget_seconds),
                audio_available=bool(turn["audio_available"]),
            )  # fmt: skip
            answered = outcome.action not in ("busy", "withheld")
            counts["turns_answered" if answered else "turns_skipped"] += 1

    return counts


def _retry_media(services: Services, deadline: Deadline) -> dict[str, int]:
    s = services.settings
    counts = {"media_retried": 0, "media_failed": 0}
    while deadline.remaining() > s.media_timeout_seconds * 2:
        pending: list[dict[str, Any]] = services.db.value(
            "select public.claim_media_retries(%s, %s, %s)",
            (s.recovery_batch_size, timedelta(days=1), MEDIA_MAX_ATTEMPTS),
        )
        if not pending:
            break
        for row in pending:
            media = store_inbound_media(
                services, str(row["tenant_id"]), str(row["advisor_id"]),
                str(row["conversation_id"]), str(row["message_id"]), row["media"],
                Deadline(s.media_timeout_seconds * 3),
            )  # fmt: skip
            services.db.value(
                "select public.update_inbound_media(%s, %s, %s)",
                (row["message_id"], Jsonb(media.media), media.transcript),
            )
            failed = any(item.get("status") == "failed" for item in media.media)
            counts["media_failed" if failed else "media_retried"] += 1
    return counts


def _resend(services: Services, deadline: Deadline) -> dict[str, int]:
    s = services.settings
    counts = {"resent": 0, "resend_failed": 0}
    while deadline.remaining() > s.twilio_timeout_seconds * 2:
        resends: list[dict[str, Any]] = services.db.value(
            "select public.claim_resends(%s, %s, %s, %s, %s)",
            (s.recovery_batch_size, timedelta(seconds=s.recovery_min_age_seconds),
             s.resend_max_attempts, _retry_codes(), timedelta(seconds=s.resend_backoff_seconds)),
        )  # fmt: skip
        if not resends:
            break
        for row in resends:
            result = _already_sent(services, row) or _send_row(services, row)
            services.db.value(
                "select public.finish_resend(%s, %s, %s, %s, %s)",
                (row["message_id"], result.sid, result.status, result.error_code,
                 result.error_message),
            )  # fmt: skip
            counts["resent" if result.ok else "resend_failed"] += 1
    return counts


def _already_sent(services: Services, row: dict[str, Any]) -> SendResult | None:
    """A row committed but never recorded as sent may have reached Twilio before a crash: ask
    Twilio before sending it again, never resend blindly. If Twilio cannot say, the row goes
    back to failed without a code, so the next run asks again."""
    maybe_sent = row["status_before"] == "queued" or (
        row["status_before"] == "failed" and row["error_code_before"] is None  # a timeout
    )
    if not maybe_sent:
        return None
    try:
        return services.whatsapp.find_sent(
            row["twilio_phone_number"], row["customer_phone"], row["body"],
            datetime.fromisoformat(row["created_at"]),
        )  # fmt: skip
    except Exception as exc:
        log.warning("could not ask Twilio whether a message was sent", error=repr(exc)[:200])
        return SendResult(None, "failed", None, "unknown whether sent: Twilio list failed")


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


def _retention(services: Services, deadline: Deadline) -> dict[str, int]:
    s, db = services.settings, services.db
    counts = {"messages": 0, "ai_runs": 0, "service_rows": 0, "conversations_closed": 0,
              "storage_objects": 0, "batches": 0}  # fmt: skip
    cutoffs: list[dict[str, Any]] = db.value(
        "select public.retention_cutoffs(%s)", (s.retention_days,)
    )

    def drain(query: str, params: tuple[Any, ...], key: str) -> None:
        # Small batches, each its own short transaction: no long locks.
        while deadline.remaining() > 0:
            result = db.value(query, params)
            deleted = int(result["deleted"] if isinstance(result, dict) else result)
            if isinstance(result, dict) and result["media_paths"]:
                counts["storage_objects"] += _remove_objects(services, result["media_paths"])
            counts[key] += deleted
            counts["batches"] += 1
            if deleted < s.cleanup_batch_size:
                return

    for tenant in cutoffs:
        args = (tenant["tenant_id"], tenant["cutoff"], s.cleanup_batch_size)
        drain("select public.purge_messages(%s, %s, %s)", args, "messages")
        drain("select public.purge_ai_runs(%s, %s, %s)", args, "ai_runs")
    service_cutoff = db.value("select now() - make_interval(days => %s)", (s.retention_days,))
    drain(
        "select public.purge_service_rows(%s, %s)",
        (service_cutoff, s.cleanup_batch_size),
        "service_rows",
    )
    drain(
        "select public.close_empty_conversations(%s)",
        (s.cleanup_batch_size,),
        "conversations_closed",
    )
    return counts
