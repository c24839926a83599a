"""The Upstash facade fails open on transport errors: Postgres stays the ground truth."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from devstack.upstash_bridge import UpstashBridge
from shared.upstash import Upstash
from tests.conftest import UPSTASH_TOKEN


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["unreachable", "wrong token"])
def broken(request: pytest.FixtureRequest, upstash_bridge: UpstashBridge) -> Iterator[Upstash]:
    if request.param == "unreachable":
        upstash = Upstash(f"http://127.0.0.1:{_closed_port()}", UPSTASH_TOKEN, timeout=1)
    else:
        upstash = Upstash(upstash_bridge.url, "not-the-token", timeout=1)
    yield upstash
    upstash.close()


def test_every_call_answers_unknown_instead_of_raising(broken: Upstash) -> None:
    assert broken.admit([("rl:c", 1, "a"), ("rl:a", 1, "b")]) == (True, True)
    assert broken.get("k") is None
    broken.set("k", "v", 10)
    assert broken.allow("rl:send", 1, "advisor") is True
    assert broken.calls == 4  # each one tried Redis once


@pytest.fixture
def upstash(upstash_bridge: UpstashBridge) -> Iterator[Upstash]:
    client = Upstash(upstash_bridge.url, UPSTASH_TOKEN, timeout=5)
    yield client
    client.close()


def test_admission_applies_each_limit_in_one_round_trip(
    upstash: Upstash, upstash_bridge: UpstashBridge
) -> None:
    customer, advisor = uuid.uuid4().hex, uuid.uuid4().hex
    limits = [("rl:c", 2, customer), ("rl:a", 3, advisor)]
    before = upstash_bridge.requests
    assert [upstash.admit(limits) for _ in range(4)] == [
        (True, True), (True, True), (False, True), (False, False),
    ]  # fmt: skip
    assert upstash_bridge.requests - before == 4
    assert upstash.admit([]) == ()  # nothing to ask: no round trip
    assert upstash_bridge.requests - before == 4


def test_failing_open_is_counted_and_logged_as_a_metric(
    broken: Upstash, caplog: pytest.LogCaptureFixture
) -> None:
    assert broken.get("k") is None
    assert broken.failed_open == 1
    [record] = [r for r in caplog.records if r.name == "shared.upstash"]
    assert record.fields["metric"] == "redis_fail_open"  # type: ignore[attr-defined]
    assert record.fields["operation"] == "get"  # type: ignore[attr-defined]


def test_a_bug_or_a_changed_sdk_is_never_taken_for_an_outage(
    upstash: Upstash, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failing open on everything would let an SDK update silently switch off every rate
    limit: only Upstash being unavailable fails open."""

    class ChangedLimiter:  # an SDK release without the private generator we drive
        pass

    monkeypatch.setattr(upstash, "_limiter", lambda prefix, n: ChangedLimiter())
    with pytest.raises(AttributeError):
        upstash.admit([("rl:c", 1, "a")])
    monkeypatch.setattr(upstash.client, "get", lambda key: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        upstash.get("k")
    assert upstash.failed_open == 0
