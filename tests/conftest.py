"""Shared fixtures: one real Postgres and one real Redis (behind the Upstash bridge) per session."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import functions_framework
import jwt
import psycopg
import pytest
import requests
import responses
from psycopg.rows import dict_row
from twilio.request_validator import RequestValidator

import shared.services
from devstack import postgres, redis_server
from devstack.fake_openai import FakeOpenAI
from devstack.local_server import LocalServer, Request, Response
from devstack.migrations import prepare_database
from devstack.twilio_emulator import message_page, message_resource, twilio_error
from devstack.upstash_bridge import UpstashBridge
from shared.config import get_settings
from shared.services import Services

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SOURCE = ROOT / "functions" / "webhook" / "main.py"
SEND_SOURCE = ROOT / "functions" / "send" / "main.py"

APP_ROLE = "assistant_fn_test"
UPSTASH_TOKEN = "dev-upstash-token"


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres.server() as admin_url:
        yield admin_url


@pytest.fixture(scope="session")
def template_database_url(pg_admin_url: str) -> Iterator[str]:
    """The Supabase bootstrap and every migration (applied as the non-superuser `postgres`),
    once; test databases are copies of this one (superuser URL, for copying)."""
    with postgres.fresh_database(pg_admin_url, prefix="template") as url:
        prepare_database(url)
        yield url


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str, template_database_url: str) -> Iterator[str]:
    """The session's shared database, as its owner `postgres`. Tests in it only look at rows
    they made."""
    with postgres.fresh_database(pg_admin_url, "test", template_database_url) as url:
        yield postgres.owner_url(url)


@pytest.fixture(scope="session")
def app_role(pg_admin_url: str, template_database_url: str) -> str:
    """What the functions log in as: a role that only has assistant_functions' privileges."""
    postgres.ensure_login_role(pg_admin_url, APP_ROLE, "assistant_functions", "dev-password")
    return APP_ROLE


@pytest.fixture(scope="session")
def app_database_url(app_role: str, database_url: str) -> str:
    return postgres.with_params(database_url, user=app_role, password="dev-password")


@dataclass(frozen=True)
class DatabaseUrls:
    owner_url: str
    app_url: str


@contextmanager
def _own_database(pg_admin_url: str, template_url: str, app_role: str) -> Iterator[DatabaseUrls]:
    with postgres.fresh_database(pg_admin_url, "own", template_url) as url:
        app_url = postgres.with_params(url, user=app_role, password="dev-password")
        yield DatabaseUrls(postgres.owner_url(url), app_url)


@pytest.fixture
def database(
    request: pytest.FixtureRequest,
    pg_admin_url: str,
    template_database_url: str,
    app_role: str,
    database_url: str,
    app_database_url: str,
) -> Iterator[DatabaseUrls]:
    """The database a test works in: the session's shared one, or with the `own_database`
    marker a fresh copy of its own, as tests that run the cleanup sweeps need (a sweep acts on
    every row of a database)."""
    if request.node.get_closest_marker("own_database"):
        with _own_database(pg_admin_url, template_database_url, app_role) as own:
            yield own
    else:
        yield DatabaseUrls(database_url, app_database_url)


@pytest.fixture
def isolated_database(
    pg_admin_url: str, template_database_url: str, app_role: str
) -> Iterator[DatabaseUrls]:
    """A database of the test's own, for code that acts on every row of it."""
    with _own_database(pg_admin_url, template_database_url, app_role) as own:
        yield own


