"""Webhook function: Twilio posts inbound WhatsApp messages (POST /) and status callbacks
(POST /status) here; GET /health answers without touching any service.

Thin on purpose: authenticate, parse, hand to `shared`, answer TwiML. Entry point: `webhook`.
"""

from __future__ import annotations

import functions_framework
from flask import Request, Response, jsonify
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from shared.db import DatabaseUnavailable
from shared.inbound import handle_inbound
from shared.observability import capture, get_logger, set_trace, start_function
from shared.services import Deadline, get_services
from shared.status import apply_status_callback
from shared.twilio_payloads import InboundMessage, PayloadError, StatusCallback

REQUIRED_SETTINGS = (
    "database_url",
    "twilio_account_sid",
    "twilio_auth_token",
    "webhook_public_url",
    "openai_api_key",
)

settings = start_function(REQUIRED_SETTINGS)  # fail at cold start, naming what is missing
log = get_logger("webhook")
validator = RequestValidator(settings.secret(settings.twilio_auth_token))


# Twilio needs no instructions back: the reply is sent through the REST API.
EMPTY_TWIML = str(MessagingResponse())


def _twiml() -> Response:
    return Response(EMPTY_TWIML, mimetype="text/xml")


def _error(status: int, reason: str) -> Response:
    return Response(reason + "\n", status=status, mimetype="text/plain")


def signature_is_valid(request: Request) -> bool:
    """Check X-Twilio-Signature against the public URL Twilio called, never the proxy's."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    base = (settings.webhook_public_url or "").rstrip("/")
    query = request.query_string.decode()
    path = request.path if request.path != "/" else ""
    urls = [base + path] + ([base + "/"] if not path else [])
    urls = [url + (f"?{query}" if query else "") for url in urls]
    # Whether the configured URL carries the connection-override fragment or not.
    fragment = settings.twilio_connection_overrides
    urls += [f"{url}#{fragment}" for url in urls] if fragment else []
    return any(validator.validate(url, request.form, signature) for url in urls)


@functions_framework.http
def webhook(request: Request) -> Response:
    set_trace(request.headers.get("X-Cloud-Trace-Context"))
    path = request.path.rstrip("/") or "/"
    if path == "/health":
        return jsonify(status="ok", function="webhook")
    if path not in ("/", "/status"):
        return _error(404, "not found")
    if request.method != "POST":
        return _error(405, "method not allowed")
    if not signature_is_valid(request):
        log.warning("rejected request with a missing or wrong Twilio signature", path=path)
        return _error(403, "invalid Twilio signature")

    form = request.form.to_dict()
    try:
        payload = (
            StatusCallback.from_form(form) if path == "/status" else InboundMessage.from_form(form)
        )
    except PayloadError as exc:
        log.warning("malformed Twilio form", reason=str(exc), path=path)
        return _error(400, f"malformed request: {exc}")
    try:
        services = get_services()
        if isinstance(payload, StatusCallback):
            apply_status_callback(services.db, payload, request.args.get("message_id"))
        else:
            handle_inbound(services, payload, Deadline(settings.request_budget_seconds))
        return _twiml()
    except DatabaseUnavailable as exc:
        # Not stored: 503 lets Twilio retry or use the fallback URL.
        log.error("database unavailable", error=str(exc))
        capture(exc)
        return _error(503, "temporarily unavailable")
