"""The Upstash facade fails open on transport errors: Postgres stays the ground truth."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from devstack.upstash_bridge import UpstashBridge
from shared.upstash import Admission, Upstash
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
    broken.remember("seen:x", 60)
    assert broken.admit("seen:y", [("rl:c", 1, "a"), ("rl:a", 1, "b")]) == Admission(
        None, (True, True)
    )
    assert broken.get("k") is None
    broken.set("k", "v", 10)
    assert broken.set_if_newer("k", "v", 10) is None
    assert broken.acquire_lock("lock:k", 1) is None
    broken.release_lock("lock:k", "token")
    assert broken.allow("rl:send", 1, "advisor") is True
    assert broken.calls == 8  # each one tried Redis once


@pytest.fixture
def upstash(upstash_bridge: UpstashBridge) -> Iterator[Upstash]:
    client = Upstash(upstash_bridge.url, UPSTASH_TOKEN, timeout=5)
    yield client
    client.close()


def test_a_sid_is_seen_only_once_remembered(upstash: Upstash) -> None:
    key = f"seen:{uuid.uuid4().hex}"
    assert upstash.admit(key, []).seen is False
    assert upstash.admit(key, []).seen is False  # asking claims nothing
    upstash.remember(key, 60)
    assert upstash.admit(key, []).seen is True
    other = f"seen:{uuid.uuid4().hex}"
    assert isinstance(upstash.acquire_lock("lock:" + other, 5, remember=(other, 60)), str)
    assert upstash.admit(other, []).seen is True  # remembered with the lock, one round trip


def test_lock_semantics(upstash: Upstash) -> None:
    key = f"lock:{uuid.uuid4().hex}"
    token = upstash.acquire_lock("lock:" + key, 5)
    assert isinstance(token, str)
    assert upstash.acquire_lock("lock:" + key, 5) is False
    upstash.release_lock("lock:" + key, "someone else's token")
    assert upstash.acquire_lock("lock:" + key, 5) is False
    upstash.release_lock("lock:" + key, token)
    assert isinstance(upstash.acquire_lock("lock:" + key, 5), str)


def test_the_lock_carries_the_newest_mark(upstash: Upstash) -> None:
    key, mark = f"lock:{uuid.uuid4().hex}", f"latest:{uuid.uuid4().hex}"
    upstash.set_if_newer(mark, "0002", 60)
    upstash.release_lock(key, str(upstash.acquire_lock(key, 5, newest=(mark, "0001", 60))))
    assert upstash.get(mark) == "0002"  # an older message does not take the mark
    assert isinstance(upstash.acquire_lock(key, 5, newest=(mark, "0003", 60)), str)
    assert upstash.get(mark) == "0003"


def test_set_if_newer_keeps_the_largest(upstash: Upstash) -> None:
    key = f"latest:{uuid.uuid4().hex}"
    assert upstash.set_if_newer(key, "0002:b", 60) == "0002:b"
    assert upstash.set_if_newer(key, "0001:a", 60) == "0002:b"
    assert upstash.set_if_newer(key, "0003:c", 60) == "0003:c"


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
    """Failing open on everything would let an SDK update silently switch off dedup and every
    rate limit: only Upstash being unavailable fails open."""

    class ChangedLimiter:  # an SDK release without the private generator we drive
        pass

    monkeypatch.setattr(upstash, "_limiter", lambda prefix, n: ChangedLimiter())
    with pytest.raises(AttributeError):
        upstash.admit("seen:z", [("rl:c", 1, "a")])
    monkeypatch.setattr(upstash.client, "get", lambda key: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        upstash.get("k")
    assert upstash.failed_open == 0
