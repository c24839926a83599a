"""Outbound delivery on a bad Twilio day: N customers each write once, the AI answers each, and
Twilio fails a share of the sends at random (429, 500, or accepts the message but answers after
our client timed out); status callbacks arrive as Twilio sends them; then a few cleanup runs
(Twilio still failing). Between runs, time passes by moving the outbound rows' timestamps an
hour back (past any backoff), not by waiting. Prints where every reply ended and how many
customers got one twice.

    python -m devstack.delivery [--messages 1000] [--failure-rate 0.3] [--cleanup-runs 3]
                                [--callback-loss 0.5]

With --callback-loss, that share of status callbacks never arrives, so the sends Twilio
accepted without our knowing are found only by the sweep's lookup in Twilio's list.

Ended: delivered (sent, delivered or read), accepted by Twilio without a status report yet (a
sid, but its callbacks were lost), failed for good (a final refusal, attempts used up, or
canceled), still pending (not at Twilio; the next run tries again), and sent twice (must be 0).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import requests

from devstack.bench import ADVISOR_NUMBERS
from devstack.simulate import inbound_form, post_signed
from devstack.stack import Ports, Stack
from shared.config import Settings
from shared.whatsapp import RETRYABLE_CODES

TWILIO_TIMEOUT = 1.0
MAX_ATTEMPTS = int(Settings.model_fields["resend_max_attempts"].default)


def run(
    messages: int,
    failure_rate: float,
    cleanup_runs: int,
    callback_loss: float = 0.0,
    seed: int = 11,
    settle_seconds: float = 0.0,
) -> dict[str, Any]:
    """`settle_seconds`: a pause before counting, so the last status callbacks land (only the
    split between delivered and accepted-without-report depends on it)."""
    rng = random.Random(seed)
    overrides = {
        "BURST_WAIT_SECONDS": "0",
        "TWILIO_TIMEOUT_SECONDS": str(TWILIO_TIMEOUT),
        "RATE_LIMIT_ADVISOR_PER_MINUTE": "100000",
    }
    with tempfile.TemporaryDirectory(prefix="delivery-") as tmp:
        ports = Ports.free()
        with Stack(Path(tmp), ports, overrides=overrides, fresh_database=True) as stack:
            assert stack.twilio is not None
            stack.twilio.chaos(
                failure_rate, TWILIO_TIMEOUT * 1.5, seed=seed, callback_loss=callback_loss
            )
            env = stack.env
            customers = [f"+57320{n:07d}" for n in rng.sample(range(10**7), messages)]
            forms = [
                inbound_form(customer, rng.choice(ADVISOR_NUMBERS), "¿tienen envíos?",
                             env["TWILIO_ACCOUNT_SID"])
                for customer in customers
            ]  # fmt: skip

            def deliver(form: dict[str, str]) -> int:
                return post_signed(
                    env["WEBHOOK_URL"], env["TWILIO_AUTH_TOKEN"], form,
                    signed_url=env["WEBHOOK_PUBLIC_URL"],
                ).status_code  # fmt: skip

            with ThreadPoolExecutor(16) as pool:
                http = Counter(pool.map(deliver, forms))
            sweeps = []
            for _ in range(cleanup_runs):
                _an_hour_passes(env["DATABASE_ADMIN_URL"])
                report = requests.post(
                    env["CLEANUP_URL"], headers={"Authorization": f"Bearer {env['CLEANUP_TOKEN']}"},
                    timeout=600,
                ).json()  # fmt: skip
                sweeps.append(report["recovery"])
            time.sleep(settle_seconds)
            with psycopg.connect(env["DATABASE_ADMIN_URL"]) as conn:
                ended = _ended(conn, customers)
            per_customer = Counter(m["to"] for m in stack.twilio.messages)
            return {
                "messages": messages,
                "failure_rate": failure_rate,
                "callback_loss": callback_loss,
                "http": {str(k): v for k, v in sorted(http.items())},
                "twilio_sends_accepted": len(stack.twilio.messages),
                "ended": ended,
                "customers_without_reply": sum(
                    1 for c in customers if per_customer[f"whatsapp:{c}"] == 0
                ),
                "sent_twice": sum(1 for n in per_customer.values() if n > 1),
                "cleanup_runs": sweeps,
            }


def _an_hour_passes(admin_url: str) -> None:
    """Outbound rows look an hour older: past the recovery's minimum age and any backoff."""
    with psycopg.connect(admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute("alter table public.messages disable trigger user")
        conn.execute(
            "update public.messages set updated_at = updated_at - interval '1 hour'"
            " where direction = 'outbound'"
        )
        conn.execute("alter table public.messages enable trigger user")


def _ended(conn: psycopg.Connection[Any], customers: list[str]) -> dict[str, int]:
    rows = conn.execute(
        """
        select m.status, m.error_code, m.attempts, m.provider_sid is not null from messages m
        join conversations c on c.id = m.conversation_id
        where m.direction = 'outbound' and c.customer_phone = any(%s)
        """,
        (customers,),
    ).fetchall()
    ended: Counter[str] = Counter(delivered=0, accepted_no_report=0, failed_for_good=0, pending=0)
    for status, code, attempts, has_sid in rows:
        if status in ("sent", "delivered", "read"):
            ended["delivered"] += 1
        elif has_sid and status in ("queued", "sending"):
            ended["accepted_no_report"] += 1
        elif status in ("queued", "sending") or (
            status == "failed"
            and (code is None or code in RETRYABLE_CODES)
            and attempts < MAX_ATTEMPTS
        ):
            ended["pending"] += 1
        else:
            ended["failed_for_good"] += 1
    return dict(ended)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--failure-rate", type=float, default=0.3)
    parser.add_argument("--cleanup-runs", type=int, default=3)
    parser.add_argument("--callback-loss", type=float, default=0.0)
    args = parser.parse_args()
    report = run(
        args.messages, args.failure_rate, args.cleanup_runs, args.callback_loss, settle_seconds=2
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
