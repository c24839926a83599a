"""Delivery-status callbacks: applied forward-only by the database (public.apply_status)."""

from __future__ import annotations

import uuid

from shared.db import Database
from shared.observability import get_logger
from shared.twilio_payloads import StatusCallback
from shared.whatsapp import STATUS_MAP

log = get_logger(__name__)


def apply_status_callback(
    db: Database, callback: StatusCallback, message_id: str | None = None
) -> str:
    """Return 'applied', 'unchanged', 'early' (message not recorded yet) or 'ignored'.
    `message_id` (from the StatusCallback URL we set, covered by the signature) names our row:
    a send whose answer never reached us gets its sid from here."""
    status = STATUS_MAP.get(callback.message_status.lower())
    if status is None:
        log.info(
            "status callback ignored", sid=callback.message_sid, status=callback.message_status
        )
        return "ignored"
    row_id = message_id if message_id and _is_uuid(message_id) else None
    result = str(
        db.value(
            "select public.record_status(%s, %s, %s, %s, %s)",
            (callback.message_sid, status, callback.error_code, callback.error_message, row_id),
        )
    )
    log_fields: dict[str, object] = {
        "sid": callback.message_sid,
        "status": status,
        "result": result,
    }
    if callback.error_code:
        log_fields["error_code"] = callback.error_code
    if result == "early":
        log.info("status for a message not recorded yet, kept for it", **log_fields)
    else:
        log.info("status callback", **log_fields)
    return result


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
