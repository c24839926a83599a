"""The cleanup run's loop and budget, without a database: items are claimed one at a time
while one more fits, and recovery never takes the whole budget."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from shared import cleanup
from shared.services import Deadline


def queue(items: list[str]) -> Any:
    claimed: list[str] = []

    def claim() -> list[dict[str, Any]]:
        if not items:
            return []
        claimed.append(items.pop(0))
        return [{"id": claimed[-1]}]

    return claim, claimed


def test_drain_claims_one_item_at_a_time_until_none_is_left() -> None:
    claim, claimed = queue(["a", "b", "c"])
    handled: list[str] = []
    counts: Counter[str] = Counter()

    def handle(item: dict[str, Any]) -> str:
        assert claimed[-1] == item["id"]  # claimed just before it is handled
        handled.append(item["id"])
        return "done"

    cleanup._drain(Deadline(60), 1, claim, handle, counts)
    assert handled == ["a", "b", "c"] and counts == {"done": 3}


def test_drain_claims_nothing_an_item_could_not_finish_in() -> None:
    claim, claimed = queue(["a"])
    cleanup._drain(Deadline(5), 13, claim, lambda item: "done", Counter())
    assert claimed == []


def test_recovery_gets_a_share_of_the_budget_and_retention_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, float] = {}

    def part(name: str) -> Any:
        def run(services: Any, deadline: Deadline) -> dict[str, int]:
            seen[name] = deadline.remaining()
            return {}

        return run

    for name in ("_recovery", "_expire_handoffs", "_due_alerts", "_retention"):
        monkeypatch.setattr(cleanup, name, part(name))

    class Settings:
        cleanup_budget_seconds = 240.0

    class Services:
        settings = Settings()

    report, all_failed = cleanup.run_cleanup(Services())  # type: ignore[arg-type]
    assert not all_failed
    assert set(report) == {"dry_run", "recovery", "handoff_expiry", "advisor_alerts", "retention"}
    assert seen["_recovery"] <= 240 * cleanup.RECOVERY_SHARE
    assert seen["_retention"] > 240 * cleanup.RECOVERY_SHARE
