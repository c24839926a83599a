"""`make dev`: run the whole system locally until Ctrl-C.

Ports come from DEV_<NAME>_PORT (WEBHOOK, SEND, CLEANUP, TWILIO, OPENAI, UPSTASH, CONSOLE,
SUPABASE); state lives
in DEV_DIR (default .dev/): the embedded Postgres and Redis data, function logs, and `env`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.stack import PortInUse, Ports, Stack


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    dev_dir = Path(os.environ.get("DEV_DIR", ".dev")).resolve()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(
        "starting the local stack (Postgres, Redis, Twilio emulator, model, functions)...",
        flush=True,
    )
    try:
        with Stack(dev_dir, Ports.from_env()) as stack:
            env = stack.env
            if stack.offline_model:
                print("model: offline responder (set OPENAI_API_KEY to use OpenAI)", flush=True)
            print(f"settings written to {dev_dir / 'env'}; function logs in {dev_dir / 'logs'}")
            print(f"database: {env['DATABASE_ADMIN_URL']}")
            print(
                f"ready webhook={env['WEBHOOK_URL']} send={env['SEND_URL']} cleanup={env['CLEANUP_URL']}"
                f" twilio={env['TWILIO_EMULATOR_URL']} upstash={env['UPSTASH_REDIS_REST_URL']}"
                f" supabase={env['SUPABASE_URL']} console={env['CONSOLE_URL']}",
                flush=True,
            )
            print(
                f"advisor console: {env['CONSOLE_URL']} (maria@demo.local, carlos@demo.local or"
                " admin@demo.local; password dev-password)",
                flush=True,
            )
            print("try it: make demo   (Ctrl-C stops everything)", flush=True)
            while not stop.wait(0.5):
                for name, process in stack.processes.items():
                    if process.poll() is not None:
                        print(
                            f"function {name} exited ({process.returncode}); see {dev_dir}/logs/{name}.log"
                        )
                        return 1
    except PortInUse as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
