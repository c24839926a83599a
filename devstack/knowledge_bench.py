"""Knowledge retrieval, measured (a section of `make bench`): how often the passage that
answers a customer's question is among the four the model gets, and what retrieval adds to
`ingest_inbound` when a tenant holds 10,000 passages.

Everything runs through the production SQL (replace_knowledge_source, ingest_inbound) on the
fixture of devstack/knowledge_fixture.py.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from devstack.knowledge_fixture import FAQ, QUESTIONS, UNANSWERABLE

TOP_K = 4


def _tenant_with_advisor(conn: psycopg.Connection[Any], name: str) -> tuple[str, str, str]:
    """(tenant, admin user, advisor) made as the migrations' owner."""
    admin = str(uuid.uuid4())
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
        " 'authenticated', %s)", (admin, f"{admin}@bench.local"),
    )  # fmt: skip
    tenant = conn.execute("insert into tenants (name) values (%s) returning id", (name,))
    tenant_id = str(tenant.fetchone()["id"])  # type: ignore[index]
    conn.execute(
        "insert into tenant_members (tenant_id, user_id, role) values (%s, %s, 'admin')",
        (tenant_id, admin),
    )
    number = "+1555" + "".join(random.choices("0123456789", k=7))
    advisor = conn.execute(
        "insert into advisors (tenant_id, name, twilio_phone_number, settings)"
        " values (%s, 'Bench', %s, '{\"language\": \"es\"}') returning id", (tenant_id, number),
    )  # fmt: skip
    return tenant_id, admin, str(advisor.fetchone()["id"])  # type: ignore[index]


def _upload(conn: psycopg.Connection[Any], admin: str, tenant: str, title: str,
            entries: list[tuple[str, str]]) -> None:  # fmt: skip
    chunks = [{"heading": q, "content": a} for q, a in entries]
    conn.execute(
        "select public.replace_knowledge_source(%s, %s, null, %s, 'qa_csv', 'es', %s)",
        (admin, tenant, title, Jsonb(chunks)),
    )


def _ask(conn: psycopg.Connection[Any], advisor: str, messages: list[str]) -> list[str]:
    """The headings of the passages the model would get for the last message."""
    customer = "+57" + "".join(random.choices("0123456789", k=10))
    state: dict[str, Any] = {}
    for text in messages:
        state = conn.execute(
            "select public.ingest_inbound(%s, %s, null, %s, %s, p_knowledge_top_k => %s) as r",
            (advisor, customer, "SMBENCH" + uuid.uuid4().hex, text, TOP_K),
        ).fetchone()["r"]  # type: ignore[index]
    return [k["heading"] for k in state["knowledge"]]


def retrieval_quality(database_url: str) -> dict[str, Any]:
    """recall@4 and MRR over the answerable questions; the share of unanswerable ones that
    retrieve nothing above the threshold."""
    questions_of = {key: question for key, question, _ in FAQ}
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        tenant, admin, advisor = _tenant_with_advisor(conn, "bench-knowledge")
        _upload(conn, admin, tenant, "FAQ Muebles Andinos", [(q, a) for _, q, a in FAQ])
        ranks = []
        for messages, key in QUESTIONS:
            found = _ask(conn, advisor, messages)
            expected = questions_of[key]
            ranks.append(found.index(expected) + 1 if expected in found else None)
        empty = sum(1 for text in UNANSWERABLE if not _ask(conn, advisor, [text]))
    hits = [r for r in ranks if r is not None]
    return {
        "questions": len(QUESTIONS),
        "recall_at_4": len(hits) / len(ranks),
        "mrr": sum(1 / r for r in hits) / len(ranks),
        "unanswerable": len(UNANSWERABLE),
        "unanswerable_empty": empty / len(UNANSWERABLE),
        "missed": [QUESTIONS[i][0][-1] for i, r in enumerate(ranks) if r is None],
    }


PRODUCTS = [
    "sofá",
    "silla",
    "mesa",
    "cama",
    "colchón",
    "escritorio",
    "repisa",
    "biblioteca",
    "mesa de noche",
    "cómoda",
    "closet",
    "puff",
    "banco",
    "poltrona",
    "nochero",
    "comedor",
]
MATERIALS = [
    "roble",
    "pino",
    "nogal",
    "cedro",
    "metal",
    "vidrio",
    "bambú",
    "MDF",
    "mármol",
    "cuero",
]
COLORS = ["gris", "beige", "blanco", "negro", "azul", "verde oliva", "terracota", "natural", "café"]
ROOMS = ["sala", "comedor", "alcoba", "oficina", "terraza", "estudio", "habitación infantil"]


def catalogue(count: int, seed: int = 3) -> list[tuple[str, str]]:
    """`count` product passages as a shop's catalogue reads: what a tenant with 10,000 passages
    holds beside its FAQ."""
    rng = random.Random(seed)
    entries = []
    for n in range(count):
        product, material = rng.choice(PRODUCTS), rng.choice(MATERIALS)
        entries.append((
            f"Referencia {n:05d}: {product} de {material}",
            f"{product.capitalize()} de {material} color {rng.choice(COLORS)}, ideal para "
            f"{rng.choice(ROOMS)}, {rng.randrange(40, 240)} x {rng.randrange(30, 120)} cm. Precio "
            f"{rng.randrange(90, 4000) * 1000:,} pesos. Disponible en {rng.randrange(1, 30)} días.",
        ))  # fmt: skip
    return entries


def ingest_latency(database_url: str, passages: int, calls: int) -> dict[str, float]:
    """ingest_inbound's p50/p95 (ms) with retrieval on, for a tenant without knowledge and for
    one holding `passages` passages (its FAQ plus a product catalogue, in sources of 500)."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        _, _, bare = _tenant_with_advisor(conn, "bench-no-knowledge")
        tenant, admin, loaded = _tenant_with_advisor(conn, "bench-10k-passages")
        faq = [(q, a) for _, q, a in FAQ]
        entries = faq + catalogue(max(0, passages - len(faq)))
        for start in range(0, len(entries), 500):
            _upload(conn, admin, tenant, f"FAQ parte {start // 500}", entries[start : start + 500])
        conn.execute("analyze public.knowledge_chunks")
        texts = [messages[-1] for messages, _ in QUESTIONS]
        result: dict[str, float] = {}
        for label, advisor in (("without", bare), ("with", loaded)):
            timings = []
            for n in range(calls):
                began = time.perf_counter()
                _ask(conn, advisor, [texts[n % len(texts)]])
                timings.append((time.perf_counter() - began) * 1000)
            timings.sort()
            result[f"{label}_p50"] = timings[len(timings) // 2]
            result[f"{label}_p95"] = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    result["passages"] = passages
    return result
