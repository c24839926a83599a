"""Contract tests: the stand-ins answer in the providers' documented shapes (shapes/), and our
facades read those shapes. A stand-in cannot drift into a private dialect without failing here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import responses
import respx

from devstack.fake_openai import FakeOpenAI
from devstack.local_server import LocalServer, Response
from devstack.twilio_emulator import TwilioEmulator, message_resource, twilio_error
from devstack.upstash_bridge import UpstashBridge
from shared.assistant import Assistant, AssistantError
from shared.upstash import Upstash
from shared.whatsapp import WhatsApp
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_MESSAGES_URL, UPSTASH_TOKEN

SHAPES = Path(__file__).parent / "shapes"


def shape(name: str) -> Any:
    return json.loads((SHAPES / name).read_text())


def same_shape(actual: Any, documented: Any, where: str = "$") -> None:
    """Same keys at every level and the same JSON type for every value (null matches anything
    the provider documents as nullable)."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict), where
        assert set(actual) == set(documented), f"{where}: {set(actual) ^ set(documented)}"
        for key, value in documented.items():
            same_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list), where
        for item in actual:
            same_shape(item, documented[0], f"{where}[]")
    elif documented is not None and actual is not None:
        assert type(actual) is type(documented), f"{where}: {type(actual)} != {type(documented)}"


# -- Twilio ------------------------------------------------------------------------------------
@pytest.fixture
def emulator() -> Iterator[TwilioEmulator]:
    server = TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, callback_statuses=()).start()
    yield server
    server.stop()


def test_twilio_emulator_speaks_twilios_shapes(emulator: TwilioEmulator) -> None:
    url = f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    form = {"From": "whatsapp:+14155238886", "To": "whatsapp:+573001112233", "Body": "Hola"}
    created = requests.post(url, data=form, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert created.status_code == 201
    same_shape(created.json(), shape("twilio_message.json"))
    refused = requests.post(url, data=form, auth=(ACCOUNT_SID, "wrong"), timeout=5)
    assert refused.status_code == 401
    same_shape(refused.json(), shape("twilio_error.json"))
    same_shape(message_resource(ACCOUNT_SID, {"To": ["x"]}), shape("twilio_message.json"))
    same_shape(twilio_error(400, 21211, "bad"), shape("twilio_error.json"))


def test_whatsapp_facade_reads_twilios_shapes() -> None:
    whatsapp = WhatsApp(ACCOUNT_SID, AUTH_TOKEN, None, "", timeout=5)
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_MESSAGES_URL, json=shape("twilio_message.json"), status=201)
        mock.post(TWILIO_MESSAGES_URL, json=shape("twilio_error.json"), status=400)
        sent = whatsapp.send("+14155238886", "+573001112233", "Hola")
        refused = whatsapp.send("+14155238886", "+1555", "Hola")
    whatsapp.close()
    assert (sent.sid, sent.status, sent.ok) == (
        "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "queued",
        True,
    )
    assert (refused.ok, refused.error_code) == (False, 21211)
    assert refused.error_message and "not a valid phone number" in refused.error_message


# -- Upstash -----------------------------------------------------------------------------------
def test_upstash_bridge_speaks_upstashs_shapes(upstash_bridge: UpstashBridge) -> None:
    documented = shape("upstash.json")
    auth = {"Authorization": f"Bearer {UPSTASH_TOKEN}"}
    ok = httpx.post(upstash_bridge.url, json=["SET", "contract:k", "1"], headers=auth)
    assert ok.status_code == 200 and ok.json() == documented["result"]
    bad = httpx.post(upstash_bridge.url, json=["INCRBY", "contract:k", "x"], headers=auth)
    assert bad.status_code == 400
    same_shape(bad.json(), documented["error"])
    assert bad.json()["error"].startswith("ERR")
    unauthorized = httpx.post(
        upstash_bridge.url, json=["GET", "k"], headers={"Authorization": "Bearer no"}
    )
    assert unauthorized.status_code == 401 and unauthorized.json() == documented["unauthorized"]
    pipeline = httpx.post(
        upstash_bridge.url + "/pipeline",
        json=[["SET", "contract:p", "1"], ["SET", "contract:q", "v"], ["INCR", "contract:q"],
              ["ZADD", "contract:z", 11, "item1", 22, "item2"]],
        headers=auth,
    )  # fmt: skip
    assert pipeline.status_code == 200
    answer = pipeline.json()
    assert [next(iter(item)) for item in answer] == [next(iter(i)) for i in documented["pipeline"]]
    for item, expected in zip(answer, documented["pipeline"], strict=True):
        same_shape(item, expected)


@respx.mock
def test_upstash_facade_reads_upstashs_shapes() -> None:
    documented = shape("upstash.json")
    url = "https://contract.upstash.example"
    upstash = Upstash(url, "token", timeout=5)
    # The sliding window's script answers what is left of the limit (-1: over it).
    respx.post(url + "/pipeline").mock(
        return_value=httpx.Response(200, json=[{"result": 4}, {"result": -1}])
    )
    assert upstash.admit([("rl:c", 5, "a"), ("rl:a", 5, "b")]) == (True, False)
    # The client asks for base64 (`Upstash-Encoding: base64`), as Upstash then answers.
    respx.post(url).mock(return_value=httpx.Response(200, json={"result": "aG9sYQ=="}))
    assert upstash.get("k") == "hola"
    respx.post(url).mock(return_value=httpx.Response(200, json={"result": None}))
    assert upstash.get("k") is None
    respx.post(url).mock(return_value=httpx.Response(400, json=documented["error"]))
    assert upstash.get("k") is None  # an error answer fails open, never raises
    respx.post(url).mock(return_value=httpx.Response(401, json=documented["unauthorized"]))
    assert upstash.get("k") is None
    upstash.close()


