"""The whole system on one machine: Postgres, Redis behind the Upstash bridge, the Twilio
emulator, the model (OpenAI, or the offline responder), and the three functions served by
functions-framework. Used by `make dev`, `make demo`, the stack test and the benchmarks."""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import requests

from devstack import functions, postgres, redis_server
from devstack.console import ConsoleServer, config_js
from devstack.fake_openai import FakeOpenAI
from devstack.migrations import prepare_database
from devstack.supabase_api.server import SupabaseStandIn
from devstack.twilio_emulator import TwilioEmulator
from devstack.upstash_bridge import UpstashBridge

DEV_ACCOUNT_SID = "AC00000000000000000000000000000001"
DEV_AUTH_TOKEN = "dev-twilio-auth-token"
DEV_UPSTASH_TOKEN = "dev-upstash-token"
DEV_JWT_SECRET = "dev-jwt-secret-at-least-32-characters-long"
DEV_CLEANUP_TOKEN = "dev-cleanup-token"
DEV_DB_ROLE = "assistant_fn"
DEV_DB_PASSWORD = "dev-password"


class PortInUse(RuntimeError):
    pass


@dataclass
class Ports:
    webhook: int = 8081
    send: int = 8082
    cleanup: int = 8083
    twilio: int = 8084
    openai: int = 8085
    upstash: int = 8079
    console: int = 8086
    supabase: int = 8087

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody listens on now: for a second stack beside the developer's."""
        return cls(**{name: functions.free_port() for name in cls.__dataclass_fields__})

    @classmethod
    def from_env(cls) -> Ports:
        ports = cls()
        for name in ports.__dataclass_fields__:
            value = os.environ.get(f"DEV_{name.upper()}_PORT")
            if value:
                setattr(ports, name, int(value))
        return ports


