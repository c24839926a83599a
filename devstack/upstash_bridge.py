"""An HTTP bridge that speaks Upstash's Redis REST protocol in front of a real Redis.

It lets the real `upstash-redis` and `upstash-ratelimit` clients run locally:
- `POST /` with a JSON command array -> `{"result": ...}`, or `{"error": ...}` with 400;
- `POST /pipeline` and `POST /multi-exec` with an array of commands -> one entry per command;
- `Authorization: Bearer <token>`, 401 otherwise;
- `Upstash-Encoding: base64`: every string in a result is base64, except the status "OK".
Upstash accepts the `#!lua flags=allow-key-locking` shebang that stock Redis rejects, so
scripts have their shebang line blanked before they reach Redis.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import redis
from redis.exceptions import ResponseError

from devstack.local_server import LocalServer, Request, Response

_SCRIPT_COMMANDS = {"EVAL", "EVAL_RO"}


def _strip_shebang(command: list[Any]) -> list[Any]:
    name = str(command[0]).upper() if command else ""
    is_load = name == "SCRIPT" and len(command) > 2 and str(command[1]).upper() == "LOAD"
    index = 1 if name in _SCRIPT_COMMANDS else 2 if is_load else None
    if index is not None and len(command) > index:
        script = str(command[index])
        if script.startswith("#!"):
            _, newline, rest = script.partition("\n")
            command = [*command[:index], newline + rest, *command[index + 1 :]]
    return command


def _encode(value: Any, base64_encoding: bool) -> Any:
    if isinstance(value, ResponseError):
        raise value
    if isinstance(value, bytes):
        if value == b"OK":
            return "OK"
        if base64_encoding:
            return base64.b64encode(value).decode()
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_encode(item, base64_encoding) for item in value]
    return value


class UpstashBridge:
    """Serve the Upstash REST protocol on `host:port` (0 picks a free port)."""

    def __init__(
        self, pool: redis.ConnectionPool, token: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.pool = pool
        self.token = token
        self.requests = 0  # HTTP round trips served (benchmarks count them)
        self.server = LocalServer(self._serve, host, port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> UpstashBridge:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def _serve(self, request: Request) -> Response:
        self.requests += 1
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Response(401, {"error": "Unauthorized"})
        try:
            body = request.json()
        except json.JSONDecodeError:
            return Response(400, {"error": "ERR failed to parse command"})
        b64 = request.headers.get("upstash-encoding", "").lower() == "base64"
        status, payload = self.handle(request.path.rstrip("/"), body, b64)
        return Response(status, payload)

    # -- protocol ---------------------------------------------------------------------------
    def handle(self, path: str, body: Any, b64: bool) -> tuple[int, Any]:
        if path == "":
            if not _is_command(body):
                return 400, {"error": "ERR command must be a non-empty array"}
            try:
                return 200, {"result": _encode(self._run([body])[0], b64)}
            except ResponseError as exc:
                return 400, {"error": _redis_error(exc)}
        if path in ("/pipeline", "/multi-exec"):
            if not isinstance(body, list) or not all(_is_command(c) for c in body):
                return 400, {"error": "ERR pipeline must be an array of commands"}
            results = self._run(body, transaction=path == "/multi-exec")
            answer: list[dict[str, Any]] = []
            for result in results:
                try:
                    answer.append({"result": _encode(result, b64)})
                except ResponseError as exc:
                    answer.append({"error": _redis_error(exc)})
            return 200, answer
        return 404, {"error": f"unknown path {path}"}

    def _run(self, commands: list[list[Any]], transaction: bool = False) -> list[Any]:
        conn = self.pool.get_connection()
        try:
            if transaction:
                conn.send_command("MULTI")
                conn.read_response()
                for command in commands:
                    conn.send_command(*_strip_shebang(command))
                    conn.read_response(disable_decoding=True)  # QUEUED (or a queueing error)
                conn.send_command("EXEC")
                executed = conn.read_response(disable_decoding=True)
                return list(executed or [])
            results: list[Any] = []
            for command in commands:
                conn.send_command(*_strip_shebang(command))
                try:
                    results.append(conn.read_response(disable_decoding=True))
                except ResponseError as exc:
                    results.append(exc)
            return results
        finally:
            self.pool.release(conn)


def _is_command(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def _redis_error(exc: ResponseError) -> str:
    """The error line as Redis (and so Upstash) sends it: redis-py drops the generic ERR code."""
    message = str(exc)
    code = message.split(" ", 1)[0]
    return message if code.isupper() and code.isalpha() else f"ERR {message}"
