"""Test data built through the owner connection (what seed.sql or an admin would do)."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg


def phone(prefix: str = "+1555") -> str:
    return prefix + "".join(random.choices("0123456789", k=7))


def sid(prefix: str = "SM") -> str:
    return prefix + uuid.uuid4().hex


def user(db: psycopg.Connection[Any]) -> uuid.UUID:
    user_id = uuid.uuid4()
    db.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated', 'authenticated', %s)",
        (user_id, f"{user_id}@test.local"),
    )
    return user_id


def tenant(db: psycopg.Connection[Any], name: str = "Tenant") -> uuid.UUID:
    row = db.execute("insert into tenants (name) values (%s) returning id", (name,)).fetchone()
    assert row
    return uuid.UUID(str(row["id"]))


def member(
    db: psycopg.Connection[Any], tenant_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> None:
    db.execute(
        "insert into tenant_members (tenant_id, user_id, role) values (%s, %s, %s)",
        (tenant_id, user_id, role),
    )


def advisor(
    db: psycopg.Connection[Any],
    tenant_id: uuid.UUID,
    user_id: uuid.UUID | None = None,
    *,
    name: str = "Advisor",
    settings: dict[str, Any] | None = None,
    personal_phone: str | None = None,
    active: bool = True,
) -> dict[str, Any]:
    row = db.execute(
        "insert into advisors (tenant_id, user_id, name, phone_number, twilio_phone_number,"
        " settings, is_active) values (%s, %s, %s, %s, %s, %s, %s) returning *",
        (
            tenant_id,
            user_id,
            name,
            personal_phone,
            phone("+1415"),
            json.dumps(settings or {"language": "es"}),
            active,
        ),
    ).fetchone()
    assert row
    return dict(row)


def ingest(
    db: psycopg.Connection[Any],
    advisor_id: Any,
    customer: str,
    body: str = "Hola",
    message_sid: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    row = db.execute(
        "select ingest_inbound(%s, %s, %s, %s, %s, p_opt => %s, p_ai_permitted => %s) as r",
        (
            advisor_id,
            customer,
            kwargs.get("name"),
            message_sid or sid(),
            body,
            kwargs.get("opt"),
            kwargs.get("permitted", True),
        ),
    ).fetchone()
    assert row
    result: dict[str, Any] = row["r"]
    return result


def reply(
    db: psycopg.Connection[Any],
    conversation_id: Any,
    body: str | None = "x",
    *,
    author: str = "ai",
    status: str = "queued",
    provider_sid: str | None = None,
    error_code: int | None = None,
    seen: list[Any] | None = None,
    ai_run: dict[str, Any] | None = None,
    handoff: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An outbound message as the functions write one: committed, then Twilio's answer recorded
    (unless it stays queued without a sid). Returns {"id", "provider_sid"}."""
    committed = db.execute(
        "select commit_reply(%s, %s::uuid[], %s::jsonb, %s::jsonb, %s::jsonb, false) as r",
        (conversation_id, [str(s) for s in seen or []],
         json.dumps([{"author": author, "body": body}] if body is not None else []),
         json.dumps(ai_run) if ai_run else None, json.dumps(handoff) if handoff else None),
    ).fetchone()  # fmt: skip
    assert committed and committed["r"]["committed"]
    ids = committed["r"]["message_ids"]
    if not ids:
        return {"id": None, "provider_sid": None}
    if status != "queued" or provider_sid:
        result = {"message_id": ids[0], "provider_sid": provider_sid, "status": status,
                  "error_code": error_code, "error_message": None}  # fmt: skip
        db.execute("select record_send_results(%s::jsonb)", (json.dumps([result]),))
    return {"id": str(ids[0]), "provider_sid": provider_sid}


@dataclass
class World:
    """Two tenants with advisors, staff, data, and one user who belongs nowhere."""

    tenant1: uuid.UUID
    tenant2: uuid.UUID
    users: dict[str, uuid.UUID | None] = field(default_factory=dict)
    advisors: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[str, str] = field(default_factory=dict)


def world(db: psycopg.Connection[Any]) -> World:
    w = World(tenant(db, "One"), tenant(db, "Two"))
    for name in (
        "advisor_a",
        "advisor_b",
        "admin1",
        "supervisor1",
        "advisor_c",
        "admin2",
        "nobody",
    ):
        w.users[name] = user(db)
    w.users["anon"] = None
    member(db, w.tenant1, w.users["advisor_a"], "advisor")  # type: ignore[arg-type]
    member(db, w.tenant1, w.users["advisor_b"], "advisor")  # type: ignore[arg-type]
    member(db, w.tenant1, w.users["admin1"], "admin")  # type: ignore[arg-type]
    member(db, w.tenant1, w.users["supervisor1"], "supervisor")  # type: ignore[arg-type]
    member(db, w.tenant2, w.users["advisor_c"], "advisor")  # type: ignore[arg-type]
    member(db, w.tenant2, w.users["admin2"], "admin")  # type: ignore[arg-type]
    w.advisors["a"] = advisor(db, w.tenant1, w.users["advisor_a"], name="A")
    w.advisors["b"] = advisor(db, w.tenant1, w.users["advisor_b"], name="B")
    w.advisors["c"] = advisor(db, w.tenant2, w.users["advisor_c"], name="C")
    customer = phone("+57300")
    for key, adv in w.advisors.items():
        result = ingest(db, adv["id"], customer, f"hola {key}")
        w.conversations[key] = result["conversation_id"]
        reply(db, result["conversation_id"], f"respuesta {key}", status="sent",
              seen=[result["message_id"]], ai_run={"model": "m", "outcome": "replied", "latency_ms": 5})  # fmt: skip
    return w
