"""Upstash Redis facade: seen sids, routing cache, burst markers, locks and rate limits.

Redis is a fast path, never the ground truth: every call is bounded by a timeout and, when
Upstash is unavailable (a transport error, a non-JSON answer from a proxy, or Upstash refusing
the call: quota, auth), fails open: it returns the "unknown" value and logs a
`metric=redis_fail_open` line, so the webhook carries on relying on Postgres' constraints. Any
other exception (a bug, or an SDK whose protocol changed) propagates: it must never silently
switch off dedup and rate limits. A sid is marked seen only after Postgres stored it, so a
request that failed before storing is stored when Twilio redelivers it.

Two private parts of the SDKs are used, both pinned in pyproject.toml and pinned by contract
tests (tests/contracts): the Redis client's httpx client (the SDK has no timeout setting and
waits for ever), and the rate limiter's one-command `_limit` generator (so the limits ride in
the same pipeline as the dedup check: one round trip instead of three).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
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

# Set the key to ARGV[1] only if it sorts after the current value: the newest message wins,
# whatever order the writers arrive in.
_SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if (not current) or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ARGV[1]
end
return current
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _raise_for_refusal(response: httpx.Response) -> None:
    if response.status_code in (401, 403, 429) or response.status_code >= 500:
        response.raise_for_status()


@dataclass(frozen=True)
class Admission:
    """First contact with a message: is its sid already stored (None: Redis down), and is each
    rate limit ok."""

    seen: bool | None
    allowed: tuple[bool, ...]


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

    def admit(self, seen_key: str, limits: list[tuple[str, int, str]]) -> Admission:
        """Is the sid known as stored, and the rate limits (prefix, per_minute, identifier), in
        one round trip. Nothing is claimed here: see `remember`.

        upstash-ratelimit computes a limit with a single command (its `_limit` generator
        yields the command, then turns the result into a Response); batching those commands
        with the claim in one pipeline keeps the limiter's own algorithm and saves round trips.
        """
        generators: list[Any] = [
            self._limiter(prefix, n)._limiter._limit(f"{prefix}:{identifier}")  # type: ignore[attr-defined]
            for prefix, n, identifier in limits
        ]

        def run() -> Admission:
            pipeline = self.client.pipeline()
            pipeline.exists(seen_key)
            for generator in generators:
                command, args = next(generator)
                getattr(pipeline, command)(*args)
            results = pipeline.exec()
            allowed = tuple(
                bool(g.send(r).allowed) for g, r in zip(generators, results[1:], strict=True)
            )
            return Admission(seen=bool(results[0]), allowed=allowed)

        return self._safe("admit", run, Admission(None, tuple(True for _ in limits)))

    def remember(self, seen_key: str, ttl_seconds: int) -> None:
        """Mark a sid stored (call only once Postgres has it)."""
        self.set(seen_key, "1", ttl_seconds)

    def get(self, key: str) -> str | None:
        return self._safe("get", lambda: self.client.get(key), None)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        self._safe("set", lambda: self.client.set(key, value, ex=ttl_seconds), None)

    def set_if_newer(self, key: str, value: str, ttl_seconds: int) -> str | None:
        """Keep the larger of the stored value and `value`; return what is stored (None: down)."""
        result: Any = self._safe(
            "set_if_newer",
            lambda: self.client.eval(_SET_IF_NEWER, [key], [value, str(ttl_seconds)]),
            None,
        )
        return None if result is None else str(result)

    def acquire_lock(
        self,
        key: str,
        ttl_seconds: float,
        remember: tuple[str, int] | None = None,
        newest: tuple[str, str, int] | None = None,
    ) -> str | bool | None:
        """A token if acquired, False if someone else holds it, None if Redis is down.
        `remember` (seen key, ttl) marks a stored sid and `newest` (key, value, ttl) does what
        `set_if_newer` does, in the same round trip."""
        token = uuid.uuid4().hex

        def run() -> Any:
            pipeline = self.client.pipeline()
            if remember:
                pipeline.set(remember[0], "1", ex=remember[1])
            if newest:
                pipeline.eval(_SET_IF_NEWER, [newest[0]], [newest[1], str(newest[2])])
            pipeline.set(key, token, nx=True, px=int(ttl_seconds * 1000))
            return pipeline.exec()[-1]

        acquired = self._safe("lock", run, None)
        if acquired is None:
            return None
        return token if acquired else False

    def release_lock(self, key: str, token: str) -> None:
        self._safe("unlock", lambda: self.client.eval(_RELEASE_LOCK, [key], [token]), None)

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
