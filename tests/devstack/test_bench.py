"""`make bench`'s code path on a tiny size, so the benchmark cannot rot: it must produce every
number of the report (how fast they are is the benchmark's business, not the test's)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from devstack import bench
from tests.conftest import DatabaseUrls


def test_grow_to_adds_realistic_conversations(isolated_database: DatabaseUrls) -> None:
    database_url = isolated_database.owner_url
    import psycopg
    from psycopg.rows import dict_row

    from tests import factories

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        factories.advisor(conn, factories.tenant(conn))
    before = bench.grow_to(database_url, 0)
    after = bench.grow_to(database_url, before + 4000)
    # At least the size asked for, overshooting by less than one message per conversation.
    assert before + 4000 <= after < before + 4000 + 100
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(distinct conversation_id), count(distinct advisor_id) from messages"
            " where provider_sid like 'SMBULK%%'"
        ).fetchone()
    assert row and row[0] >= 90 and row[1] >= 1


def test_bench_code_path_produces_numbers(
    pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_admin_url)  # a fresh database on the test server
    output = tmp_path / "BENCHMARKS.md"
    report = bench.run(bench.TINY, output)
    for table in ("overhead", "baseline"):
        rows = report[table]
        assert len(rows) == len(bench.TINY.rates) + 1  # each rate, then saturation
        for row in rows:
            assert row["messages"] > 0 and row["errors"] == 0
            assert all(
                math.isfinite(row[k]) for k in ("p50", "p95", "p99", "throughput", "cpu_webhook_ms")
            )
    # Counted at the bridge: ours uses Redis for every message, the baseline never. (Postgres'
    # own counters flush on their own schedule; the tiny run does not wait for them.)
    assert all(row["redis_round_trips"] >= 1 for row in report["overhead"])
    assert all(row["redis_round_trips"] == 0 for row in report["baseline"])
    growth = report["growth"][0]
    assert growth["stored"] >= bench.TINY.sizes[0]
    assert growth["capacity"][1] > 0 and math.isfinite(growth["list_p95"])
    assert report["profile"][0][0] == "whole handle_inbound" and report["profile"][0][1] > 0
    # ingest + commit before the send, results + pending after; admission, lock, unlock.
    assert report["counted"]["pg"] == 4 and report["counted"]["redis"] == 3
    knowledge = report["knowledge"]
    assert (
        0 < knowledge["recall_at_4"] <= 1 and knowledge["passages"] == bench.TINY.knowledge_passages
    )
    text = output.read_text()
    assert "## 1. Overhead per inbound message" in text and "## Reading" in text
    assert "## 6. Knowledge retrieval" in text and "recall@4" in text
