from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from upstash_ratelimit import Ratelimit, SlidingWindow
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from devstack.upstash_bridge import UpstashBridge
from tests.conftest import UPSTASH_TOKEN


@pytest.fixture
def client(upstash_bridge: UpstashBridge) -> Iterator[Redis]:
    with Redis(url=upstash_bridge.url, token=UPSTASH_TOKEN, rest_retries=0) as redis:
        yield redis


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_set_get_incr_expire(client: Redis) -> None:
    k = key()
    assert client.set(k, "hola ñ")
    assert client.get(k) == "hola ñ"
    assert not client.set(k, "other", nx=True)
    counter = key()
    assert client.incr(counter) == 1
    assert client.incr(counter) == 2
    assert client.expire(counter, 30) is True
    assert 0 < client.ttl(counter) <= 30
    assert client.get(key()) is None


def test_pipeline_and_multi_exec(client: Redis) -> None:
    k = key()
    pipe = client.pipeline()
    pipe.set(k, "1")
    pipe.incr(k)
    pipe.get(k)
    assert pipe.exec() == [True, 2, "2"]
    tx = client.multi()
    tx.incr(k)
    tx.incrby(k, 10)
    assert tx.exec() == [3, 13]


def test_wrong_token_is_401(upstash_bridge: UpstashBridge) -> None:
    response = httpx.post(
        upstash_bridge.url, json=["PING"], headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
    assert "error" in response.json()
    with (
        pytest.raises(UpstashError),
        Redis(url=upstash_bridge.url, token="wrong", rest_retries=0) as wrong,
    ):
        wrong.get("x")


def test_command_error_is_400_with_message(upstash_bridge: UpstashBridge, client: Redis) -> None:
    k = key()
    client.set(k, "text")
    response = httpx.post(
        upstash_bridge.url,
        json=["INCR", k],
        headers={"Authorization": f"Bearer {UPSTASH_TOKEN}"},
    )
    assert response.status_code == 400
    assert "not an integer" in response.json()["error"]


@pytest.mark.usefixtures("rate_clock")
def test_sliding_window_allows_exactly_n(client: Redis) -> None:
    limiter = Ratelimit(
        redis=client, limiter=SlidingWindow(max_requests=5, window=60), prefix=key()
    )
    results = [limiter.limit("customer").allowed for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    # Another identifier has its own budget.
    assert limiter.limit("someone-else").allowed is True
