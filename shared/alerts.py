"""Handoff alerts to the advisor's own WhatsApp.

The business starts this message, so WhatsApp takes it as an approved template
(ADVISOR_ALERT_CONTENT_SID, variables 1 customer, 2 reason, 3 summary) at any time, and as
free text only inside the advisor's 24-hour window; otherwise it is not sent. Outside the
advisor's business hours it waits for the next opening (the cleanup sweep sends it) unless the
advisor asked for alerts at any time. Every outcome is a row in advisor_alerts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.hours import BusinessHours
from shared.observability import get_logger
from shared.services import Services
from shared.texts import notice
from shared.whatsapp import SendResult

log = get_logger(__name__)
OUTSIDE_WINDOW = "outside the advisor's 24-hour window and no alert template"


def alert_advisor(
    services: Services,
    advisor: Any,
    customer_phone: str,
    conversation_id: str,
    reason: str,
    summary: str | None,
    hours: BusinessHours | None,
    now: datetime,
) -> str:
    """Alert now, schedule for the next opening, or record why not; returns the status."""
    settings = advisor.settings
    enabled = settings.get("notify_on_handoff", services.settings.notify_advisor_on_handoff)
    if not (enabled and advisor.phone_number):
        return "disabled"
    if hours and not hours.alerts_any_time and not hours.is_open(now):
        opening = hours.next_opening(now)
        if opening is not None:
            _record(services, conversation_id, reason, summary, "none", None, "scheduled",
                    send_after=opening)  # fmt: skip
            log.info("advisor alert scheduled", advisor_id=advisor.id, at=opening.isoformat())
            return "scheduled"
    channel, result = deliver(
        services, advisor.id, advisor.phone_number, advisor.twilio_phone_number, settings,
        customer_phone, reason, summary,
    )  # fmt: skip
    status, why = _outcome(result)
    _record(services, conversation_id, reason, summary, channel, result, status, why)
    log.info("advisor alert", advisor_id=advisor.id, channel=channel, status=status)
    return status


def deliver(
    services: Services,
    advisor_id: str,
    advisor_phone: str,
    twilio_number: str,
    settings: dict[str, Any],
    customer_phone: str,
    reason: str,
    summary: str | None,
) -> tuple[str, SendResult | None]:
    """Send the alert the way WhatsApp allows now: (channel, Twilio's answer or None)."""
    template = services.settings.advisor_alert_content_sid
    if template:
        variables = {"1": customer_phone, "2": reason[:200], "3": (summary or "-")[:900]}
        result = services.whatsapp.send(
            twilio_number, advisor_phone, content_sid=template, content_variables=variables,
            track=False,
        )  # fmt: skip
        return "template", result
    if not services.db.value("select public.advisor_window_open(%s)", (advisor_id,)):
        return "none", None
    text = notice(
        "advisor_alert", settings, customer=customer_phone, reason=reason, summary=summary or ""
    ).strip()
    return "text", services.whatsapp.send(twilio_number, advisor_phone, text, track=False)


def send_due_alerts(services: Services, claimed: list[dict[str, Any]]) -> int:
    """Send scheduled alerts whose opening came (claimed by the sweep); returns how many went."""
    sent = 0
    for alert in claimed:
        channel, result = "none", None
        if alert["advisor_active"] and alert["advisor_phone"]:
            channel, result = deliver(
                services, str(alert["advisor_id"]), alert["advisor_phone"],
                alert["twilio_phone_number"], alert["settings"], alert["customer_phone"],
                alert["reason"] or "", alert["summary"],
            )  # fmt: skip
        status, why = _outcome(result)
        services.db.value(
            "select public.finish_advisor_alert(%s, %s, %s, %s, %s, %s)",
            (alert["alert_id"], channel, result and result.sid, status,
             result and result.error_code, why),
        )  # fmt: skip
        sent += status == "sent"
    return sent


def _outcome(result: SendResult | None) -> tuple[str, str | None]:
    if result is None:
        return "skipped", OUTSIDE_WINDOW
    return ("sent" if result.ok else "failed"), result.error_message


def _record(
    services: Services,
    conversation_id: str,
    reason: str,
    summary: str | None,
    channel: str,
    result: SendResult | None,
    status: str,
    why: str | None = None,
    send_after: datetime | None = None,
) -> None:
    services.db.value(
        "select public.record_advisor_alert(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (conversation_id, reason, summary, channel, result and result.sid, status,
         result and result.error_code, why, send_after),
    )  # fmt: skip
