"""A TCP proxy that adds a fixed delay each way, to put a network between the functions and
Postgres or Redis on one machine (benchmarks only). Each request/response round trip through
it costs 2 x delay, as between Cloud Functions and Supabase or Upstash in one region."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import threading
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict


def _serve_in_process(
    delay: float, host: str, port: int, socket_path: str | None, ports: Any
) -> None:
    proxy = LatencyProxy(delay, host, port, Path(socket_path) if socket_path else None).start()
    ports.send(proxy.port)
    threading.Event().wait()


def database_target(database_url: str) -> tuple[str, int, Path | None]:
    """Where a proxy in front of this database connects: host, port, and the Unix socket when
    the host is a socket directory."""
    params = conninfo_to_dict(database_url)
    host, port = str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)
    return host, port, (Path(host) / f".s.PGSQL.{port}" if host.startswith("/") else None)


def start_in_own_process(
    delay: float, host: str = "127.0.0.1", port: int = 0, socket_path: Path | None = None
) -> tuple[int, multiprocessing.process.BaseProcess]:
    """The proxy in a process of its own, so its timers do not queue behind other threads' GIL."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_serve_in_process, args=(delay, host, port, str(socket_path) if socket_path else None, sender),
        daemon=True,
    )  # fmt: skip
    process.start()
    return int(receiver.recv()), process


class LatencyProxy:
    def __init__(self, delay_seconds: float, target_host: str = "127.0.0.1", target_port: int = 0,
                 target_socket: Path | None = None) -> None:  # fmt: skip
        self.delay = delay_seconds
        self.target = (target_host, target_port, target_socket)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LatencyProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)  # connections still open: end them, then close
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        # Closed transports let go of their sockets on the loop's next turn.
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port, socket_path = self.target
        if socket_path:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(str(socket_path))
        else:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A delay line: every chunk is written `delay` after it was read, while the next ones
        are read meanwhile, so a reply that arrives in several chunks still costs one delay
        (sleeping before each write would add a delay per chunk)."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await line.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(65536):
                line.put_nowait((loop.time() + self.delay, data))
            line.put_nowait((loop.time() + self.delay, b""))  # the end, after what came before
            await delivering
        finally:
            delivering.cancel()  # only still running when stopped
            writer.close()
