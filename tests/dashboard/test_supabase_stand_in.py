"""The local Supabase API stand-in answers as Supabase does for what the console uses, and our
grants and RLS policies (not the stand-in) decide every answer."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
import requests
from storage3.exceptions import StorageApiError

from devstack.stack import Stack
from shared.storage import Storage
from tests.dashboard.conftest import CARLOS_NUMBER, MARIA_NUMBER, customer_writes

MARIA_ADVISOR = "00000000-0000-4000-8000-00000000b001"
TENANT = "00000000-0000-4000-8000-00000000a001"


def sign_in(stack: Stack, email: str, password: str = "dev-password") -> requests.Response:
    return requests.post(
        stack.env["SUPABASE_URL"] + "/auth/v1/token?grant_type=password",
        json={"email": email, "password": password},
        headers={"apikey": stack.env["SUPABASE_ANON_KEY"]},
        timeout=10,
    )


def headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def token(stack: Stack, email: str) -> str:
    response = sign_in(stack, email)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def rest(stack: Stack, method: str, path: str, bearer: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, stack.env["SUPABASE_URL"] + "/rest/v1/" + path, headers=headers(bearer, **kwargs.pop("headers", {})),
        timeout=10, **kwargs,
    )  # fmt: skip


def test_password_sign_in_refresh_and_user(stack: Stack) -> None:
    wrong = sign_in(stack, "maria@demo.local", "not-her-password")
    assert wrong.status_code == 400
    assert wrong.json()["error_code"] == "invalid_credentials"

    session = sign_in(stack, "maria@demo.local").json()
    assert session["token_type"] == "bearer" and session["user"]["email"] == "maria@demo.local"
    user = requests.get(
        stack.env["SUPABASE_URL"] + "/auth/v1/user",
        headers=headers(session["access_token"]),
        timeout=5,
    )
    assert user.json()["id"] == session["user"]["id"]

    refresh = stack.env["SUPABASE_URL"] + "/auth/v1/token?grant_type=refresh_token"
    renewed = requests.post(refresh, json={"refresh_token": session["refresh_token"]}, timeout=5)
    assert (
        renewed.status_code == 200 and renewed.json()["refresh_token"] != session["refresh_token"]
    )
    reused = requests.post(refresh, json={"refresh_token": session["refresh_token"]}, timeout=5)
    assert reused.status_code == 400  # rotated: a refresh token works once


def test_data_api_runs_as_the_user_under_rls_and_grants(stack: Stack) -> None:
    customer_writes(stack, "+573157770001", MARIA_NUMBER, "Hola")
    customer_writes(stack, "+573157770002", CARLOS_NUMBER, "Hola")
    maria, carlos = token(stack, "maria@demo.local"), token(stack, "carlos@demo.local")

    mine = rest(stack, "GET", "conversations?select=id,advisor_id&order=last_message_at.desc.nullslast", maria,
                headers={"Prefer": "count=exact"})  # fmt: skip
    assert mine.status_code == 200
    assert mine.json() and {row["advisor_id"] for row in mine.json()} == {MARIA_ADVISOR}
    assert mine.headers["Content-Range"].endswith(f"/{len(mine.json())}")
    hers = rest(
        stack, "GET", "conversations?select=id&customer_phone=eq.%2B573157770001", maria
    ).json()
    assert len(hers) == 1

    # Carlos cannot change her conversation (RLS hides it), nor anyone a column not granted.
    path = f"conversations?id=eq.{hers[0]['id']}"
    hidden = rest(
        stack,
        "PATCH",
        path,
        carlos,
        json={"ai_attention": False},
        headers={"Prefer": "return=representation"},
    )
    assert hidden.status_code == 200 and hidden.json() == []
    not_granted = rest(stack, "PATCH", path, maria, json={"customer_phone": "+573000000000"})
    assert not_granted.status_code == 403 and not_granted.json()["code"] == "42501"
    taken = rest(
        stack,
        "PATCH",
        path,
        maria,
        json={"ai_attention": False},
        headers={"Prefer": "return=representation"},
    )
    assert taken.status_code == 200 and taken.json()[0]["ai_attention"] is False

    anon = rest(stack, "GET", "conversations?select=id", stack.env["SUPABASE_ANON_KEY"])
    assert anon.status_code == 401 and anon.json()["code"] == "42501"
    missing = rest(stack, "GET", "no_such_table", maria)
    assert missing.status_code == 404 and missing.json()["code"] == "PGRST205"
    unsupported = rest(stack, "GET", "conversations?id=fts.x", maria)
    assert unsupported.status_code == 400 and unsupported.json()["code"] == "PGRST100"


def test_rpc_metrics_are_computed_as_the_caller(stack: Stack) -> None:
    body = {"p_from": "2000-01-01T00:00:00Z", "p_to": "2100-01-01T00:00:00Z"}
    maria = rest(
        stack, "POST", "rpc/advisor_metrics", token(stack, "maria@demo.local"), json=body
    ).json()
    admin = rest(
        stack, "POST", "rpc/advisor_metrics", token(stack, "admin@demo.local"), json=body
    ).json()
    assert [row["advisor_id"] for row in maria] == [MARIA_ADVISOR]
    assert len(admin) == 7
    missing = rest(
        stack,
        "POST",
        "rpc/advisor_metrics",
        token(stack, "maria@demo.local"),
        json={"p_from": "2000-01-01"},
    )
    assert missing.status_code == 404 and missing.json()["code"] == "PGRST202"


def join(url: str, access_token: str, topic: str, then: Any = None) -> list[Any]:
    # Playwright's sync API keeps an event loop running on this thread: use another one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _join(url, access_token, topic, then)).result(timeout=60)


async def _join(url: str, access_token: str, topic: str, then: Any = None) -> list[Any]:
    """Join a private channel as supabase-js does; return the reply and, after `then()`, the
    first broadcast."""
    socket_url = url.replace("http", "ws") + "/realtime/v1/websocket?vsn=2.0.0"
    config = {
        "broadcast": {"ack": False, "self": False},
        "presence": {"enabled": False},
        "postgres_changes": [],
        "private": True,
    }
    frames = []
    async with aiohttp.ClientSession() as session, session.ws_connect(socket_url) as ws:
        join = [
            "1",
            "1",
            f"realtime:{topic}",
            "phx_join",
            {"config": config, "access_token": access_token},
        ]
        await ws.send_str(json.dumps(join))
        frames.append(json.loads((await ws.receive(timeout=10)).data))
        if then is not None:
            await asyncio.to_thread(then)
            frames.append(json.loads((await ws.receive(timeout=10)).data))
    return frames


def test_realtime_private_channels_are_authorized_by_the_policy(stack: Stack) -> None:
    topic = f"advisor:{MARIA_ADVISOR}"
    [refused] = join(stack.env["SUPABASE_URL"], token(stack, "carlos@demo.local"), topic)
    assert refused[3] == "phx_reply" and refused[4]["status"] == "error"

    def customer() -> None:
        customer_writes(stack, "+573157770003", MARIA_NUMBER, "Hola por el canal")

    joined, broadcast = join(
        stack.env["SUPABASE_URL"], token(stack, "maria@demo.local"), topic, customer
    )
    assert joined[4] == {"status": "ok", "response": {"postgres_changes": []}}
    assert broadcast[2] == f"realtime:{topic}" and broadcast[3] == "broadcast"
    assert broadcast[4]["payload"]["record"]["advisor_id"] == MARIA_ADVISOR


def test_storage_signed_urls_honour_the_bucket_policy(stack: Stack) -> None:
    assert stack.supabase is not None
    name = f"{TENANT}/{MARIA_ADVISOR}/c/m/0.jpg"
    storage = stack.env["SUPABASE_URL"] + "/storage/v1/object"
    upload = requests.post(f"{storage}/whatsapp-media/{name}", data=b"\xff\xd8jpeg",
                           headers=headers(stack.supabase.service_role_key, **{"Content-Type": "image/jpeg"}), timeout=5)  # fmt: skip
    assert upload.status_code == 200, upload.text
    refused = requests.post(f"{storage}/sign/whatsapp-media/{name}", json={"expiresIn": 60},
                            headers=headers(token(stack, "carlos@demo.local")), timeout=5)  # fmt: skip
    assert refused.status_code == 404
    signed = requests.post(f"{storage}/sign/whatsapp-media/{name}", json={"expiresIn": 60},
                           headers=headers(token(stack, "maria@demo.local")), timeout=5)  # fmt: skip
    media = requests.get(
        stack.env["SUPABASE_URL"] + "/storage/v1" + signed.json()["signedURL"], timeout=5
    )
    assert media.content == b"\xff\xd8jpeg" and media.headers["Content-Type"] == "image/jpeg"
    tampered = requests.get(
        stack.env["SUPABASE_URL"]
        + "/storage/v1"
        + signed.json()["signedURL"].replace("0.jpg", "1.jpg"),
        timeout=5,
    )
    assert tampered.status_code == 400


def test_the_functions_storage_client_uploads_signs_and_removes(stack: Stack) -> None:
    """The functions' own client (supabase-py, multipart uploads) against the stand-in."""
    assert stack.supabase is not None
    client = Storage(
        stack.env["SUPABASE_URL"], stack.supabase.service_role_key, "whatsapp-media", timeout=10
    )
    name = f"{TENANT}/{MARIA_ADVISOR}/c/m/0.ogg"
    try:
        client.upload(name, b"OggS voice", "audio/ogg")
        fetched = requests.get(client.signed_url(name, 60), timeout=5)
        assert fetched.content == b"OggS voice" and fetched.headers["Content-Type"] == "audio/ogg"
        assert client.remove([name, f"{TENANT}/never-stored.ogg"]) == 1
        assert client.remove([name]) == 0
        with pytest.raises(StorageApiError, match="not found"):
            client.signed_url(name, 60)
    finally:
        client.close()
