"""Router's layers: in-process TTL cache, then Redis, then Postgres, each answer kept `ttl`."""

from __future__ import annotations

import json
from typing import Any

from shared.routing import Advisor, Router

ROW: dict[str, Any] = {"id": "a1", "tenant_id": "t1", "name": "Ana", "twilio_phone_number": "+14155238886",
       "phone_number": None, "settings": {}}  # fmt: skip


class FakeDb:
    def __init__(self, row: dict[str, Any] | None) -> None:
        self.row, self.calls = row, 0

    def value(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        self.calls += 1
        return self.row


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.ttls: dict[str, int] = {}
        self.gets = 0

    def get(self, key: str) -> str | None:
        self.gets += 1
        return self.data.get(key)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        self.data[key], self.ttls[key] = value, ttl_seconds


def router(
    row: dict[str, Any] | None, ttl: float = 10
) -> tuple[Router, FakeDb, FakeRedis, list[float]]:
    db, redis, now = FakeDb(row), FakeRedis(), [0.0]
    return Router(db, redis, ttl, clock=lambda: now[0]), db, redis, now  # type: ignore[arg-type]


def test_postgres_answer_is_kept_in_both_layers_for_ttl() -> None:
    r, db, redis, now = router(ROW)
    assert r.advisor_for("+14155238886") == Advisor(**ROW)
    assert db.calls == 1 and redis.ttls == {"route:+14155238886": 10}
    now[0] = 9.9
    assert r.advisor_for("+14155238886") == Advisor(**ROW)
    assert (db.calls, redis.gets) == (1, 1)  # the in-process layer answered


def test_expired_process_layer_asks_redis_before_postgres() -> None:
    r, db, redis, now = router(ROW)
    r.advisor_for("+14155238886")
    redis.data["route:+14155238886"] = json.dumps({**ROW, "name": "Ana (Redis)"})
    now[0] = 10.1
    advisor = r.advisor_for("+14155238886")
    assert advisor and advisor.name == "Ana (Redis)" and db.calls == 1


def test_nobody_is_cached_too() -> None:
    r, db, redis, now = router(None)
    assert r.advisor_for("+1999") is None
    assert redis.data["route:+1999"] == "null"
    assert r.advisor_for("+1999") is None and db.calls == 1
    now[0] = 11
    assert r.advisor_for("+1999") is None and db.calls == 1  # Redis still says nobody


def test_zero_ttl_always_asks_postgres() -> None:
    r, db, redis, _ = router(ROW, ttl=0)
    r.advisor_for("+14155238886")
    r.advisor_for("+14155238886")
    assert db.calls == 2 and redis.data == {} and redis.gets == 0
