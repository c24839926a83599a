"""The webhook function, in process (functions-framework's Flask app), on the real Postgres and
Redis; Twilio REST through `responses`, OpenAI through a local HTTP stand-in."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from devstack.fake_openai import FakeOpenAI
from shared.texts import GLOBAL_INSTRUCTIONS
from tests import factories as f
from tests.conftest import (
    PUBLIC_URL,
    TwilioApi,
    WebhookClient,
    eventually,
    inbound_form,
    sign,
)

pytestmark = pytest.mark.usefixtures("twilio_api")


@pytest.fixture
def advisor(db: psycopg.Connection[Any]) -> dict[str, Any]:
    tenant = f.tenant(db)
    return f.advisor(
        db,
        tenant,
        name="María González",
        personal_phone=f.phone("+57301"),
        settings={"language": "es", "prompt": "Eres el asistente de María. Sé breve."},
    )


def messages_of(db: psycopg.Connection[Any], advisor_id: Any) -> list[dict[str, Any]]:
    return db.execute(
        "select direction, author, body, status, error_code, provider_sid from messages"
        " where advisor_id = %s order by created_at",
        (advisor_id,),
    ).fetchall()


def conversation_of(
    db: psycopg.Connection[Any], advisor_id: Any, customer: str | None = None
) -> dict[str, Any]:
    row = db.execute(
        "select * from conversations where advisor_id = %s and customer_phone = coalesce(%s, customer_phone)",
        (advisor_id, customer),
    ).fetchone()
    assert row
    return dict(row)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_parallel(*calls: Any) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_health_touches_nothing(webhook: WebhookClient) -> None:
    response = webhook.client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "function": "webhook"}


def test_wrong_method_and_path(webhook: WebhookClient) -> None:
    assert webhook.client.get("/").status_code == 405
    assert webhook.client.post("/nope").status_code == 404


def test_bad_or_missing_signature_is_403_and_stores_nothing(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:
    params = inbound_form(f.phone("+57320"), advisor["twilio_phone_number"])
    assert webhook.post(params, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    assert webhook.client.post("/", data=params).status_code == 403
    # Signed for another URL (what a proxy would hand us) is refused too.
    assert webhook.post(params, signature=sign("http://internal:8080/", params)).status_code == 403
    assert messages_of(db, advisor["id"]) == []
    assert twilio_api.sent == []


def test_malformed_form_is_400_with_reason(webhook: WebhookClient, advisor: dict[str, Any]) -> None:
    params = inbound_form(f.phone("+57321"), advisor["twilio_phone_number"])
    del params["MessageSid"]
    response = webhook.post(params)
    assert response.status_code == 400
    assert "MessageSid" in response.get_data(as_text=True)
    bad_from = inbound_form("not-a-phone", advisor["twilio_phone_number"])
    response = webhook.post(bad_from)
    assert response.status_code == 400 and "From" in response.get_data(as_text=True)


def test_message_gets_an_ai_reply_from_the_advisors_number(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:
    customer = f.phone("+57322")
    openai_stub.reply_with("¡Hola! ¿En qué te ayudo?")
    response = webhook.inbound(customer, advisor["twilio_phone_number"], "Hola, buenas")
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert "<Response />" in response.get_data(as_text=True)

    assert len(twilio_api.sent) == 1
    sent = twilio_api.sent[0]
    assert sent["From"] == [f"whatsapp:{advisor['twilio_phone_number']}"]
    assert sent["To"] == [f"whatsapp:{customer}"]
    # The callback URL names our row, so a callback can complete it (the signature covers it).
    reply_row = db.execute(
        "select id, conversation_id::text from messages where advisor_id = %s and direction = 'outbound'",
        (advisor["id"],),
    ).fetchone()
    assert reply_row and sent["StatusCallback"] == [
        f"{PUBLIC_URL}/status?message_id={reply_row['id']}#rc=3&rp=all"  # Twilio retries 5xx
    ]
    assert sent["Body"] == ["¡Hola! ¿En qué te ayudo?"]

    request = openai_stub.requests[-1]
    system = request["messages"][0]
    assert system["role"] == "system" and system["content"].startswith(GLOBAL_INSTRUCTIONS)
    assert system["content"].endswith("Eres el asistente de María. Sé breve.")
    assert request["messages"][-1]["role"] == "system"  # this turn's context, last
    assert "Context for this turn" in request["messages"][-1]["content"]
    assert request["prompt_cache_key"] == reply_row["conversation_id"]
    assert request["tools"][0]["function"]["name"] == "handoff_to_human"
    assert request["tools"][0]["function"]["strict"] is True
    assert openai_stub.user_turns() == ["Hola, buenas"]

    stored = messages_of(db, advisor["id"])
    assert [(m["direction"], m["author"], m["status"]) for m in stored] == [
        ("inbound", "customer", "received"),
        ("outbound", "ai", "queued"),
    ]
    assert stored[1]["provider_sid"].startswith("SM")
    run = db.execute(
        "select model, prompt_tokens, completion_tokens, latency_ms, outcome from ai_runs where advisor_id = %s",
        (advisor["id"],),
    ).fetchone()
    assert run and run["outcome"] == "replied" and run["model"] == "gpt-4o-mini-2024-07-18"
    assert run["prompt_tokens"] > 0 and run["completion_tokens"] > 0 and run["latency_ms"] >= 0
    handled = db.execute(
        "select handled_at is not null as handled from messages where advisor_id = %s and direction = 'inbound'",
        (advisor["id"],),
    ).fetchone()
    assert handled == {"handled": True}


def test_hot_path_commits_in_two_round_trips_before_the_send(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    make_services: Any,
    twilio_api: TwilioApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = make_services()
    number = advisor["twilio_phone_number"]
    webhook.inbound(f.phone("+57323"), number, "primero")  # warms the routing cache
    steps: list[str] = []
    value, send = services.db.value, services.whatsapp.send

    def record_query(query: str, params: Any = ()) -> Any:
        steps.append(query.split("public.")[1].split("(")[0])
        return value(query, params)

    def record_send(*args: Any, **kwargs: Any) -> Any:
        steps.append("twilio send")
        return send(*args, **kwargs)

    monkeypatch.setattr(services.db, "value", record_query)
    monkeypatch.setattr(services.whatsapp, "send", record_send)
    before = services.db.round_trips
    assert webhook.inbound(f.phone("+57323"), number, "segundo").status_code == 200
    assert steps == [
        "receive_inbound", "commit_reply",  # stored (and the turn taken), then the reply committed
        "twilio send",
        "record_send_results", "finish_turn",  # Twilio's answer; let go: anything arrived meanwhile?
    ]  # fmt: skip
    assert services.db.round_trips - before == 4
    assert len(twilio_api.sent) == 2


def test_hot_path_is_one_redis_round_trip(
    webhook: WebhookClient, advisor: dict[str, Any], upstash_bridge: Any, twilio_api: TwilioApi
) -> None:
    number = advisor["twilio_phone_number"]
    webhook.inbound(f.phone("+57323"), number, "primero")  # warms the routing cache
    before = upstash_bridge.requests
    webhook.inbound(f.phone("+57323"), number, "segundo")
    # admission (the two rate limits, pipelined); the turn is held in Postgres
    assert upstash_bridge.requests - before == 1
    assert len(twilio_api.sent) == 2


def test_a_message_the_ai_does_not_answer_makes_no_redis_call_and_dedups_in_postgres(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    upstash_bridge: Any,
    twilio_api: TwilioApi,
) -> None:
    customer, number = f.phone("+57323"), advisor["twilio_phone_number"]
    webhook.inbound(customer, number, "primero")  # warms the routing cache
    db.execute(
        "update conversations set ai_attention = false where customer_phone = %s", (customer,)
    )
    before = upstash_bridge.requests
    form = inbound_form(customer, number, "segundo")
    assert webhook.post(form).status_code == 200
    assert upstash_bridge.requests - before == 0  # no rate limits to ask: the AI is paused
    assert len(twilio_api.sent) == 1
    # Twilio redelivers it: Postgres keeps one row.
    assert webhook.post(form).status_code == 200
    rows = db.execute(
        "select count(*) as n from messages where advisor_id = %s and body = 'segundo'",
        (advisor["id"],),
    ).fetchone()
    assert rows == {"n": 1}


def test_same_sid_five_times_concurrently_one_message_one_reply(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:
    params = inbound_form(f.phone("+57324"), advisor["twilio_phone_number"], "hola")
    results = in_parallel(*[lambda: webhook.post(params)] * 5)
    assert [r.status_code for r in results] == [200] * 5
    stored = messages_of(db, advisor["id"])
    assert [m["direction"] for m in stored] == ["inbound", "outbound"]
    assert len(twilio_api.sent) == 1


def test_redis_down_still_one_message_per_sid(
    advisor: dict[str, Any], db: psycopg.Connection[Any], make_services: Any, twilio_api: TwilioApi
) -> None:
    make_services(UPSTASH_REDIS_REST_URL=f"http://127.0.0.1:{free_port()}")
    webhook = WebhookClient()
    params = inbound_form(f.phone("+57325"), advisor["twilio_phone_number"], "hola")
    results = in_parallel(*[lambda: webhook.post(params)] * 3)
    assert [r.status_code for r in results] == [200] * 3
    assert [m["direction"] for m in messages_of(db, advisor["id"])] == ["inbound", "outbound"]
    assert len(twilio_api.sent) == 1


def hold_burst_waits(services: Any) -> tuple[threading.Event, list[float]]:
    """Each request's burst wait is recorded and lasts until the returned event is set."""
    release, waiting = threading.Event(), []

    def hold(seconds: float) -> None:
        waiting.append(seconds)
        assert release.wait(30)

    services.sleep = hold
    return release, waiting