@pytest.fixture
def db(database: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A connection as the migration owner `postgres` (not a superuser, bypasses RLS, may act
    as the API roles) in autocommit, for arranging and checking data."""
    with psycopg.connect(database.owner_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_pool() -> Iterator[Any]:
    with redis_server.server() as pool:
        yield pool


@pytest.fixture(scope="session")
def upstash_bridge(redis_pool: Any) -> Iterator[UpstashBridge]:
    bridge = UpstashBridge(redis_pool, UPSTASH_TOKEN).start()
    yield bridge
    bridge.stop()


@contextmanager
def as_user(
    conn: psycopg.Connection[Any], user_id: uuid.UUID | str | None, role: str = "authenticated"
) -> Iterator[psycopg.Connection[Any]]:
    """Run inside a transaction as Supabase's API would: role switched, JWT claims set."""
    claims = {"role": role} if user_id is None else {"sub": str(user_id), "role": role}
    with conn.transaction(force_rollback=True):
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute(psycopg.sql.SQL("set local role {}").format(psycopg.sql.Identifier(role)))
        yield conn


# -- function-level fixtures ------------------------------------------------------------------

ACCOUNT_SID = "AC" + "0" * 30 + "01"
AUTH_TOKEN = "dev-twilio-auth-token"
PUBLIC_URL = "https://webhook.example.test"
JWT_SECRET = "dev-jwt-secret-at-least-32-characters-long"
DASHBOARD_ORIGIN = "https://dashboard.example.test"
CLEANUP_TOKEN = "dev-cleanup-token"
SUPABASE_URL = "https://project-ref.supabase.example.test"
TWILIO_MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
TWILIO_TYPING_URL = "https://messaging.twilio.com/v2/Indicators/Typing.json"


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(model="gpt-4o-mini-2024-07-18").start()
    yield server
    server.stop()


class Jwks:
    """A test RSA key pair whose public half is served as the project's JWKS."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from jwt.algorithms import RSAAlgorithm

        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        self.kid = "test-key-1"
        keys = {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}
        self.fetches = 0

        def serve(request: Request) -> Response:
            self.fetches += 1
            return Response(200, keys)

        self.server = LocalServer(serve).start()
        self.url = self.server.url


@pytest.fixture(scope="session")
def jwks() -> Iterator[Jwks]:
    keys = Jwks()
    yield keys
    keys.server.stop()


def mint_token(
    user_id: Any,
    *,
    secret: str = JWT_SECRET,
    expires_in: int = 3600,
    audience: str = "authenticated",
    rsa: Jwks | None = None,
) -> str:
    """A Supabase-style access token, signed like Supabase Auth signs them."""
    now = int(time.time())
    claims = {
        "sub": str(user_id), "aud": audience, "role": "authenticated", "iat": now,
        "exp": now + expires_in, "email": f"{user_id}@test.local", "aal": "aal1",
        "session_id": str(uuid.uuid4()), "is_anonymous": False,
    }  # fmt: skip
    if rsa is not None:
        return jwt.encode(claims, rsa.private_key, algorithm="RS256", headers={"kid": rsa.kid})
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def openai_stub(fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    for recorded in (fake_openai.requests, fake_openai.transcriptions, fake_openai.speeches):
        recorded.clear()
    fake_openai._script.clear()
    fake_openai._audio_script.clear()
    yield fake_openai
    for hold in fake_openai.holds:  # nothing stays blocked after the test
        hold.set()
    fake_openai.holds.clear()
    fake_openai._script.clear()  # nor scripted for the next one


class TwilioApi:
    """Twilio's REST API at the HTTP level (responses): records sends, can fail them."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.sent: list[dict[str, list[str]]] = []
        self.resources: list[dict[str, Any]] = []
        self._failures: list[tuple[str, int, int | None]] = []
        self._time_outs: list[str] = []
        self.typing: list[str] = []
        # Set to hold every typing-indicator call until the test releases it.
        self.typing_hold: threading.Event | None = None
        self._lock = threading.Lock()
        mock.add_callback(responses.POST, TWILIO_MESSAGES_URL, callback=self._create)
        mock.add_callback(responses.GET, TWILIO_MESSAGES_URL, callback=self._list)
        mock.add_callback(responses.POST, TWILIO_TYPING_URL, callback=self._typing)

    def _typing(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        if self.typing_hold is not None:
            self.typing_hold.wait(30)
        with self._lock:
            self.typing.append(form["messageId"][0])
        return 200, {}, json.dumps({"success": True})

    def fail_next(self, to: str, status: int, code: int | None) -> None:
        """The next send to `to` (E.164) gets this error (code None: a gateway's page instead
        of Twilio's error body); sends to anyone else are unaffected."""
        with self._lock:
            self._failures.append((f"whatsapp:{to}", status, code))

    def time_out_next(self, to: str) -> None:
        """The next send to `to` is accepted by Twilio, but its answer never reaches us (our
        client's read timeout)."""
        with self._lock:
            self._time_outs.append(f"whatsapp:{to}")

    def _create(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        with self._lock:
            if form["To"][0] in self._time_outs:
                self._time_outs.remove(form["To"][0])
                self.sent.append(form)
                self.resources.append(message_resource(ACCOUNT_SID, form))
                raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")
            failure = next((f for f in self._failures if f[0] == form["To"][0]), None)
            if failure:
                self._failures.remove(failure)
                _, status, code = failure
                if code is None:
                    return status, {"Content-Type": "text/html"}, "<html>Bad Gateway</html>"
                return status, {}, json.dumps(twilio_error(status, code, "Twilio error"))
            self.sent.append(form)
            resource = message_resource(ACCOUNT_SID, form)
            self.resources.append(resource)
        return 201, {}, json.dumps(resource)

    def _list(self, request: Any) -> tuple[int, dict[str, str], str]:
        """Twilio's Messages list (newest first), filtered by To and From as Twilio does."""
        query = parse_qs(urlparse(request.url).query)
        with self._lock:
            found = [
                r for r in reversed(self.resources)
                if all(r[key.lower()] == query[key][0] for key in ("To", "From") if key in query)
            ]  # fmt: skip
        return 200, {}, json.dumps(message_page(ACCOUNT_SID, found))

    def bodies(self, to: str | None = None) -> list[str]:
        return [m["Body"][0] for m in self.sent if to is None or m["To"][0] == f"whatsapp:{to}"]


@pytest.fixture
def twilio_api() -> Iterator[TwilioApi]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield TwilioApi(mock)


@pytest.fixture
def settings_env(
    monkeypatch: pytest.MonkeyPatch,
    database: DatabaseUrls,
    upstash_bridge: UpstashBridge,
    fake_openai: FakeOpenAI,
    jwks: Any,
) -> dict[str, str]:
    """The environment a deployed function would get, pointing at the local services."""
    env = {
        "DATABASE_URL": database.app_url,
        "UPSTASH_REDIS_REST_URL": upstash_bridge.url,
        "UPSTASH_REDIS_REST_TOKEN": UPSTASH_TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "WEBHOOK_PUBLIC_URL": PUBLIC_URL,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_MODEL": "gpt-4o-mini",
        "BURST_WAIT_SECONDS": "0",
        "ROUTING_CACHE_SECONDS": "15",
        "OPENAI_MAX_RETRIES": "0",
        "SENTRY_DSN": "",
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "SUPABASE_JWKS_URL": jwks.url + "/auth/v1/.well-known/jwks.json",
        "DASHBOARD_ORIGINS": DASHBOARD_ORIGIN,
        "CLEANUP_TOKEN": CLEANUP_TOKEN,
        "SUPABASE_URL": SUPABASE_URL,
        "SUPABASE_SERVICE_ROLE_KEY": jwt.encode(
            {"role": "service_role", "iss": "supabase"}, JWT_SECRET
        ),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return env


@pytest.fixture
def make_services(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Build the per-instance services from the environment (plus overrides) and install them."""
    built: list[Services] = []

    def make(**overrides: str) -> Services:
        for key, value in overrides.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        services = Services.from_settings(get_settings())
        monkeypatch.setattr(shared.services, "_services", services)
        built.append(services)
        return services

    yield make
    for services in built:
        services.close()
    get_settings.cache_clear()


def sign(url: str, params: dict[str, str]) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, params)


class WebhookClient:
    """Posts to the webhook function served by functions-framework, signed like Twilio."""

    def __init__(self) -> None:
        app = functions_framework.create_app(target="webhook", source=str(WEBHOOK_SOURCE))
        self.client = app.test_client()

    def post(self, params: dict[str, str], path: str = "/", signature: str | None = None) -> Any:
        if signature is None:
            signature = sign(PUBLIC_URL + (path if path != "/" else ""), params)
        return self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    def inbound(self, customer: str, advisor_number: str, body: str = "Hola", **extra: str) -> Any:
        params = inbound_form(customer, advisor_number, body, **extra)
        return self.post(params)

    def status(self, message_sid: str, status: str, **extra: str) -> Any:
        params = {
            "MessageSid": message_sid,
            "MessageStatus": status,
            "AccountSid": ACCOUNT_SID,
            **extra,
        }
        return self.post(params, "/status")


def inbound_form(
    customer: str, advisor_number: str, body: str = "Hola", **extra: str
) -> dict[str, str]:
    """The form Twilio posts for an inbound WhatsApp text (fields from Twilio's docs)."""
    message_sid = extra.pop("MessageSid", None) or "SM" + uuid.uuid4().hex
    return {
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "ProfileName": "Cliente Prueba",
        "MessageType": "text",
        "SmsSid": message_sid,
        "WaId": customer.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": f"whatsapp:{advisor_number}",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": message_sid,
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{customer}",
        "ApiVersion": "2010-04-01",
        **extra,
    }


@pytest.fixture
def webhook(make_services: Any) -> WebhookClient:
    return WebhookClient()


@pytest.fixture
def rate_clock(monkeypatch: pytest.MonkeyPatch) -> int:
    """Freeze upstash-ratelimit's clock in the middle of a 60 s window: its sliding window
    weighs the previous window's count by the time elapsed, so a real clock makes the exact
    count a test sees depend on when it runs."""
    import upstash_ratelimit.limiter

    frozen_ms = int(time.time() // 60 * 60_000 + 30_000)
    monkeypatch.setattr(upstash_ratelimit.limiter, "now_ms", lambda: frozen_ms)
    return frozen_ms


def eventually(condition: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy and return it; fail after a generous deadline.
    For waiting on another thread or process, never for ordering events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


CLEANUP_SOURCE = ROOT / "functions" / "cleanup" / "main.py"
CLEANUP_AUTH = {"Authorization": f"Bearer {CLEANUP_TOKEN}"}


class CleanupClient:
    """Posts to the cleanup function served by functions-framework, with its token."""

    def __init__(self) -> None:
        app = functions_framework.create_app(target="cleanup", source=str(CLEANUP_SOURCE))
        self.client = app.test_client()

    def run(self, dry_run: bool = False) -> dict[str, Any]:
        response = self.client.post("/" + ("?dry_run=1" if dry_run else ""), headers=CLEANUP_AUTH)
        assert response.status_code == 200, response.get_json()
        result: dict[str, Any] = response.get_json()
        return result


@pytest.fixture
def cleanup(make_services: Any) -> CleanupClient:
    make_services()
    return CleanupClient()


def backdate(
    db: psycopg.Connection[Any], table: str, where: str, params: tuple[Any, ...], **columns: str
) -> None:
    """Move timestamps into the past without the updated_at trigger undoing it."""
    sets = ", ".join(f"{column} = now() - interval '{age}'" for column, age in columns.items())
    with db.transaction():
        db.execute(f"alter table {table} disable trigger user")
        db.execute(f"update {table} set {sets} where {where}", params)
        db.execute(f"alter table {table} enable trigger user")


class SendClient:
    """Posts to the send function served by functions-framework."""

    def __init__(self) -> None:
        self.client = functions_framework.create_app(
            target="send", source=str(SEND_SOURCE)
        ).test_client()

    def post(self, payload: Any, token: str | None = None, **headers: str) -> Any:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post("/messages", json=payload, headers=headers)


@pytest.fixture
def send(make_services: Any) -> SendClient:
    make_services()
    return SendClient()
