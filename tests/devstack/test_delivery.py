"""The bad-Twilio-day run's code path, small (`python -m devstack.delivery` runs 1,000): with
sends failing at random, accepted sends answered too late and status callbacks lost, every
reply ends somewhere and no customer gets one twice."""

from __future__ import annotations

import pytest

from devstack import delivery


def test_no_customer_gets_a_reply_twice_on_a_bad_twilio_day(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_admin_url)  # a fresh database on the test server
    report = delivery.run(messages=30, failure_rate=0.5, cleanup_runs=2, callback_loss=0.5)
    assert report["http"] == {"200": 30}
    assert sum(report["ended"].values()) == 30
    assert report["sent_twice"] == 0
    assert report["ended"]["delivered"] <= report["twilio_sends_accepted"]
    assert sum(run["resent"] + run["already_sent"] for run in report["cleanup_runs"]) > 0
