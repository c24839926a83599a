"""Structured logs for Cloud Logging, and Sentry, both scrubbed of phone numbers and bodies.

One JSON object per line with `severity`, `message` and, when the request carried
`X-Cloud-Trace-Context`, `logging.googleapis.com/trace`, so Cloud Logging groups a request's
lines. Phone numbers keep their country code and last three digits; message bodies are only
logged at DEBUG.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import sentry_sdk

from shared.config import Settings, get_settings

_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)

# ITU country codes of one or two digits; every other code has three.
_CC1 = {"1", "7"}
_CC2 = {
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
    "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
}  # fmt: skip
_PHONE = re.compile(r"\+\d{7,15}")
_BODY_KEYS = {"body", "Body", "text", "transcript", "content", "prompt", "reply"}
_PHONE_KEYS = {"from", "to", "From", "To", "WaId", "phone", "customer_phone", "phone_number"}
FILTERED = "[Filtered]"


def mask_phone(number: str) -> str:
    """'+573012345678' -> '+57*******678' (works with or without 'whatsapp:' and '+')."""
    prefix, _, rest = number.rpartition(":")
    digits = rest.lstrip("+")
    if not digits.isdigit() or len(digits) < 6:
        return number
    cc_len = 1 if digits[0] in _CC1 else 2 if digits[:2] in _CC2 else 3
    masked = digits[:cc_len] + "*" * (len(digits) - cc_len - 3) + digits[-3:]
    return (prefix + ":" if prefix else "") + ("+" if rest.startswith("+") else "") + masked


def scrub_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def scrub(value: Any, *, keep_bodies: bool = False) -> Any:
    """Recursively mask phone numbers and (unless kept) drop message bodies."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not keep_bodies and key in _BODY_KEYS and item:
                out[key] = FILTERED
            elif key in _PHONE_KEYS and isinstance(item, str):
                out[key] = mask_phone(item)
            else:
                out[key] = scrub(item, keep_bodies=keep_bodies)
        return out
    if isinstance(value, list | tuple):
        return [scrub(item, keep_bodies=keep_bodies) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": scrub_text(record.getMessage()),
            "logger": record.name,
            **scrub(fields, keep_bodies=record.levelno <= logging.DEBUG),
        }
        trace = _trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = (
                f"projects/{self.project}/traces/{trace}" if self.project else trace
            )
        if record.exc_info:
            entry["exception"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def set_trace(header: str | None) -> None:
    """Remember the trace id from `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`."""
    _trace.set(header.split("/", 1)[0] if header else None)


# Client libraries that log every request at INFO (twilio: a dozen lines per message).
_CHATTY_LOGGERS = (
    "httpx",
    "httpx2",
    "httpcore",
    "twilio.http_client",
    "openai",
    "urllib3",
    "hpack",
)


def configure_logging(project: str | None = None, level: int = logging.INFO) -> None:
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudLoggingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(project))
    root.handlers = [handler]
    root.setLevel(level)


def get_logger(name: str) -> StructuredLogger:
    return StructuredLogger(logging.getLogger(name))


class StructuredLogger:
    """`log.info("message stored", conversation_id=...)`: keyword fields become JSON fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, message: str, exc_info: bool, fields: dict[str, Any]) -> None:
        self._logger.log(level, message, exc_info=exc_info, extra={"fields": fields})

    def debug(self, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, message, False, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, False, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, False, fields)

    def error(self, message: str, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, message, exc_info, fields)


def before_send(event: Any, hint: Any) -> Any:
    """Sentry hook: no phone number or message body leaves the process."""
    return scrub(event)


def init_sentry(dsn: str | None, environment: str, **options: Any) -> bool:
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        before_send=before_send,
        traces_sample_rate=0.0,
        # Frame locals would carry message bodies inside object reprs no key-based scrub sees.
        include_local_variables=False,
        **options,
    )
    return True


def start_function(required: tuple[str, ...]) -> Settings:
    """Cold start of a function: settings, JSON logs, required secrets (named if missing), Sentry,
    and the GIL's switch interval for the function's threads."""
    settings = get_settings()
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    configure_logging(settings.google_cloud_project)
    settings.require(*required)
    init_sentry(settings.secret(settings.sentry_dsn) or None, settings.environment)
    return settings


def capture(exc: BaseException) -> None:
    sentry_sdk.capture_exception(exc)
