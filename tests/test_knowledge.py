"""The knowledge base in the database: who reads which passages (RLS), who manages them,
atomic replacement, and retrieval (accents, typos, follow-ups, scope, threshold)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests import factories as f
from tests.conftest import as_user

FAQ = [
    {"heading": "¿Cuánto cuesta el plan empresarial?",
     "content": "El plan empresarial cuesta 50.000 pesos al mes por usuario."},
    {"heading": "¿Hacen envíos a Medellín?",
     "content": "Sí, enviamos a Medellín, Cali y Barranquilla en dos días hábiles."},
    {"heading": "¿Qué medios de pago aceptan?",
     "content": "Tarjeta de crédito, PSE, Nequi y transferencia."},
    {"heading": "¿Tienen garantía?",
     "content": "Todos los muebles tienen garantía de doce meses por defectos de fábrica."},
]  # fmt: skip


def upload(
    db: psycopg.Connection[Any], user: Any, title: str, chunks: list[dict[str, Any]],
    advisor_id: Any = None, tenant_id: Any = None,
) -> dict[str, Any]:  # fmt: skip
    row = db.execute(
        "select replace_knowledge_source(%s, %s, %s, %s, 'qa_csv', 'es', %s::jsonb) as r",
        (user, tenant_id, advisor_id, title, json.dumps(chunks)),
    ).fetchone()
    assert row
    result: dict[str, Any] = row["r"]
    return result


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> f.World:
    return f.world(db)


def ask(db: psycopg.Connection[Any], advisor_id: Any, *messages: str) -> list[str]:
    """The passages (their headings) the model would get for this conversation's turn."""
    customer = f.phone("+57370")
    for text in messages:
        conversation = f.ingest(db, advisor_id, customer, text)["conversation_id"]
    row = db.execute(
        "select pending_turn(%s, 20, 4) -> 'knowledge' as k", (conversation,)
    ).fetchone()
    assert row
    return [k["heading"] for k in row["k"]]


def test_admins_and_supervisors_manage_advisors_do_not(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    stored = upload(db, world.users["admin1"], "FAQ", FAQ)
    assert stored["chunks"] == 4 and stored["tenant_id"] == str(world.tenant1)
    upload(
        db, world.users["supervisor1"], "FAQ de B", FAQ[:1], advisor_id=world.advisors["b"]["id"]
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        upload(db, world.users["advisor_a"], "Mío", FAQ[:1], advisor_id=world.advisors["a"]["id"])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # another tenant's advisor
        upload(db, world.users["admin1"], "Ajeno", FAQ[:1], advisor_id=world.advisors["c"]["id"])
    listed = db.execute("select list_knowledge_sources(%s) as r", (world.users["admin1"],))
    row = listed.fetchone()
    assert row and sorted(s["title"] for s in row["r"]) == ["FAQ", "FAQ de B"]


def test_reuploading_a_title_replaces_the_source_atomically(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    first = upload(db, world.users["admin1"], "FAQ", FAQ)
    second = upload(db, world.users["admin1"], "FAQ", FAQ[:2])
    count = db.execute(
        "select count(*) as sources, sum((select count(*) from knowledge_chunks k"
        " where k.source_id = s.id)) as chunks from knowledge_sources s where tenant_id = %s",
        (world.tenant1,),
    ).fetchone()
    assert count == {"sources": 1, "chunks": 2} and first["source_id"] != second["source_id"]
    deleted = db.execute(
        "select delete_knowledge_source(%s, %s) as r", (world.users["admin1"], second["source_id"])
    ).fetchone()
    assert deleted == {"r": True}


@pytest.mark.parametrize(
    ("who", "titles"),
    [("advisor_a", ["Tenant", "Solo A"]), ("advisor_b", ["Tenant"]),
     ("admin1", ["Tenant", "Solo A"]), ("advisor_c", []), ("anon", [])],
)  # fmt: skip
def test_who_reads_which_passages(
    db: psycopg.Connection[Any], world: f.World, who: str, titles: list[str]
) -> None:
    upload(db, world.users["admin1"], "Tenant", FAQ[:1])
    upload(db, world.users["admin1"], "Solo A", FAQ[1:2], advisor_id=world.advisors["a"]["id"])
    uid = world.users[who]
    with as_user(db, uid, "anon" if uid is None else "authenticated") as conn:
        try:
            sources = conn.execute("select title from knowledge_sources order by title").fetchall()
            chunks = conn.execute("select count(*) as n from knowledge_chunks").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            sources, chunks = [], {"n": 0}
    assert sorted(r["title"] for r in sources) == sorted(titles)
    assert chunks == {"n": len(titles)}


def test_retrieval_forgives_accents_typos_and_whatsapp_spelling(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    upload(db, world.users["admin1"], "FAQ", FAQ)
    advisor = world.advisors["a"]["id"]
    assert ask(db, advisor, "cuanto cuesta el plan empresarial")[0] == FAQ[0]["heading"]
    assert ask(db, advisor, "hacen envios a medelin??")[0] == FAQ[1]["heading"]
    assert ask(db, advisor, "puedo pagar con nequi")[0] == FAQ[2]["heading"]
    assert ask(db, advisor, "tienen garantia los muebles?")[0] == FAQ[3]["heading"]


def test_a_follow_up_leans_on_the_message_before(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    upload(db, world.users["admin1"], "FAQ", FAQ)
    found = ask(db, world.advisors["a"]["id"], "hacen envíos a Medellín?", "y a Cali?")
    assert found[0] == FAQ[1]["heading"]


def test_unrelated_messages_and_other_scopes_get_nothing(
    db: psycopg.Connection[Any], world: f.World
) -> None:
    upload(db, world.users["admin1"], "Solo A", FAQ, advisor_id=world.advisors["a"]["id"])
    upload(db, world.users["admin2"], "Otro tenant", FAQ)
    assert ask(db, world.advisors["a"]["id"], "hola buenas tardes") == []
    assert ask(db, world.advisors["b"]["id"], "cuanto cuesta el plan empresarial") == []
    # The other tenant's FAQ answers only the other tenant's advisor.
    assert ask(db, world.advisors["c"]["id"], "cuanto cuesta el plan empresarial") == [
        FAQ[0]["heading"]
    ]
