"""Which advisor owns a Twilio number: in-process TTL cache, then Redis, then Postgres.

Both caches keep an answer (including "nobody") for `ttl` seconds, so a deactivated advisor or
a changed number is seen everywhere within at most twice that (in-process + Redis layers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.db import Database
from shared.upstash import Upstash


@dataclass(frozen=True)
class Advisor:
    id: str
    tenant_id: str
    name: str
    twilio_phone_number: str
    phone_number: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


class Router:
    def __init__(
        self,
        db: Database,
        upstash: Upstash | None,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.upstash = upstash
        self.ttl = ttl_seconds
        self.clock = clock  # the in-process layer's time source (tests move it)
        self._cache: dict[str, tuple[float, Advisor | None]] = {}

    def advisor_for(self, number: str) -> Advisor | None:
        now = self.clock()
        cached = self._cache.get(number)
        if cached and cached[0] > now:
            return cached[1]
        hit, advisor = self._from_redis(number)
        if not hit:
            row = self.db.value("select public.route_advisor(%s)", (number,))
            advisor = Advisor(**row) if row else None
            if self.upstash and self.ttl > 0:
                payload = json.dumps(asdict(advisor) if advisor else None)
                self.upstash.set(_key(number), payload, max(1, int(self.ttl)))
        if self.ttl > 0:
            self._cache[number] = (now + self.ttl, advisor)
        return advisor

    def _from_redis(self, number: str) -> tuple[bool, Advisor | None]:
        if not self.upstash or self.ttl <= 0:
            return False, None
        raw = self.upstash.get(_key(number))
        if raw is None:
            return False, None
        data = json.loads(raw)
        return True, Advisor(**data) if data else None


def _key(number: str) -> str:
    return f"route:{number}"
