"""The knowledge base through the functions: the send function's /knowledge endpoints, and
the passages reaching the model after the conversation, recorded in ai_runs."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from devstack.fake_openai import FakeOpenAI
from shared.knowledge import MAX_CHUNKS, MAX_CONTENT_CHARS
from tests import factories as f
from tests.conftest import SendClient, WebhookClient, mint_token

pytestmark = pytest.mark.usefixtures("twilio_api")
FAQ_CSV = (
    "pregunta,respuesta\n"
    "¿Cuánto cuesta el plan empresarial?,El plan empresarial cuesta 50.000 pesos al mes.\n"
    "¿Hacen envíos a Medellín?,Sí: Medellín y Cali en dos días hábiles.\n"
)


@pytest.fixture
def tenant(db: psycopg.Connection[Any]) -> dict[str, Any]:
    tenant = f.tenant(db)
    users = {name: f.user(db) for name in ("admin", "advisor")}
    f.member(db, tenant, users["admin"], "admin")
    f.member(db, tenant, users["advisor"], "advisor")
    advisor = f.advisor(db, tenant, users["advisor"], name="Ana", settings={"language": "es"})
    return {"id": tenant, "users": users, "advisor": advisor}


def call(send: SendClient, method: str, path: str, user: Any, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {mint_token(user)}"}
    return send.client.open(path, method=method, json=body, headers=headers)


def test_admins_upload_list_and_delete_advisors_may_not(
    send: SendClient, tenant: dict[str, Any]
) -> None:
    admin, advisor = tenant["users"]["admin"], tenant["users"]["advisor"]
    document = {"title": "FAQ", "format": "qa_csv", "content": FAQ_CSV}
    created = call(send, "POST", "/knowledge", admin, document)
    assert created.status_code == 201 and created.get_json()["passages"] == 2
    listed = call(send, "GET", "/knowledge", admin).get_json()["sources"]
    assert [(s["title"], s["chunks"]) for s in listed] == [("FAQ", 2)]
    assert call(send, "POST", "/knowledge", advisor, document).status_code == 403
    source = created.get_json()["source_id"]
    assert call(send, "DELETE", f"/knowledge/{source}", advisor).status_code == 403
    assert call(send, "DELETE", f"/knowledge/{source}", admin).status_code == 200
    assert call(send, "DELETE", f"/knowledge/{source}", admin).status_code == 404
    assert call(send, "GET", "/knowledge", admin).get_json() == {"sources": []}


@pytest.mark.parametrize(
    ("document", "status", "code"),
    [({"title": "x", "format": "markdown", "content": "a" * (MAX_CONTENT_CHARS + 1)}, 413,
      "too_large"),
     ({"title": "x", "format": "text", "content": "\n\n".join(["párrafo"] * (MAX_CHUNKS + 1))
       .replace("párrafo", "p" * 300)}, 422, "too_many_passages"),
     ({"title": "x", "format": "qa_csv", "content": "una,dos,tres"}, 422, "invalid_document"),
     ({"title": "x", "format": "pdf", "content": "…"}, 422, "invalid_body")],
    ids=["too large", "too many passages", "bad csv", "unknown format"],
)  # fmt: skip
def test_bad_documents_get_clear_errors(
    send: SendClient, tenant: dict[str, Any], document: dict[str, Any], status: int, code: str
) -> None:
    answer = call(send, "POST", "/knowledge", tenant["users"]["admin"], document)
    assert (answer.status_code, answer.get_json()["error"]) == (status, code)


def test_the_model_gets_the_passages_after_the_conversation_and_the_run_records_them(
    send: SendClient, tenant: dict[str, Any], db: psycopg.Connection[Any],
    openai_stub: FakeOpenAI,
) -> None:  # fmt: skip
    document = {"title": "FAQ", "format": "qa_csv", "content": FAQ_CSV}
    assert call(send, "POST", "/knowledge", tenant["users"]["admin"], document).status_code == 201
    customer = f.phone("+57371")
    WebhookClient().inbound(customer, tenant["advisor"]["twilio_phone_number"],
                            "cuanto sale el plan empresarial?")  # fmt: skip
    messages = openai_stub.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "system"]  # stable, chat, turn
    context = messages[-1]["content"]
    assert "[1] FAQ / ¿Cuánto cuesta el plan empresarial?: El plan empresarial cuesta" in context
    assert "say plainly that you do not have that information" in context
    run = db.execute(
        "select knowledge from ai_runs where advisor_id = %s", (tenant["advisor"]["id"],)
    ).fetchone()
    assert run and [k["title"] for k in run["knowledge"]] == ["FAQ"] * len(run["knowledge"])
    assert run["knowledge"][0]["score"] > 0
