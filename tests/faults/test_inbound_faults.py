"""The inbound path under faults, injected at the exact step between two side effects, with
Twilio's redeliveries: what the customer sees (stored rows per sid, replies per turn, what each
reply saw) and what Twilio is answered.

The webhook is served over HTTP by functions-framework's app (in this process, so a fault can
be placed at one step); a crash, which runs nothing after it, is a BaseException raised at that
step in a direct call, followed by Twilio's redelivery over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import functions_framework
import psycopg
import pytest
import requests
from werkzeug.serving import make_server

import shared.services
from devstack.fake_openai import FakeOpenAI
from shared.db import DatabaseUnavailable
from shared.inbound import handle_inbound
from shared.services import Deadline, Services
from shared.twilio_payloads import InboundMessage
from tests import factories as f
from tests.conftest import (
    PUBLIC_URL,
    WEBHOOK_SOURCE,
    CleanupClient,
    TwilioApi,
    backdate,
    eventually,
    inbound_form,
    sign,
)
from tests.functions.test_media import PDF, FakeStorage, media_fields, storage, twilio_media

__all__ = ["storage"]  # the Storage stand-in fixture, shared with the media tests


class SimulatedCrash(BaseException):
    """The instance died here: no except block, no finally that matters, runs after it."""


class Served:
    def __init__(self, url: str, services: Services) -> None:
        self.url, self.services = url, services

    def post(self, form: dict[str, str]) -> requests.Response:
        headers = {"X-Twilio-Signature": sign(PUBLIC_URL, form)}
        return requests.post(self.url + "/", data=form, headers=headers, timeout=30)


@pytest.fixture
def served(make_services: Any) -> Iterator[Served]:
    services = make_services()
    app = functions_framework.create_app(target="webhook", source=str(WEBHOOK_SOURCE))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(f"http://127.0.0.1:{server.server_port}", services)
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.fixture
def advisor(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return f.advisor(db, f.tenant(db), name="Ana López", settings={"language": "es"})


def stored(db: psycopg.Connection[Any], sid: str) -> int:
    row = db.execute("select count(*) as n from messages where provider_sid = %s", (sid,))
    return int(row.fetchone()["n"])  # type: ignore[index]


def fail_once(
    monkeypatch: pytest.MonkeyPatch, services: Services, sql_function: str, times: int = 1
) -> None:
    """The next call (or `times` calls) of one SQL function finds Postgres unreachable."""
    value, failed = services.db.value, list[str]()

    def flaky(query: str, params: Any = ()) -> Any:
        if sql_function in query and len(failed) < times:
            failed.append(query)
            raise DatabaseUnavailable("connection refused (injected)")
        return value(query, params)

    monkeypatch.setattr(services.db, "value", flaky)


def test_postgres_down_after_the_redis_step_then_redelivery(
    served: Served, advisor: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fail_once(monkeypatch, served.services, "receive_inbound")
    customer = f.phone("+57380")
    form = inbound_form(customer, advisor["twilio_phone_number"], "hola, ¿precio?")
    assert served.post(form).status_code == 503  # not stored: Twilio retries (#rc=…)
    assert stored(db, form["MessageSid"]) == 0
    assert served.post(form).status_code == 200  # the redelivery is stored and answered
    assert served.post(form).status_code == 200  # and a late duplicate changes nothing
    assert stored(db, form["MessageSid"]) == 1
    assert len(twilio_api.bodies(customer)) == 1


def test_turn_lost_at_its_release_lapses_and_the_sweep_answers_what_waited(
    served: Served, advisor: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Postgres fails as the holder lets go, and again as it retries: the reply is out, the turn
    stays held until it lapses, a message meanwhile finds it busy, and the sweep answers that
    message once."""
    fail_once(monkeypatch, served.services, "finish_turn", times=2)
    customer, number = f.phone("+57383"), advisor["twilio_phone_number"]
    assert served.post(inbound_form(customer, number, "¿Tienen envíos a Cali?")).status_code == 200
    assert len(twilio_api.bodies(customer)) == 1
    second = inbound_form(customer, number, "¿Y a Medellín?")
    assert served.post(second).status_code == 200
    assert len(twilio_api.bodies(customer)) == 1  # the turn is still held: left to the holder
    db.execute(
        "update private.turn_holders set held_until = now() - interval '1 second'"
        " where conversation_id = (select conversation_id from messages where provider_sid = %s)",
        (second["MessageSid"],),
    )
    # Five minutes later, for the sweep (what came before, earlier still).
    conversation = (
        "conversation_id = (select conversation_id from messages where provider_sid = %s)"
    )
    earlier = f"{conversation} and provider_sid is distinct from %s"
    backdate(db, "messages", earlier, (second["MessageSid"],) * 2, created_at="10 minutes")
    backdate(db, "messages", "provider_sid = %s", (second["MessageSid"],), created_at="5 minutes")
    CleanupClient().run()
    CleanupClient().run()
    assert len(twilio_api.bodies(customer)) == 2


