"""Run a function the way Cloud Functions does: functions-framework serving its main.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("webhook", "send", "cleanup")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(
    name: str,
    port: int,
    env: dict[str, str],
    source: Path | None = None,
    python: str | None = None,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `functions-framework --target=<name>` on 127.0.0.1:port (gunicorn, as deployed);
    the source file defaults to functions/<name>/main.py."""
    source = source or ROOT / "functions" / name / "main.py"
    interpreter = python or sys.executable
    command = [
        interpreter, "-m", "functions_framework",
        "--target", name, "--source", str(source), "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    if log_path is None:
        return _start(command, source.parent, env, subprocess.DEVNULL)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return _start(command, source.parent, env, log)


def _start(
    command: list[str], cwd: Path, env: dict[str, str], output: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"function on port {port} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def stop(*processes: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop served functions: all are asked at once (gunicorn shuts down gracefully, about a
    second each), then each is waited for, and killed if it will not go."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
