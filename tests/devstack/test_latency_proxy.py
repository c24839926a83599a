"""The benchmarks' latency proxy: bytes pass whole and in order, and it is a delay line (it
keeps reading while what it read waits out its delay), so a reply in many chunks pays the
delay once, not once per chunk."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from devstack.latency_proxy import LatencyProxy

PAYLOAD = bytes(range(256)) * (128 * 1024)  # 32 MiB: more than the kernel buffers hold


@pytest.fixture
def upstream() -> Iterator[tuple[int, Upstream]]:
    server = socket.create_server(("127.0.0.1", 0))
    accepted = Upstream()
    threading.Thread(target=accepted.accept, args=(server,), daemon=True).start()
    yield server.getsockname()[1], accepted
    if accepted.conn is not None:
        accepted.conn.close()
    server.close()


class Upstream:
    """The server side of the one connection the proxy opens."""

    def __init__(self) -> None:
        self.conn: socket.socket | None = None
        self.ready = threading.Event()

    def accept(self, server: socket.socket) -> None:
        self.conn, _ = server.accept()
        self.ready.set()

    def connection(self) -> socket.socket:
        assert self.ready.wait(30) and self.conn is not None
        return self.conn


def _receive(conn: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = conn.recv(1 << 20)
        assert chunk, "connection closed early"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def test_bytes_pass_whole_and_in_order_both_ways(
    upstream: tuple[int, Upstream],
) -> None:
    port, accepted = upstream
    proxy = LatencyProxy(0.001, "127.0.0.1", port).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            client.sendall(b"query")
            server_side = accepted.connection()
            assert _receive(server_side, 5) == b"query"
            reply = PAYLOAD[: 3 * 65536 + 17]  # several reads' worth
            server_side.sendall(reply)
            assert _receive(client, len(reply)) == reply
    finally:
        proxy.stop()


def test_it_reads_on_while_a_chunk_waits_out_its_delay(
    upstream: tuple[int, Upstream],
) -> None:
    """Upstream can write far more than the socket buffers hold before the client has seen a
    single byte: the proxy took it all while the first chunk was still waiting."""
    port, accepted = upstream
    proxy = LatencyProxy(3600.0, "127.0.0.1", port).start()
    written = threading.Event()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            server_side = accepted.connection()

            def write_all() -> None:
                server_side.sendall(PAYLOAD)
                written.set()

            threading.Thread(target=write_all, daemon=True).start()
            assert written.wait(60), "the proxy stopped reading while a chunk waited"
            client.setblocking(False)
            with pytest.raises(BlockingIOError):
                client.recv(1)  # nothing delivered yet: every chunk waits its hour
    finally:
        proxy.stop()
