"""The three entry points called directly inside Flask's `test_request_context`, as Cloud
Functions samples test them: every answer that needs no service, in milliseconds."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from types import ModuleType
from typing import Any

import flask
import pytest

import shared.services
from shared.config import get_settings
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CLEANUP_TOKEN,
    DASHBOARD_ORIGIN,
    JWT_SECRET,
    PUBLIC_URL,
    ROOT,
    inbound_form,
    mint_token,
    sign,
)

ENV = {
    # Nothing here is ever reached: each request below is answered before any service is used.
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "WEBHOOK_PUBLIC_URL": PUBLIC_URL,
    "OPENAI_API_KEY": "sk-test",
    "SUPABASE_JWT_SECRET": JWT_SECRET,
    "DASHBOARD_ORIGINS": DASHBOARD_ORIGIN,
    "CLEANUP_TOKEN": CLEANUP_TOKEN,
    "SENTRY_DSN": "",
}


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in ("SUPABASE_URL", "SUPABASE_JWKS_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    monkeypatch.setattr(shared.services, "_services", None)  # whatever these build stays here
    switch_interval = sys.getswitchinterval()  # a cold start sets it for the whole process

    def load(name: str) -> ModuleType:
        path = ROOT / "functions" / name / "main.py"
        spec = importlib.util.spec_from_file_location(f"entry_{name}_{uuid.uuid4().hex}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    get_settings.cache_clear()
    sys.setswitchinterval(switch_interval)


def call(entry: Any, method: str = "POST", path: str = "/", **kwargs: Any) -> flask.Response:
    with flask.Flask(__name__).test_request_context(path, method=method, **kwargs):
        return flask.make_response(entry(flask.request))


def test_webhook_answers_without_services(load: Any) -> None:
    webhook = load("webhook").webhook
    assert call(webhook, "GET", "/health").get_json() == {"status": "ok", "function": "webhook"}
    assert call(webhook, "POST", "/elsewhere").status_code == 404
    assert call(webhook, "GET", "/").status_code == 405
    form = inbound_form("+573001112233", "+14155238886")
    assert call(webhook, data=form).status_code == 403  # no signature
    wrong = {"X-Twilio-Signature": sign(PUBLIC_URL + "/other", form)}
    assert call(webhook, data=form, headers=wrong).status_code == 403
    bad = {**form, "From": "whatsapp:12"}
    response = call(webhook, data=bad, headers={"X-Twilio-Signature": sign(PUBLIC_URL, bad)})
    assert response.status_code == 400 and "From" in response.get_data(as_text=True)


def test_webhook_refuses_to_start_without_its_secrets(
    load: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    get_settings.cache_clear()
    with pytest.raises(Exception, match="OPENAI_API_KEY"):
        load("webhook")


def test_cold_start_sets_the_gil_switch_interval(
    load: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIL_SWITCH_INTERVAL_MS", "2.5")
    load("webhook")
    assert sys.getswitchinterval() == pytest.approx(0.0025)
    monkeypatch.delenv("GIL_SWITCH_INTERVAL_MS")
    get_settings.cache_clear()
    load("send")
    assert sys.getswitchinterval() == pytest.approx(0.001)  # the default


def test_send_answers_without_services(load: Any) -> None:
    send = load("send").send
    origin = {"Origin": DASHBOARD_ORIGIN}
    preflight = call(send, "OPTIONS", "/messages", headers=origin)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN
    assert (
        call(send, "OPTIONS", "/messages", headers={"Origin": "https://evil.test"}).status_code
        == 403
    )
    assert call(send, "POST", "/other").status_code == 404
    assert call(send, "GET", "/messages").status_code == 405
    assert call(send, "POST", "/messages", json={}).status_code == 401
    token = {"Authorization": f"Bearer {mint_token(uuid.uuid4())}", **origin}
    invalid = call(send, "POST", "/messages", json={"conversation_id": "x"}, headers=token)
    assert invalid.status_code == 422 and invalid.get_json()["error"] == "invalid_body"
    assert invalid.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN


def test_send_with_unreachable_keys_is_503(
    load: Any, monkeypatch: pytest.MonkeyPatch, jwks: Any
) -> None:
    monkeypatch.setenv("SUPABASE_JWKS_URL", "http://127.0.0.1:9/auth/v1/.well-known/jwks.json")
    get_settings.cache_clear()
    send = load("send").send
    token = mint_token(uuid.uuid4(), rsa=jwks)
    answer = call(send, "POST", "/messages", json={}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 503 and answer.get_json()["error"] == "unavailable"


def test_cleanup_answers_without_services(load: Any) -> None:
    cleanup = load("cleanup").cleanup
    assert call(cleanup, "GET").status_code == 405
    assert call(cleanup).status_code == 401
    assert call(cleanup, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_signatures_over_the_url_with_connection_overrides_are_accepted(load: Any) -> None:
    """Twilio is configured with `<url>#rc=3&rp=all` so it retries 5xx and timeouts; the
    fragment never reaches us, and either form of the signed URL is accepted."""
    webhook = load("webhook").webhook
    form = inbound_form("+573001112233", "+14155238886", "x", From="whatsapp:12")  # 400 if valid
    for signed_url, expected in [
        (PUBLIC_URL, 400), (PUBLIC_URL + "#rc=3&rp=all", 400), (PUBLIC_URL + "#rc=5", 403),
    ]:  # fmt: skip
        headers = {"X-Twilio-Signature": sign(signed_url, form)}
        assert call(webhook, data=form, headers=headers).status_code == expected, signed_url


def test_send_refuses_deeply_nested_json_with_400(load: Any) -> None:
    send = load("send").send
    token = {
        "Authorization": f"Bearer {mint_token(uuid.uuid4())}",
        "Content-Type": "application/json",
    }
    nested = "[" * 100_000 + "]" * 100_000
    answer = call(send, "POST", "/messages", data=nested, headers=token)
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_json"
