"""The redelivery run's code path, small: every sid stored once, every message answered at
most once, nothing left for the sweep (`python -m devstack.redelivery` runs the full size)."""

from __future__ import annotations

import pytest

from devstack import redelivery


def test_redelivered_messages_across_two_instances(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_admin_url)  # a fresh database on the test server
    report = redelivery.run(messages=40, redeliver=0.5, processes=2)
    assert report["redelivered"] > 0 and report["http"] == {"200": report["deliveries"]}
    assert report["live"] == {
        "sids_stored": 40, "max_rows_per_sid": 1, "max_replies_per_message": 1, "unhandled": 0,
    }  # fmt: skip
    assert report["sweep"]["turns_answered"] == 0
