"""The knowledge section of `make bench`, on a small size, so it cannot rot: every figure is
produced, and the fixture's labels all name FAQ entries (how good the figures are is the
benchmark's business)."""

from __future__ import annotations

import math

from devstack import knowledge_bench
from devstack.knowledge_fixture import FAQ, QUESTIONS
from tests.conftest import DatabaseUrls


def test_the_fixture_is_consistent() -> None:
    keys = [key for key, _, _ in FAQ]
    assert len(keys) == len(set(keys)) >= 40 and len(QUESTIONS) >= 80
    assert {key for _, key in QUESTIONS} <= set(keys)


def test_retrieval_figures_are_produced(isolated_database: DatabaseUrls) -> None:
    quality = knowledge_bench.retrieval_quality(isolated_database.owner_url)
    assert quality["questions"] == len(QUESTIONS)
    assert 0 < quality["recall_at_4"] <= 1 and 0 < quality["mrr"] <= quality["recall_at_4"]
    assert 0 <= quality["unanswerable_empty"] <= 1
    print(quality)
    latency = knowledge_bench.ingest_latency(isolated_database.owner_url, passages=200, calls=20)
    assert all(math.isfinite(latency[k]) and latency[k] > 0 for k in ("without_p95", "with_p95"))
