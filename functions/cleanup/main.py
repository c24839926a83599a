"""Cleanup function: Cloud Scheduler posts here (every 15 minutes by default) to run the
recovery sweeps, handoff expiry and retention. `?dry_run=1` reports without changing anything.

Private in production (IAM, Scheduler's OIDC token); with CLEANUP_TOKEN set the code also
requires the token: `Authorization: Bearer <CLEANUP_TOKEN>`, or `X-Cleanup-Token` when the
Authorization header already carries Scheduler's OIDC token. Entry point: `cleanup`.
"""

from __future__ import annotations

import hmac

import functions_framework
from flask import Request, Response, jsonify

from shared.auth import bearer_token
from shared.cleanup import run_cleanup
from shared.observability import set_trace, start_function
from shared.services import get_services

REQUIRED_SETTINGS = (
    "database_url",
    "twilio_account_sid",
    "twilio_auth_token",
    "webhook_public_url",
)

settings = start_function(REQUIRED_SETTINGS)


@functions_framework.http
def cleanup(request: Request) -> Response:
    set_trace(request.headers.get("X-Cloud-Trace-Context"))
    if request.method != "POST":
        response = jsonify(error="method_not_allowed", detail="use POST")
        response.status_code = 405
        return response
    if settings.cleanup_token:
        expected = settings.secret(settings.cleanup_token).encode()
        offered = [
            bearer_token(request.headers.get("Authorization")) or "",
            request.headers.get("X-Cleanup-Token", ""),
        ]
        if not any(hmac.compare_digest(token.encode(), expected) for token in offered):
            response = jsonify(error="unauthorized", detail="missing or wrong cleanup token")
            response.status_code = 401
            return response
    dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
    report, all_failed = run_cleanup(get_services(), dry_run=dry_run)
    response = jsonify(report)
    response.status_code = 500 if all_failed else 200
    return response