@dataclass
class Stack:
    dev_dir: Path
    ports: Ports = field(default_factory=Ports)
    # Extra settings for the functions (e.g. BURST_WAIT_SECONDS=0 for benchmarks).
    overrides: dict[str, str] = field(default_factory=dict)
    fresh_database: bool = False
    # Benchmarks measure our own work: no delivery callbacks flowing back into the webhook.
    twilio_callbacks: bool = True
    env: dict[str, str] = field(default_factory=dict)
    twilio: TwilioEmulator | None = None
    bridge: UpstashBridge | None = None
    model: FakeOpenAI | None = None
    supabase: SupabaseStandIn | None = None
    console: ConsoleServer | None = None
    offline_model: bool = False
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _exit: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._check_ports()
        self.dev_dir.mkdir(parents=True, exist_ok=True)
        (self.dev_dir / "logs").mkdir(exist_ok=True)

        admin_url = self._postgres()
        postgres.ensure_login_role(admin_url, DEV_DB_ROLE, "assistant_functions", DEV_DB_PASSWORD)
        app_url = postgres.with_params(
            self.database_url, user=DEV_DB_ROLE, password=DEV_DB_PASSWORD
        )

        pool = self._exit.enter_context(redis_server.server(self._data_dir("redis")))
        self.bridge = bridge = UpstashBridge(
            pool, DEV_UPSTASH_TOKEN, port=self.ports.upstash
        ).start()
        self._exit.callback(bridge.stop)

        webhook_url = f"http://127.0.0.1:{self.ports.webhook}"
        self.twilio = TwilioEmulator(
            DEV_ACCOUNT_SID,
            DEV_AUTH_TOKEN,
            port=self.ports.twilio,
            callback_statuses=("sent", "delivered", "read") if self.twilio_callbacks else (),
        ).start()
        self._exit.callback(self.twilio.stop)

        openai_key = os.environ.get("OPENAI_API_KEY")
        openai_base = os.environ.get("OPENAI_BASE_URL", "")
        if not openai_key:
            self.offline_model = True
            self.model = FakeOpenAI(port=self.ports.openai).start()
            self._exit.callback(self.model.stop)
            openai_key, openai_base = "sk-offline-dev", self.model.base_url

        self.supabase = self._supabase()
        self.env = {
            "DATABASE_URL": app_url,
            "DATABASE_ADMIN_URL": self.database_url,
            "UPSTASH_REDIS_REST_URL": bridge.url,
            "UPSTASH_REDIS_REST_TOKEN": DEV_UPSTASH_TOKEN,
            "TWILIO_ACCOUNT_SID": DEV_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN,
            "TWILIO_API_BASE_URL": self.twilio.url,
            "TWILIO_EMULATOR_URL": self.twilio.url,
            "WEBHOOK_PUBLIC_URL": webhook_url,
            "WEBHOOK_URL": webhook_url,
            "SEND_URL": f"http://127.0.0.1:{self.ports.send}/messages",
            "CLEANUP_URL": f"http://127.0.0.1:{self.ports.cleanup}",
            "OPENAI_API_KEY": openai_key,
            "OPENAI_BASE_URL": openai_base,
            "SUPABASE_JWT_SECRET": DEV_JWT_SECRET,
            # Media goes to the stand-in's Storage, as it goes to Supabase Storage when deployed.
            "SUPABASE_URL": self.supabase.url,
            "SUPABASE_SERVICE_ROLE_KEY": self.supabase.service_role_key,
            "CLEANUP_TOKEN": DEV_CLEANUP_TOKEN,
            "DASHBOARD_ORIGINS": ",".join(
                f"http://{host}:{port}"
                for port in (3000, self.ports.console)
                for host in ("localhost", "127.0.0.1")
            ),
            "SENTRY_DSN": "",
            **self.overrides,
        }
        for name in functions.FUNCTIONS:
            process = functions.serve(
                name,
                getattr(self.ports, name),
                self.env,
                log_path=self.dev_dir / "logs" / f"{name}.log",
            )
            self.processes[name] = process
        for name, process in self.processes.items():
            functions.wait_until_listening(getattr(self.ports, name), process)
        requests.get(webhook_url + "/health", timeout=5).raise_for_status()
        self._console()
        self._write_env()

    def _supabase(self) -> SupabaseStandIn:
        """The Supabase API stand-in (Auth, Data API, Realtime, Storage) on this database."""
        postgres.set_password(self.database_url, "authenticator", DEV_DB_PASSWORD)
        api_url = postgres.with_params(
            self.database_url, user="authenticator", password=DEV_DB_PASSWORD
        )
        supabase = SupabaseStandIn(
            self.database_url, api_url, DEV_JWT_SECRET, self.dev_dir / "storage",
            port=self.ports.supabase,
        ).start()  # fmt: skip
        self._exit.callback(supabase.stop)
        return supabase

    def _console(self) -> None:
        """The console, configured for the stand-in and the send function."""
        assert self.supabase is not None
        functions_url = f"http://127.0.0.1:{self.ports.send}"
        config = config_js(self.supabase.url, self.supabase.anon_key, functions_url)
        self.console = ConsoleServer(config, port=self.ports.console)
        self.console.start()
        self._exit.callback(self.console.stop)
        self.env |= {
            "CONSOLE_URL": f"http://127.0.0.1:{self.ports.console}",
            "SUPABASE_ANON_KEY": self.supabase.anon_key,
        }

    def _postgres(self) -> str:
        """Start (or reuse) Postgres and prepare the database; return the admin URL."""
        admin_url = self._exit.enter_context(postgres.server(self._data_dir("postgres")))
        if self.fresh_database:
            database = self._exit.enter_context(postgres.fresh_database(admin_url, "dev"))
        elif os.environ.get("DATABASE_URL"):
            database = admin_url
        else:
            database = postgres.ensure_database(admin_url, "whatsapp")
        self.database_url = prepare_database(database, seed=True)
        return admin_url

    def _data_dir(self, name: str) -> Path | None:
        path = self.dev_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _check_ports(self) -> None:
        taken = [
            f"{name}={port}"
            for name, port in vars(self.ports).items()
            if not functions.port_is_free(port)
        ]
        if taken:
            raise PortInUse(
                "port(s) already in use: " + ", ".join(taken)
                + " (stop what uses them, or choose others with DEV_<NAME>_PORT)"
            )  # fmt: skip

    def _write_env(self) -> None:
        lines = [f"{key}={value}" for key, value in sorted(self.env.items())]
        (self.dev_dir / "env").write_text("\n".join(lines) + "\n")

    def stop(self) -> None:
        functions.stop(*self.processes.values())
        self.processes.clear()
        self._exit.close()


def read_env(dev_dir: Path) -> dict[str, str]:
    path = dev_dir / "env"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}