@pytest.mark.own_database
def test_database_error_at_the_reply_commit_is_200_and_answered_once_later(
    served: Served, advisor: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fail_once(monkeypatch, served.services, "commit_reply")
    customer = f.phone("+57382")
    form = inbound_form(customer, advisor["twilio_phone_number"], "hola")
    assert served.post(form).status_code == 200  # stored: never a 5xx after this
    assert twilio_api.bodies(customer) == []  # nothing committed, nothing sent
    assert served.post(form).status_code == 200  # Twilio's redelivery is a duplicate
    backdate(db, "messages", "provider_sid = %s", (form["MessageSid"],), created_at="5 minutes")
    CleanupClient().run()
    CleanupClient().run()
    assert len(twilio_api.bodies(customer)) == 1


@pytest.mark.own_database
@pytest.mark.parametrize("twilio_got_it", [False, True])
def test_crash_between_commit_and_send_is_resolved_without_a_blind_resend(
    served: Served, advisor: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi,
    monkeypatch: pytest.MonkeyPatch, twilio_got_it: bool,
) -> None:  # fmt: skip
    services = served.services
    send = services.whatsapp.send

    def crash(*args: Any, **kwargs: Any) -> Any:
        if twilio_got_it:
            send(*args, **kwargs)  # Twilio accepted it; its answer never reached us
        raise SimulatedCrash

    customer = f.phone("+57383")
    form = inbound_form(customer, advisor["twilio_phone_number"], "hola")
    with monkeypatch.context() as m:
        m.setattr(services.whatsapp, "send", crash)
        with pytest.raises(SimulatedCrash):
            handle_inbound(services, InboundMessage.from_form(form), Deadline(13))
    assert served.post(form).status_code == 200  # Twilio redelivers: already stored
    row = db.execute(
        "select id, status, provider_sid from messages where direction = 'outbound'"
        " and conversation_id = (select conversation_id from messages where provider_sid = %s)",
        (form["MessageSid"],),
    ).fetchone()
    assert row and (row["status"], row["provider_sid"]) == ("queued", None)  # committed
    backdate(db, "messages", "id = %s", (row["id"],), updated_at="5 minutes")
    report = CleanupClient().run()
    assert len(twilio_api.bodies(customer)) == 1  # sent exactly once either way
    after = db.execute("select provider_sid from messages where id = %s", (row["id"],)).fetchone()
    assert after and after["provider_sid"] == twilio_api.resources[-1]["sid"]
    found, sent = report["recovery"]["already_sent"], report["recovery"]["resent"]
    assert (found, sent) == ((1, 0) if twilio_got_it else (0, 1))


def test_messages_during_an_answer_get_one_reply_from_the_holder(
    served: Served, advisor: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:  # fmt: skip
    release = openai_stub.reply_when("¡Hola! Soy el asistente de Ana.")
    openai_stub.reply_with("El plan empresarial cuesta 50 mil pesos.")
    customer, number = f.phone("+57384"), advisor["twilio_phone_number"]
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(served.post, inbound_form(customer, number, "Hola"))
        eventually(lambda: len(openai_stub.requests) == 1, what="the model thinking")
        # While the model thinks: both are stored and answered 200 at once, without waiting.
        assert served.post(inbound_form(customer, number, "quiero el precio")).status_code == 200
        assert (
            served.post(inbound_form(customer, number, "del plan empresarial")).status_code == 200
        )
        assert not first.done() and twilio_api.sent == []
        release.set()
        assert first.result(timeout=30).status_code == 200
    # The reply to "Hola" alone was not committed: newer messages had arrived. The holder
    # answered the whole turn once.
    assert twilio_api.bodies(customer) == ["El plan empresarial cuesta 50 mil pesos."]
    assert openai_stub.user_turns(0) == ["Hola"]
    assert openai_stub.user_turns(1) == ["Hola", "quiero el precio", "del plan empresarial"]
    unhandled = db.execute(
        "select count(*) as n from messages where advisor_id = %s and direction = 'inbound'"
        " and handled_at is null",
        (advisor["id"],),
    ).fetchone()
    assert unhandled == {"n": 0}  # nothing left for the sweep


def test_the_ai_does_not_talk_over_an_advisor_who_took_over(
    served: Served, advisor: dict[str, Any], db: psycopg.Connection[Any], twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:  # fmt: skip
    release = openai_stub.reply_when("Respuesta de la IA")
    customer = f.phone("+57385")
    form = inbound_form(customer, advisor["twilio_phone_number"], "quiero hablar con Ana")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(served.post, form)
        eventually(lambda: len(openai_stub.requests) == 1, what="the model thinking")
        conversation = db.execute(
            "select conversation_id from messages where provider_sid = %s", (form["MessageSid"],)
        ).fetchone()
        assert conversation
        # The advisor writes from the dashboard (which pauses the AI) while the model thinks.
        db.execute(
            "select queue_advisor_message(%s, %s, 'Hola, soy Ana', '[]'::jsonb, 24, null)",
            (str(f.user(db)), conversation["conversation_id"]),
        )
        release.set()
        assert answer.result(timeout=30).status_code == 200
    assert twilio_api.bodies(customer) == []  # the AI's reply was withheld, not sent
    ai_rows = db.execute(
        "select count(*) as n from messages where conversation_id = %s and author = 'ai'",
        (conversation["conversation_id"],),
    ).fetchone()
    assert ai_rows == {"n": 0}


def test_a_model_slower_than_the_budget_gets_one_attempt_and_the_fallback(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi, openai_stub: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("OPENAI_MAX_RETRIES")  # the deployed default, not the suite's
    services = make_services(REQUEST_BUDGET_SECONDS="5", CONVERSATION_LOCK_SECONDS="10",
                             OPENAI_TIMEOUT_SECONDS="30")  # fmt: skip
    release = openai_stub.reply_when("demasiado tarde")
    customer = f.phone("+57386")
    form = inbound_form(customer, advisor["twilio_phone_number"], "hola")
    outcome = handle_inbound(services, InboundMessage.from_form(form), Deadline(5))
    release.set()
    assert outcome.action == "fallback"
    assert len(openai_stub.requests) == 1  # no hidden retry with a fresh timeout
    bodies = twilio_api.bodies(customer)
    assert len(bodies) == 1 and "Ana López" in bodies[0]
    run = db.execute("select outcome from ai_runs where advisor_id = %s", (advisor["id"],))
    assert run.fetchone() == {"outcome": "timeout"}


def test_ten_slow_media_leave_time_for_the_reply(
    make_services: Any, advisor: dict[str, Any], db: psycopg.Connection[Any],
    twilio_api: TwilioApi, openai_stub: FakeOpenAI, storage: FakeStorage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    services = make_services()
    # The request's clock: each download costs the 5 s Twilio's CDN makes it wait.
    now = [1000.0]
    monkeypatch.setattr(shared.services, "time", SimpleNamespace(monotonic=lambda: now[0]))
    download = services.whatsapp.download_media

    def slow_download(url: str, max_bytes: int, timeout: float) -> tuple[bytes, str]:
        assert timeout <= 5.0
        now[0] += timeout
        return download(url, max_bytes, timeout)

    monkeypatch.setattr(services.whatsapp, "download_media", slow_download)
    urls = [twilio_media(twilio_api, PDF, "application/pdf") for _ in range(10)]
    customer = f.phone("+57387")
    form = inbound_form(customer, advisor["twilio_phone_number"], "te mando los documentos",
                        **media_fields(*[(u, "application/pdf") for u in urls]))  # fmt: skip
    deadline = Deadline(13)
    outcome = handle_inbound(services, InboundMessage.from_form(form), deadline)
    assert outcome.action == "replied"
    assert len(twilio_api.bodies(customer)) == 1  # answered within this request
    row = db.execute(
        "select media from messages where provider_sid = %s", (form["MessageSid"],)
    ).fetchone()
    assert row
    statuses = [item["status"] for item in row["media"]]
    assert statuses[:2] == ["stored", "stored"]  # what fitted before the reserve
    assert set(statuses[2:]) == {"failed"}  # the rest: for the sweep, after the reply
    assert all("deferred" in item["error"] for item in row["media"][2:])
