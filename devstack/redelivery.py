"""Redeliveries across instances: N messages, a share of them delivered again (as Twilio does
after a timeout or a 5xx), spread over several webhook processes sharing one Postgres and one
Redis; then one cleanup run. Prints what the customers saw.

    python -m devstack.redelivery [--messages 300] [--redeliver 0.3] [--processes 4]

Counts: rows stored per sid, AI replies per inbound message, turns left for the sweep (not
answered live), and what the sweep did with them.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import requests

from devstack import functions
from devstack.bench import ADVISOR_NUMBERS
from devstack.simulate import inbound_form, post_signed
from devstack.stack import Ports, Stack


def run(messages: int, redeliver: float, processes: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="redelivery-") as tmp:
        ports = Ports.free()
        overrides = {"BURST_WAIT_SECONDS": "0", "RECOVERY_MIN_AGE_SECONDS": "1"}
        with Stack(Path(tmp), ports, overrides=overrides, fresh_database=True) as stack:
            extra = []
            for n in range(processes - 1):
                port = functions.free_port()
                log = Path(tmp) / "logs" / f"webhook-{n + 2}.log"
                extra.append((port, functions.serve("webhook", port, stack.env, log_path=log)))
            try:
                for port, process in extra:
                    functions.wait_until_listening(port, process)
                urls = [stack.env["WEBHOOK_URL"]] + [f"http://127.0.0.1:{p}" for p, _ in extra]
                return _load(stack, urls, messages, redeliver, rng)
            finally:
                for _, process in extra:
                    functions.stop(process)


def _load(
    stack: Stack, urls: list[str], messages: int, redeliver: float, rng: random.Random
) -> dict[str, Any]:
    env, token = stack.env, stack.env["TWILIO_AUTH_TOKEN"]
    customers = [f"+57310{rng.randrange(10**6, 10**7)}" for _ in range(messages // 5)]
    forms = [
        inbound_form(rng.choice(customers), rng.choice(ADVISOR_NUMBERS), f"mensaje {n}",
                     env["TWILIO_ACCOUNT_SID"])
        for n in range(messages)
    ]  # fmt: skip
    deliveries = [(form, rng.choice(urls)) for form in forms]
    deliveries += [(form, rng.choice(urls)) for form in forms if rng.random() < redeliver]
    rng.shuffle(deliveries)

    def deliver(item: tuple[dict[str, str], str]) -> int:
        form, url = item
        # Each process believes it is the public URL Twilio signed.
        return post_signed(url, token, form, signed_url=env["WEBHOOK_PUBLIC_URL"]).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(deliver, deliveries))
    sids = [form["MessageSid"] for form in forms]
    with psycopg.connect(env["DATABASE_ADMIN_URL"]) as conn:
        before_sweep = _counts(conn, sids)
        sweep = requests.post(
            env["CLEANUP_URL"], headers={"Authorization": f"Bearer {env['CLEANUP_TOKEN']}"},
            timeout=300,
        ).json()  # fmt: skip
        after_sweep = _counts(conn, sids)
    return {
        "deliveries": len(deliveries),
        "redelivered": len(deliveries) - len(forms),
        "http": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "live": before_sweep,
        "after_sweep": after_sweep,
        "sweep": sweep["recovery"],
    }


def _counts(conn: psycopg.Connection[Any], sids: list[str]) -> dict[str, Any]:
    row = conn.execute(
        """
        with inbound as (
          select m.id, m.provider_sid, m.handled_at from messages m
          where m.provider_sid = any(%(sids)s)
        ),
        runs as (select inbound_message_id, count(*) as n from ai_runs group by 1)
        select
          (select count(distinct provider_sid) from inbound) as sids_stored,
          (select max(c) from (select count(*) as c from inbound group by provider_sid) x)
            as max_rows_per_sid,
          (select coalesce(max(n), 0) from runs where inbound_message_id in (select id from inbound))
            as max_ai_runs_per_message,
          (select count(*) from inbound where handled_at is null) as unhandled
        """,
        {"sids": sids},
    ).fetchone()
    assert row
    return dict(zip(("sids_stored", "max_rows_per_sid", "max_replies_per_message", "unhandled"),
                    row, strict=True))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--redeliver", type=float, default=0.3)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(run(args.messages, args.redeliver, args.processes), indent=2))


if __name__ == "__main__":
    main()
