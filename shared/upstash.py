"""Upstash Redis facade: the routing cache and the rate limits.

Redis is a fast path, never the ground truth: every call is bounded by a timeout and, when
Upstash is unavailable (a transport error, a non-JSON answer from a proxy, or Upstash refusing
the call: quota, auth), fails open: it returns the "unknown" value and logs a
`metric=redis_fail_open` line, so the webhook carries on relying on Postgres' constraints. Any
other exception (a bug, or an SDK whose protocol changed) propagates: it must never silently
switch off the rate limits. Dedup, a conversation's turn and a burst's newest message are
Postgres' (migrations 20261123002200 and before): it holds them in round trips the webhook
makes anyway, at a fraction of an Upstash call's CPU.

Two private parts of the SDKs are used, both pinned in pyproject.toml and pinned by contract
tests (tests/contracts): the Redis client's httpx client (the SDK has no timeout setting and
waits for ever), and the rate limiter's one-command `_limit` generator (so the limits ride in
one pipeline: one round trip instead of two).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from upstash_ratelimit import Ratelimit, SlidingWindow
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from shared.observability import get_logger

log = get_logger(__name__)
T = TypeVar("T")
# What "Upstash is unavailable" looks like; anything else is a bug and propagates.
UNAVAILABLE = (httpx.HTTPError, json.JSONDecodeError, UpstashError)


def _raise_for_refusal(response: httpx.Response) -> None:
    if response.status_code in (401, 403, 429) or response.status_code >= 500:
        response.raise_for_status()


class Upstash:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.client = Redis(
            url=url, token=token, rest_retries=0, allow_telemetry=False, read_your_writes=False
        )
        # The SDK's HTTP client waits forever by default: bound every call. Refusals of the
        # whole request (auth, rate, Upstash's own 5xx) raise here: the SDK would misread a
        # pipeline's error object.
        self.client._http._client = httpx.Client(
            timeout=timeout, event_hooks={"response": [_raise_for_refusal]}
        )
        self._limiters: dict[tuple[str, int], Ratelimit] = {}
        self._lock = threading.Lock()
        self.calls = 0
        self.failed_open = 0

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    def _safe(self, operation: str, call: Callable[[], T], fallback: T) -> T:
        with self._lock:
            self.calls += 1
        try:
            return call()
        except UNAVAILABLE as exc:
            with self._lock:
                self.failed_open += 1
            log.warning(
                "redis unavailable, failing open",
                metric="redis_fail_open",
                operation=operation,
                error=f"{type(exc).__name__}: {exc}"[:200],
            )
            return fallback

    def admit(self, limits: list[tuple[str, int, str]]) -> tuple[bool, ...]:
        """Whether each rate limit (prefix, per_minute, identifier) allows one more message, in
        one round trip (all allowed when Redis is down).

        upstash-ratelimit computes a limit with a single command (its `_limit` generator
        yields the command, then turns the result into a Response); batching those commands
        in one pipeline keeps the limiter's own algorithm and saves round trips.
        """
        if not limits:
            return ()
        generators: list[Any] = [
            self._limiter(prefix, n)._limiter._limit(f"{prefix}:{identifier}")  # type: ignore[attr-defined]
            for prefix, n, identifier in limits
        ]

        def run() -> tuple[bool, ...]:
            pipeline = self.client.pipeline()
            for generator in generators:
                command, args = next(generator)
                getattr(pipeline, command)(*args)
            results = pipeline.exec()
            return tuple(bool(g.send(r).allowed) for g, r in zip(generators, results, strict=True))

        return self._safe("admit", run, tuple(True for _ in limits))

    def get(self, key: str) -> str | None:
        return self._safe("get", lambda: self.client.get(key), None)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        self._safe("set", lambda: self.client.set(key, value, ex=ttl_seconds), None)

    def allow(self, prefix: str, per_minute: int, identifier: str) -> bool:
        """Sliding-window rate limit; True when allowed (also when Redis is down)."""
        limiter = self._limiter(prefix, per_minute)
        return self._safe("ratelimit", lambda: limiter.limit(identifier).allowed, True)

    def _limiter(self, prefix: str, per_minute: int) -> Ratelimit:
        key = (prefix, per_minute)
        if key not in self._limiters:
            self._limiters[key] = Ratelimit(
                redis=self.client,
                limiter=SlidingWindow(max_requests=per_minute, window=60, unit="s"),
                prefix=prefix,
            )
        return self._limiters[key]