def test_burst_of_three_gets_one_reply_that_saw_all_three(
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    make_services: Any,
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:
    services = make_services(BURST_WAIT_SECONDS="1.0")
    # Each request's burst wait ends only when the test says so: all three are stored first.
    release, waiting = hold_burst_waits(services)
    webhook = WebhookClient()
    customer, number = f.phone("+57326"), advisor["twilio_phone_number"]
    with ThreadPoolExecutor(3) as pool:
        futures = []
        for n, body in enumerate(["hola", "quiero info", "del plan"], start=1):
            futures.append(pool.submit(webhook.inbound, customer, number, body))
            eventually(lambda n=n: len(waiting) == n, what=f"message {n} waiting")
        assert len(messages_of(db, advisor["id"])) == 3 and twilio_api.sent == []
        release.set()
        results = [future.result(timeout=30) for future in futures]
    assert [r.status_code for r in results] == [200] * 3
    assert len(twilio_api.sent) == 1
    assert len(openai_stub.requests) == 1
    assert openai_stub.user_turns() == ["hola", "quiero info", "del plan"]


def test_a_complete_question_is_answered_without_waiting(
    advisor: dict[str, Any],
    make_services: Any,
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:
    services = make_services(BURST_WAIT_SECONDS="1.0")
    waited: list[float] = []
    services.sleep = waited.append
    customer, number = f.phone("+57326"), advisor["twilio_phone_number"]
    assert WebhookClient().inbound(customer, number, "¿Tienen envíos a Cali?").status_code == 200
    assert waited == [] and len(twilio_api.sent) == 1
    # A greeting alone waits for what follows.
    assert WebhookClient().inbound(customer, number, "hola").status_code == 200
    assert waited == [1.0]


@pytest.mark.parametrize("redis", ["up", "down"])
def test_a_complete_message_answers_the_fragment_still_waiting(
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    make_services: Any,
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    redis: str,
) -> None:
    # With Redis down the question's mark is never set: the greeting asks Postgres instead.
    down = {"UPSTASH_REDIS_REST_URL": f"http://127.0.0.1:{free_port()}"} if redis == "down" else {}
    services = make_services(BURST_WAIT_SECONDS="1.0", **down)
    release, waiting = hold_burst_waits(services)
    webhook = WebhookClient()
    customer, number = f.phone("+57326"), advisor["twilio_phone_number"]
    with ThreadPoolExecutor(2) as pool:
        greeting = pool.submit(webhook.inbound, customer, number, "hola")
        eventually(lambda: len(waiting) == 1, what="the greeting waiting")
        # The question does not wait: it is answered, having seen the greeting.
        question = webhook.inbound(customer, number, "¿Cuánto vale el plan básico?")
        assert question.status_code == 200 and len(waiting) == 1
        assert len(twilio_api.sent) == 1
        assert openai_stub.user_turns() == ["hola", "¿Cuánto vale el plan básico?"]
        release.set()
        assert greeting.result(timeout=30).status_code == 200
    assert len(twilio_api.sent) == 1 and len(openai_stub.requests) == 1


def test_two_advisors_never_share_history(
    webhook: WebhookClient, db: psycopg.Connection[Any], openai_stub: FakeOpenAI
) -> None:
    tenant = f.tenant(db)
    first, second = f.advisor(db, tenant, name="A"), f.advisor(db, tenant, name="B")
    customer = f.phone("+57327")
    webhook.inbound(customer, first["twilio_phone_number"], "mi secreto para A")
    webhook.inbound(customer, second["twilio_phone_number"], "pregunta para B")
    assert openai_stub.user_turns(-1) == ["pregunta para B"]
    assert all("mi secreto" not in str(m) for m in openai_stub.requests[-1]["messages"])


def test_handoff_tool_alerts_the_advisor_and_pauses_the_ai(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:
    customer, number = f.phone("+57328"), advisor["twilio_phone_number"]
    # María wrote to her own number today: her 24-hour window is open, free text goes.
    f.ingest(db, advisor["id"], advisor["phone_number"], "hola", permitted=False)
    openai_stub.handoff("wants to negotiate price")
    webhook.inbound(customer, number, "quiero hablar con María directamente")
    to_customer = twilio_api.bodies(customer)
    assert len(to_customer) == 1 and "María González" in to_customer[0]
    alerts = twilio_api.bodies(advisor["phone_number"])
    assert len(alerts) == 1 and "wants to negotiate price" in alerts[0]
    assert "StatusCallback" not in twilio_api.sent[-1]  # no row of ours to report on
    conversation = conversation_of(db, advisor["id"], customer)
    assert conversation["ai_attention"] is False
    assert conversation["handoff_reason"] == "wants to negotiate price"
    assert conversation["human_override_until"] is not None
    run = db.execute(
        "select outcome from ai_runs where advisor_id = %s", (advisor["id"],)
    ).fetchone()
    assert run == {"outcome": "handoff"}
    # The next message is stored, but nobody but the human answers it.
    calls = len(openai_stub.requests)
    assert webhook.inbound(customer, number, "¿hola?").status_code == 200
    assert len(openai_stub.requests) == calls
    assert len(twilio_api.sent) == 2
    assert messages_of(db, advisor["id"])[-1]["body"] == "¿hola?"
    recorded = db.execute(
        "select channel, status, provider_sid is not null as has_sid, reason from advisor_alerts"
        " where conversation_id = %s", (conversation["id"],),
    ).fetchall()  # fmt: skip
    assert recorded == [{"channel": "text", "status": "sent", "has_sid": True,
                         "reason": "wants to negotiate price"}]  # fmt: skip


ALERT_TEMPLATE = "HX" + "a1" * 16


@pytest.mark.parametrize("template", [None, ALERT_TEMPLATE])
def test_handoff_alert_outside_the_advisors_window_needs_a_template(
    make_services: Any,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    template: str | None,
) -> None:
    """María has not written to her number in 24 hours: WhatsApp would refuse free text
    (63016), so the alert goes as the approved template, or not at all, and says so."""
    make_services(**({"ADVISOR_ALERT_CONTENT_SID": template} if template else {}))
    webhook = WebhookClient()
    customer = f.phone("+57338")
    openai_stub.handoff("quiere un descuento")
    webhook.inbound(customer, advisor["twilio_phone_number"], "¿me hacen descuento?")
    to_advisor = [m for m in twilio_api.sent if m["To"] == [f"whatsapp:{advisor['phone_number']}"]]
    recorded = db.execute(
        "select channel, status, error_message from advisor_alerts where advisor_id = %s",
        (advisor["id"],),
    ).fetchone()
    if template is None:
        assert to_advisor == []
        assert recorded == {"channel": "none", "status": "skipped", "error_message":
                            "outside the advisor's 24-hour window and no alert template"}  # fmt: skip
    else:
        assert len(to_advisor) == 1 and to_advisor[0]["ContentSid"] == [template]
        assert json.loads(to_advisor[0]["ContentVariables"][0]) == {
            "1": customer, "2": "quiere un descuento",
            "3": "Últimos mensajes del cliente: ¿me hacen descuento?",  # the model gave none
        }  # fmt: skip
        assert recorded == {"channel": "template", "status": "sent", "error_message": None}


def test_opt_out_and_back_in(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
) -> None:
    customer, number = f.phone("+57329"), advisor["twilio_phone_number"]
    webhook.inbound(customer, number, "  Baja! ")
    assert len(twilio_api.bodies(customer)) == 1  # one confirmation
    assert conversation_of(db, advisor["id"])["opted_out_at"] is not None
    webhook.inbound(customer, number, "STOP")
    webhook.inbound(customer, number, "una pregunta")
    assert len(twilio_api.bodies(customer)) == 1
    assert openai_stub.requests == []
    webhook.inbound(customer, number, "ALTA")
    assert len(twilio_api.bodies(customer)) == 2
    webhook.inbound(customer, number, "hola otra vez")
    assert len(twilio_api.bodies(customer)) == 3
    assert len(openai_stub.requests) == 1


def test_model_timeout_sends_fallback_and_flags_for_a_human(
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    make_services: Any,
    twilio_api: TwilioApi,
    openai_stub: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captured: list[BaseException] = []
    monkeypatch.setattr("shared.inbound.capture", captured.append)
    make_services(OPENAI_TIMEOUT_SECONDS="1")
    webhook = WebhookClient()
    openai_stub.reply_with("too late", delay=2.5)
    customer = f.phone("+57330")
    assert webhook.inbound(customer, advisor["twilio_phone_number"], "hola").status_code == 200
    bodies = twilio_api.bodies(customer)
    assert len(bodies) == 1 and "María González" in bodies[0]
    conversation = conversation_of(db, advisor["id"])
    assert conversation["needs_human"] is True and conversation["ai_attention"] is True
    run = db.execute(
        "select outcome, error from ai_runs where advisor_id = %s", (advisor["id"],)
    ).fetchone()
    assert run and run["outcome"] == "timeout"
    assert len(captured) == 1


def test_model_error_sends_fallback(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    openai_stub: FakeOpenAI,
) -> None:
    openai_stub.fail(500)
    webhook.inbound(f.phone("+57331"), advisor["twilio_phone_number"], "hola")
    run = db.execute(
        "select outcome, error from ai_runs where advisor_id = %s", (advisor["id"],)
    ).fetchone()
    assert run and run["outcome"] == "error" and "InternalServerError" in run["error"]
    assert messages_of(db, advisor["id"])[-1]["author"] == "ai"


def test_twilio_500_leaves_a_failed_row(
    webhook: WebhookClient,
    advisor: dict[str, Any],
    db: psycopg.Connection[Any],
    twilio_api: TwilioApi,
) -> None:
    customer = f.phone("+57332")
    twilio_api.fail_next(customer, 500, 20500)
    assert webhook.inbound(customer, advisor["twilio_phone_number"], "hola").status_code == 200
    reply = messages_of(db, advisor["id"])[-1]
    assert reply["direction"] == "outbound"
    assert (reply["status"], reply["error_code"], reply["provider_sid"]) == ("failed", 20500, None)


def test_long_reply_is_split_in_order(
    webhook: WebhookClient, advisor: dict[str, Any], twilio_api: TwilioApi, openai_stub: FakeOpenAI
) -> None:
    paragraph = "Esta es una frase del plan. " * 40
    openai_stub.reply_with(paragraph.strip() + "\n" + "Segunda parte del mensaje. " * 40)
    customer = f.phone("+57333")
    webhook.inbound(customer, advisor["twilio_phone_number"], "cuéntame todo")
    bodies = twilio_api.bodies(customer)
    assert len(bodies) == 2
    assert all(len(b) <= 1600 for b in bodies)
    assert bodies[0].startswith("Esta es") and bodies[1].startswith("Segunda parte")


@pytest.mark.usefixtures("rate_clock")
def test_customer_rate_limit_stores_but_withholds_the_ai(
    advisor: dict[str, Any], db: psycopg.Connection[Any], make_services: Any, twilio_api: TwilioApi
) -> None:
    make_services(RATE_LIMIT_CUSTOMER_PER_MINUTE="2")
    webhook = WebhookClient()
    customer = f.phone("+57334")
    for i in range(3):
        assert webhook.inbound(customer, advisor["twilio_phone_number"], f"m{i}").status_code == 200
    inbound = [m for m in messages_of(db, advisor["id"]) if m["direction"] == "inbound"]
    assert len(inbound) == 3
    assert len(twilio_api.bodies(customer)) == 2
    # The withheld message is handled (the sweep leaves it alone), and its turn let go.
    unhandled = db.execute(
        "select count(*) as n from messages"
        " where advisor_id = %s and direction = 'inbound' and handled_at is null",
        (advisor["id"],),
    ).fetchone()
    held = db.execute(
        "select count(*) as n from private.turn_holders t"
        " join conversations c on c.id = t.conversation_id"
        " where c.advisor_id = %s and t.held_until > now()",
        (advisor["id"],),
    ).fetchone()
    assert (unhandled, held) == ({"n": 0}, {"n": 0})


def test_unknown_or_inactive_number_is_kept_unrouted(
    webhook: WebhookClient, db: psycopg.Connection[Any], twilio_api: TwilioApi
) -> None:
    inactive = f.advisor(db, f.tenant(db), active=False)
    for number in (f.phone("+1777"), inactive["twilio_phone_number"]):
        params = inbound_form(f.phone("+57335"), number, "hola?", ButtonPayload="promo-1",
                              ReferralCtwaClid="ad-123", OriginalRepliedMessageSid="SM" + "e" * 32)  # fmt: skip
        assert webhook.post(params).status_code == 200
        assert webhook.post(params).status_code == 200  # a redelivery: still one row
        rows = db.execute(
            "select to_number, payload from unrouted_messages where provider_sid = %s",
            (params["MessageSid"],),
        ).fetchall()
        assert len(rows) == 1 and rows[0]["to_number"] == number
        assert rows[0]["payload"] == params  # the raw form, every field Twilio sent
    assert twilio_api.sent == []


def test_routing_cache_forgets_a_deactivated_advisor(
    advisor: dict[str, Any], db: psycopg.Connection[Any], make_services: Any, twilio_api: TwilioApi
) -> None:
    services = make_services(ROUTING_CACHE_SECONDS="15")
    now = [1000.0]
    services.router.clock = lambda: now[0]
    webhook = WebhookClient()
    number, customer = advisor["twilio_phone_number"], f.phone("+57336")

    def routed(body: str) -> bool:
        params = inbound_form(customer, number, body)
        assert webhook.post(params).status_code == 200
        unrouted = db.execute(
            "select count(*) as n from unrouted_messages where provider_sid = %s",
            (params["MessageSid"],),
        ).fetchone()
        return unrouted == {"n": 0}

    assert routed("hola")
    db.execute("update advisors set is_active = false where id = %s", (advisor["id"],))
    assert routed("¿sigues?")  # the in-process layer still answers
    now[0] += 15.1
    assert routed("¿sigues?")  # that layer expired; Redis still answers
    key = f"route:{number}"
    assert services.upstash and 0 < services.upstash.client.ttl(key) <= 15
    services.upstash.client.delete(key)  # what Redis does when that TTL runs out
    assert routed("¿sigues?")  # the in-process layer took Redis' answer for another 15 s
    now[0] += 15.1
    assert not routed("¿sigues?")  # both layers gone: Postgres says nobody owns the number


def test_status_callbacks_out_of_order_end_at_the_furthest(
    webhook: WebhookClient, advisor: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    webhook.inbound(f.phone("+57337"), advisor["twilio_phone_number"], "hola")
    reply_sid = messages_of(db, advisor["id"])[-1]["provider_sid"]
    for status in ("read", "sent", "delivered", "sent", "read"):
        assert webhook.status(reply_sid, status).status_code == 200
    assert messages_of(db, advisor["id"])[-1]["status"] == "read"
    # Unknown sid: 200, kept for when its message is recorded.
    assert webhook.status("SM" + "f" * 32, "delivered").status_code == 200
    # Unsigned callbacks are refused.
    params = {"MessageSid": reply_sid, "MessageStatus": "failed"}
    assert webhook.post(params, "/status", signature="x").status_code == 403


def test_failed_status_keeps_twilio_error_code(
    webhook: WebhookClient, advisor: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    webhook.inbound(f.phone("+57338"), advisor["twilio_phone_number"], "hola")
    reply_sid = messages_of(db, advisor["id"])[-1]["provider_sid"]
    webhook.status(reply_sid, "undelivered", ErrorCode="63016")
    webhook.status(reply_sid, "sent")
    last = messages_of(db, advisor["id"])[-1]
    assert (last["status"], last["error_code"]) == ("undelivered", 63016)


def test_postgres_down_is_503(advisor: dict[str, Any], make_services: Any) -> None:
    make_services(
        DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        DATABASE_TIMEOUT_SECONDS="1",
    )
    webhook = WebhookClient()
    response = webhook.inbound(f.phone("+57339"), f.phone("+1666"), "hola")
    assert response.status_code == 503


def test_a_status_callback_completes_a_row_whose_send_answer_was_lost(
    webhook: WebhookClient, advisor: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    conversation = f.ingest(db, advisor["id"], f.phone("+57340"), "hola", permitted=False)
    row = f.reply(db, conversation["conversation_id"], "respuesta")  # committed, no sid yet
    sid = "SM" + "c" * 32
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}
    assert webhook.post(params, f"/status?message_id={row['id']}").status_code == 200
    stored = db.execute("select provider_sid, status from messages where id = %s", (row["id"],))
    assert stored.fetchone() == {"provider_sid": sid, "status": "delivered"}
