"""The kept stack's floor, for benchmarks only (never deployed): what an inbound message costs in
the framework and SDKs the webhook keeps, with none of our logic and no Postgres.

Two targets, served by functions-framework like the webhook and with its settings:
- `twiml_only`: the signature check (twilio's validator), the form, the empty TwiML answer:
  what any inbound message costs, stored-only or answered.
- `sdk_calls`: the same, then the calls an AI-answered message makes, through the webhook's own
  clients: both rate limits (one Upstash pipeline), the typing indicator, the model (the
  webhook's default instructions and the message as a one-message history), the Twilio send.
The webhook's CPU above these is ours: Postgres round trips, routing, turns, prompts, checks
and logs.
"""

from __future__ import annotations

import functions_framework
from flask import Request, Response
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from shared.config import get_settings
from shared.inbound import within_rate_limits
from shared.routing import Advisor
from shared.services import get_services
from shared.texts import system_prompt
from shared.twilio_payloads import InboundMessage

settings = get_settings()
validator = RequestValidator(settings.secret(settings.twilio_auth_token))
EMPTY_TWIML = str(MessagingResponse())


def _checked(request: Request) -> InboundMessage | None:
    url = settings.webhook_public_url or ""
    if not validator.validate(url, request.form, request.headers.get("X-Twilio-Signature", "")):
        return None
    return InboundMessage.from_form(request.form.to_dict())


def _twiml() -> Response:
    return Response(EMPTY_TWIML, mimetype="text/xml")


@functions_framework.http
def twiml_only(request: Request) -> Response:
    if _checked(request) is None:
        return Response("forbidden", status=403)
    return _twiml()


@functions_framework.http
def sdk_calls(request: Request) -> Response:
    msg = _checked(request)
    if msg is None:
        return Response("forbidden", status=403)
    services = get_services()
    assert services.upstash, "the floor needs Upstash, as the webhook's AI-answered path does"
    # The webhook's own admission (both limits, one pipeline); the number stands in for the
    # advisor's id, which only names the limit's key.
    advisor = Advisor(msg.advisor_number, "", "Bench", msg.advisor_number)
    within_rate_limits(services, advisor, msg)
    services.whatsapp.show_typing(msg.message_sid)
    reply = services.assistant.reply(
        system_prompt({}, "Bench"),
        [{"direction": "inbound", "author": "customer", "body": msg.body}],
        timeout=settings.request_budget_seconds,
    )
    services.whatsapp.send(msg.advisor_number, msg.customer_phone, reply.text or "…")
    return _twiml()
