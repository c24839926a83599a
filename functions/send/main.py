"""Send function: dashboards post an advisor's message to a customer (POST /messages), mark a
conversation read (POST /conversations/<id>/read: nothing unread, blue ticks for the customer),
tenant admins manage the knowledge base (GET/POST /knowledge, DELETE /knowledge/<id>) and
answer a customer's data rights (POST /customers/export, POST /customers/erase).

Thin on purpose: CORS, verify the Supabase token, validate the body, hand to `shared`, answer
JSON. Authorization is the database's RLS, evaluated as the caller. Entry point: `send`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import functions_framework
import psycopg
from flask import Request, Response, jsonify
from pydantic import BaseModel, ValidationError

from shared import data_rights, knowledge
from shared.auth import AuthError, AuthUnavailable, TokenVerifier, bearer_token
from shared.config import MissingSettingError
from shared.db import DatabaseUnavailable, refusal
from shared.observability import capture, get_logger, set_trace, start_function
from shared.outbound import Answer, SendRequest, mark_read, send_advisor_message
from shared.services import get_services

REQUIRED_SETTINGS = (
    "database_url",
    "twilio_account_sid",
    "twilio_auth_token",
    "webhook_public_url",
)

settings = start_function(REQUIRED_SETTINGS)
if not (settings.supabase_jwt_secret or settings.jwks_url):
    raise MissingSettingError(
        "missing required setting(s): SUPABASE_JWT_SECRET or SUPABASE_URL/SUPABASE_JWKS_URL"
    )
log = get_logger("send")
_UUID = r"([0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})"
# (path, methods, name): what this function serves.
ROUTES = [
    (re.compile(r"/messages"), ("POST",), "send"),
    (re.compile(rf"/conversations/{_UUID}/read"), ("POST",), "read"),
    (re.compile(r"/knowledge"), ("GET", "POST"), "knowledge"),
    (re.compile(rf"/knowledge/{_UUID}"), ("DELETE",), "knowledge_item"),
    (re.compile(r"/customers/(export|erase)"), ("POST",), "customers"),
]
# Knowledge documents are the largest bodies (200,000 characters, up to 4 bytes each).
MAX_BODY_BYTES = 1_000_000
Model = TypeVar("Model", bound=BaseModel)
verifier = TokenVerifier(
    settings.secret(settings.supabase_jwt_secret) or None,
    settings.jwks_url,
    settings.supabase_jwt_audience,
)


def _json(status: int, body: dict[str, Any], origin: str | None) -> Response:
    response = jsonify(body)
    response.status_code = status
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


@functions_framework.http
def send(request: Request) -> Response:
    set_trace(request.headers.get("X-Cloud-Trace-Context"))
    origin = request.headers.get("Origin", "").rstrip("/")
    allowed = origin if origin in settings.allowed_origins else None
    if request.method == "OPTIONS":
        if not allowed:
            return _json(403, {"error": "origin_not_allowed", "detail": origin}, None)
        response = Response(status=204)
        response.headers.update({
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
            "Access-Control-Max-Age": "3600",
            "Vary": "Origin",
        })  # fmt: skip
        return response
    path = request.path.rstrip("/")
    route = next(
        ((name, methods, m) for pattern, methods, name in ROUTES if (m := pattern.fullmatch(path))),
        None,
    )
    if route is None:
        detail = "use /messages, /conversations/<id>/read, /knowledge or /customers/(export|erase)"
        return _json(404, {"error": "not_found", "detail": detail}, allowed)
    name, methods, match = route
    if request.method not in methods:
        detail = f"use {' or '.join(methods)}"
        return _json(405, {"error": "method_not_allowed", "detail": detail}, allowed)

    token = bearer_token(request.headers.get("Authorization"))
    if not token:
        return _json(401, {"error": "unauthorized", "detail": "missing bearer token"}, allowed)
    try:
        claims = verifier.verify(token)
    except AuthError as exc:
        log.warning("rejected token", reason=str(exc))
        return _json(401, {"error": "unauthorized", "detail": "invalid or expired token"}, allowed)
    except AuthUnavailable as exc:
        log.error("signing keys unavailable", error=str(exc))
        capture(exc)
        return _json(503, {"error": "unavailable", "detail": "try again shortly"}, allowed)

    if name == "read":
        return _answer(lambda: mark_read(get_services(), claims, UUID(match[1])), allowed)
    if name == "knowledge_item":
        return _answer(
            lambda: knowledge.delete_source(get_services(), claims, UUID(match[1])), allowed
        )
    if name == "knowledge" and request.method == "GET":
        return _answer(lambda: knowledge.list_sources(get_services(), claims), allowed)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _json(413, {"error": "too_large", "detail": "request body too large"}, allowed)
    if name == "knowledge":
        upload = _body(request, knowledge.KnowledgeUpload)
        if isinstance(upload, tuple):
            return _json(upload[0], upload[1], allowed)
        return _answer(lambda: knowledge.upload(get_services(), claims, upload), allowed)
    if name == "customers":
        customer = _body(request, data_rights.CustomerRequest)
        if isinstance(customer, tuple):
            return _json(customer[0], customer[1], allowed)
        act = data_rights.export_customer if match[1] == "export" else data_rights.erase_customer
        return _answer(lambda: act(get_services(), claims, customer), allowed)
    message = _body(request, SendRequest)
    if isinstance(message, tuple):
        return _json(message[0], message[1], allowed)
    key = (request.headers.get("Idempotency-Key") or "").strip()[:255] or None
    return _answer(lambda: send_advisor_message(get_services(), claims, message, key), allowed)


def _body(request: Request, model: type[Model]) -> Model | tuple[int, dict[str, Any]]:
    """The JSON body validated by `model`, or the error answer (status, body)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # JSON nested deeper than Python parses
        return 400, {"error": "invalid_json", "detail": "JSON nested too deeply"}
    try:
        return model.model_validate(body or {})
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return 422, {"error": "invalid_body", "detail": detail}


def _answer(handle: Callable[[], Answer], allowed: str | None) -> Response:
    """Run the request's logic; database trouble becomes a clear answer, never a bare 500."""
    try:
        answer = handle()
    except DatabaseUnavailable as exc:
        capture(exc)
        return _json(503, {"error": "unavailable", "detail": "try again shortly"}, allowed)
    except psycopg.Error as exc:
        status, code = refusal(exc)
        log.warning("database refused the send", sqlstate=exc.sqlstate, error=str(exc)[:200])
        if status == 503:
            capture(exc)
        detail = "try again shortly" if status == 503 else "the database refused this request"
        return _json(status, {"error": code, "detail": detail}, allowed)
    return _json(answer.status, answer.body, allowed)