# -- OpenAI ------------------------------------------------------------------------------------
def test_openai_stand_in_speaks_openais_shapes(fake_openai: FakeOpenAI) -> None:
    url = fake_openai.base_url + "/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hola"}]}
    auth = {"Authorization": "Bearer sk-test"}
    completion = httpx.post(url, json=body, headers=auth)
    assert completion.status_code == 200
    same_shape(completion.json(), shape("openai_chat_completion.json"))
    fake_openai.fail(500)
    failed = httpx.post(url, json=body, headers=auth)
    assert failed.status_code == 500
    same_shape(failed.json(), shape("openai_error.json"))


def test_assistant_reads_openais_shapes() -> None:
    # The OpenAI SDK has an HTTP stack of its own: the documented bodies are served for real.
    answers = [
        Response(200, shape("openai_chat_completion.json")),
        Response(500, shape("openai_error.json")),
    ]
    server = LocalServer(lambda request: answers.pop(0)).start()
    assistant = Assistant("sk-test", server.url + "/v1", "gpt-4o-mini", max_retries=0, timeout=5)
    try:
        history = [{"direction": "inbound", "body": "¿precio?"}]
        reply = assistant.reply("Eres un asistente.", history)
        assert reply.text == "Claro, el plan empresarial cuesta 50 mil pesos al mes."
        assert (reply.model, reply.prompt_tokens, reply.completion_tokens) == (
            "gpt-4o-mini-2024-07-18", 19, 10,
        )  # fmt: skip
        with pytest.raises(AssistantError, match="InternalServerError"):
            assistant.reply("Eres un asistente.", history)
    finally:
        assistant.close()
        server.stop()


def test_assistant_sends_what_the_sdks_create_would_send(fake_openai: FakeOpenAI) -> None:
    # The reply goes through the SDK's generic POST (no input transform): the body, path and
    # headers must stay those of `chat.completions.create` for the same request.
    assistant = Assistant("sk-test", fake_openai.base_url, "gpt-4o-mini", max_retries=0, timeout=5)
    history: list[dict[str, Any]] = [
        {"id": "1", "direction": "inbound", "author": "customer", "body": "¿precio?"},
        {"id": "2", "direction": "outbound", "author": "ai", "body": "¿De qué plan?"},
        {"id": "3", "direction": "inbound", "author": "customer", "body": "el básico",
         "media": [{"content_type": "image/jpeg"}]},
    ]  # fmt: skip
    try:
        assistant.reply(
            "Eres un asistente.", history, images={"3": ["https://example.com/a.jpg"]},
            turn_context="Context for this turn.", cache_key="conversation-1",
        )  # fmt: skip
        ours = fake_openai.requests[-1]
        assistant.client.chat.completions.create(
            model="gpt-4o-mini",
            messages=ours["messages"],
            tools=ours["tools"],
            prompt_cache_key="conversation-1",
        )
        assert fake_openai.requests[-1] == ours
        assert ours["tools"][0]["function"]["name"] == "handoff_to_human"
    finally:
        assistant.close()


def test_the_upstash_sdks_private_parts_we_use_are_still_there() -> None:
    """shared/upstash.py bounds the Redis client's httpx client and drives the rate limiter's
    one-command generator (both pinned in pyproject.toml): an SDK update that moves either
    fails here, not silently in production."""
    from upstash_ratelimit import Ratelimit, SlidingWindow
    from upstash_ratelimit.limiter import Response
    from upstash_redis import Redis

    redis = Redis(url="https://contract.upstash.example", token="t", allow_telemetry=False)
    assert isinstance(redis._http._client, httpx.Client)
    limiter = Ratelimit(redis=redis, limiter=SlidingWindow(max_requests=2, window=60, unit="s"))
    generator = limiter._limiter._limit("rl:contract")  # type: ignore[attr-defined]
    command, args = next(generator)
    assert isinstance(command, str) and hasattr(redis.pipeline(), command)
    assert isinstance(args, list | tuple)
    response = generator.send(1)  # what the script answers for the first request in a window
    assert isinstance(response, Response) and response.allowed is True
    redis.close()  # type: ignore[no-untyped-call]


def test_twilio_emulator_takes_the_typing_indicator_as_twilio_does(
    emulator: TwilioEmulator,
) -> None:
    """messaging.twilio.com/v2/Indicators/Typing.json: form `messageId` + `channel`, answered
    {"success": true}; the facade's call (twilio's own TypingIndicatorList) reaches it."""
    url = f"{emulator.url}/v2/Indicators/Typing.json"
    sid = "SM" + "ab" * 16
    ok = requests.post(url, data={"messageId": sid, "channel": "whatsapp"},
                       auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)  # fmt: skip
    assert ok.status_code == 200 and ok.json() == {"success": True}
    bad = requests.post(url, data={"messageId": "not-a-sid", "channel": "whatsapp"},
                        auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)  # fmt: skip
    assert bad.status_code == 400
    same_shape(bad.json(), shape("twilio_error.json"))
    whatsapp = WhatsApp(ACCOUNT_SID, AUTH_TOKEN, None, "", 5, api_base_url=emulator.url)
    try:
        assert whatsapp.show_typing("MM" + "cd" * 16).result(timeout=10) is True
        assert whatsapp.show_typing("bogus").result(timeout=10) is False  # never sent
    finally:
        whatsapp.close()
    listed = requests.get(f"{emulator.url}/indicators", timeout=5).json()
    assert [i["messageId"] for i in listed] == [sid, "MM" + "cd" * 16]
