"""`make bench`'s code path on a tiny size, so the benchmark cannot rot: it must produce every
number of the report (how fast they are is the benchmark's business, not the test's)."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest

from devstack import bench, cost_bench
from devstack.measuring import quiet_collector
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
    # receive + commit before the send, results + finish after; admission (both limits).
    assert report["counted"]["pg"] == 4 and report["counted"]["redis"] == 1
    knowledge = report["knowledge"]
    assert (
        0 < knowledge["recall_at_4"] <= 1 and knowledge["passages"] == bench.TINY.knowledge_passages
    )
    # Sections 7-10: every CPU row measured its messages; paused messages got no reply; the
    # callbacks row received Twilio's three callbacks per reply; every question was answered.
    cpu = {row["path"]: row for row in report["cpu"]}
    assert all(
        row["messages"] == bench.TINY.cpu_messages and row["errors"] == 0 for row in cpu.values()
    )
    assert all(row["cpu_ms_per_message"] > 0 for row in cpu.values())
    assert cpu["stored only, AI paused (bench settings)"]["replies"] == 0
    # The floor: the bare answer sends nothing; the SDK calls' row sends every message's reply.
    twiml_only, sdk_calls = (cpu[path] for path in cost_bench.FLOOR_ROWS)
    assert twiml_only["replies"] == 0 and sdk_calls["replies"] == sdk_calls["messages"]
    with_callbacks = cpu["AI-answered, dev defaults, with delivery callbacks"]
    assert with_callbacks["callbacks"] == 3 * with_callbacks["replies"] > 0
    assert all(row["replied"] == row["questions"] > 0 for row in report["ttr"])
    tokens = report["tokens"]
    assert tokens["turns"] >= 10 and 0 < tokens["prefix_share_from_turn_3"] <= 1
    assert 0 <= tokens["cached_share"] < 1
    assert 0 < tokens["lowest_prefix_tokens"] < tokens["lowest_tokens"]
    text = output.read_text()
    assert "## 1. Overhead per inbound message" in text and "## Reading" in text
    assert "## 10. Model input per reply" in text
    assert "## 6. Knowledge retrieval" in text and "recall@4" in text
    assert "of which the floor" in text


def test_the_burst_replay_follows_the_webhooks_rules() -> None:
    from devstack.cost_bench import replay

    def wait_all(text: str) -> float:
        return 1.5

    def no_wait(text: str) -> float:
        return 0.0

    burst = [(0.0, "hola"), (1.0, "una pregunta"), (1.0, "¿precio?")]
    assert replay(burst, wait_all, redo=False) == (1, 1.5, 1)  # each superseded in time
    spread = [(0.0, "hola"), (2.0, "¿precio?")]
    assert replay(spread, wait_all, redo=False)[0] == 2  # the gap outlasted the wait
    # Without a wait the first is answered at once; what arrives while the model works is
    # answered by the holder in one turn after it...
    quick = [(0.0, "hola"), (0.3, "una pregunta"), (0.3, "¿precio?")]
    replies, wait, calls = replay(quick, no_wait, redo=False)
    assert (replies, calls) == (2, 2) and abs(wait - 0.2) < 1e-9
    # ...unless the first reply is refused for missing them: one reply, two model calls.
    replies, wait, calls = replay(quick, no_wait, redo=True)
    assert (replies, calls) == (1, 2) and abs(wait - 0.8 + 0.6) < 1e-9


def test_cached_tokens_follow_the_providers_rules() -> None:
    from devstack.cost_bench import cached_tokens

    assert cached_tokens(1500, 1400, 1450) == 1280  # the shared prefix, in whole 128-token steps
    assert cached_tokens(1500, 1400, 1100) == 1024  # no more than the previous request held
    assert cached_tokens(1000, 990, 995) == 0  # too short to be cached at all
    assert cached_tokens(1500, 1400, 1000) == 0  # the previous request was never cached
    assert cached_tokens(1500, 1000, 1450) == 0  # shares less than the smallest cacheable prefix


def test_the_floor_reading_splits_each_target_row_into_floor_and_ours() -> None:
    rows = [
        {"path": "AI-answered (bench settings)", "cpu_ms_per_message": 7.0},
        {"path": "stored only, AI paused (bench settings)", "cpu_ms_per_message": 2.0},
        {"path": cost_bench.FLOOR_ROWS[0], "cpu_ms_per_message": 1.2},
        {"path": cost_bench.FLOOR_ROWS[1], "cpu_ms_per_message": 5.5},
    ]
    ai, stored = cost_bench.floor_reading(rows)[-2:]
    assert "7.00 ms, of which the floor 5.50 ms and ours 1.50 ms (21%)" in ai
    assert "the floor alone is 1.50 ms above the target" in ai
    assert "ours 0.80 ms (40%)" in stored and "0.30 ms are left for ours under the target" in stored
    assert cost_bench.floor_reading(rows[:2]) == []  # a run without the floor rows says nothing


def test_the_cpu_section_states_this_runs_speed_against_the_before_run() -> None:
    from devstack.cost_bench import BASELINE_YARDSTICK_MS, _yardstick

    report = {"baseline": [{"rate": 10, "cpu_webhook_ms": 1.0},
                           {"rate": 50, "cpu_webhook_ms": 2 * BASELINE_YARDSTICK_MS}]}  # fmt: skip
    text = " ".join(_yardstick(report))
    assert f"{2 * BASELINE_YARDSTICK_MS:.2f} ms" in text and "2.00 times as much" in text
    assert _yardstick({"baseline": [{"rate": 10, "cpu_webhook_ms": 1.0}]}) == []


def test_quiet_collector_takes_what_is_alive_out_of_the_collectors_walk() -> None:
    """What the stand-ins recorded before a timed run is no longer walked by a collection."""
    records = [{"sid": f"SM{n}", "media": []} for n in range(1000)]
    assert gc.is_tracked(records) and any(o is records for o in gc.get_objects())
    frozen_before = gc.get_freeze_count()
    try:
        quiet_collector()
        assert gc.get_freeze_count() >= frozen_before + len(records)
        assert not any(o is records for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_the_trim_reading_states_what_80_percent_would_need() -> None:
    text = " ".join(cost_bench.trim_reading({"lowest_tokens": 900, "lowest_prefix_tokens": 600}))
    assert "600 tokens repeated" in text and "300 did not" in text and "about 150 tokens" in text
    assert cost_bench.trim_reading({}) == []
