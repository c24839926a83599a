"""`make dev` as a user runs it: the whole stack in a subprocess, a signed message in, the AI
reply out through the Twilio emulator, statuses back to `read`, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import requests

from devstack import functions, postgres
from devstack.simulate import send_inbound
from devstack.stack import read_env
from tests.conftest import ROOT, eventually


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process' output, line by line; the pipe is closed when the process ends it."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout
        with process.stdout:
            for line in process.stdout:
                lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], word: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if word in line:
            return line
    raise AssertionError(f"no {word!r} within {timeout}s; output:\n{''.join(seen)}")


@pytest.fixture
def stack_env(pg_admin_url: str, tmp_path: Path) -> Any:
    ports = {f"DEV_{name}_PORT": str(functions.free_port())
             for name in ("WEBHOOK", "SEND", "CLEANUP", "TWILIO", "OPENAI", "UPSTASH", "CONSOLE", "SUPABASE")}  # fmt: skip
    with postgres.fresh_database(pg_admin_url, prefix="stack") as database_url:
        env = {
            **os.environ,
            **ports,
            "DEV_DIR": str(tmp_path / "dev"),
            "DATABASE_URL": database_url,
        }
        env.pop("OPENAI_API_KEY", None)
        yield env


def test_make_dev_runs_the_system_and_stops_on_ctrl_c(stack_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack"], cwd=ROOT, env=stack_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    children: list[psutil.Process] = []
    try:
        lines = _lines(process)
        ready = _wait_for(lines, "ready", timeout=60)
        assert "webhook=http://127.0.0.1:" in ready
        children = psutil.Process(process.pid).children(recursive=True)
        env = read_env(Path(stack_env["DEV_DIR"]))
        for key in ("DATABASE_URL", "WEBHOOK_URL", "SEND_URL", "CLEANUP_URL", "TWILIO_EMULATOR_URL",
                    "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "UPSTASH_REDIS_REST_URL",
                    "UPSTASH_REDIS_REST_TOKEN", "SUPABASE_JWT_SECRET", "CLEANUP_TOKEN",
                    "CONSOLE_URL", "SUPABASE_URL", "SUPABASE_ANON_KEY"):  # fmt: skip
            assert env.get(key), key

        customer = "+573009998877"
        response, _ = send_inbound(env, customer, "+14155238886", "Hola, ¿cuál es el horario?")
        assert response.status_code == 200
        sent = requests.get(env["TWILIO_EMULATOR_URL"] + "/messages", timeout=5).json()
        replies = [m for m in sent if m["to"] == f"whatsapp:{customer}"]
        assert len(replies) == 1 and "sábados" in replies[0]["body"]

        def status() -> str | None:
            with psycopg.connect(env["DATABASE_ADMIN_URL"]) as conn:
                row = conn.execute(
                    "select status from messages where provider_sid = %s", (replies[0]["sid"],)
                ).fetchone()
            return row[0] if row else None

        eventually(lambda: status() == "read", what="the reply's status callbacks")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    assert children, "the stack started no child processes"
    _, alive = psutil.wait_procs(children, timeout=15)  # children exit after their parent
    assert [c for c in alive if c.status() != psutil.STATUS_ZOMBIE] == []


def test_taken_port_is_refused_clearly(stack_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {**stack_env, "DEV_WEBHOOK_PORT": str(busy.getsockname()[1])}
        result = subprocess.run(
            [sys.executable, "-m", "devstack"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "already in use: webhook=" in result.stderr
