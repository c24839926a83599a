"""`make demo`: customers write to two advisors the way Twilio would, an advisor answers from
the dashboard's send function, and each conversation is printed as a transcript.

Uses the running `make dev` stack (.dev/env) or starts one for the length of the demo.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jwt
import psycopg
import requests
from psycopg.rows import dict_row

from devstack.simulate import send_inbound
from devstack.stack import Ports, Stack, read_env

MARIA = ("+14155238886", "00000000-0000-4000-8000-000000000101")
CARLOS = ("+5742044644", "00000000-0000-4000-8000-000000000102")


def _running(env: dict[str, str]) -> bool:
    try:
        return requests.get(env["WEBHOOK_URL"] + "/health", timeout=2).ok
    except (KeyError, requests.RequestException):
        return False


def session_token(user_id: str, secret: str) -> str:
    """A Supabase-style access token for a seeded advisor login, as the dashboard would hold."""
    now = int(time.time())
    claims = {"sub": user_id, "aud": "authenticated", "role": "authenticated", "iat": now,
              "exp": now + 3600, "session_id": str(uuid.uuid4())}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def play(env: dict[str, str]) -> list[str]:
    """The scripted scenes; returns the customer numbers used."""
    run = uuid.uuid4().hex[:4]
    ana, pedro = f"+57300{int(run, 16) % 10_000_000:07d}", f"+57310{int(run, 16) % 10_000_000:07d}"
    say = print
    say(f"1. {ana} greets María")
    send_inbound(env, ana, MARIA[0], "Hola, buenas tardes")
    say("2. a burst: three quick messages, answered once")
    threads = []
    for i, text in enumerate(("Quería preguntar", "por el precio", "del plan empresarial")):
        threads.append(threading.Thread(target=send_inbound, args=(env, ana, MARIA[0], text)))
        threads[-1].start()
        time.sleep(0.3 * (i < 2))
    for thread in threads:
        thread.join()
    say("3. Twilio delivers one message twice: stored and answered once")
    _, sid = send_inbound(env, ana, MARIA[0], "¿Tienen horario el sábado?")
    send_inbound(env, ana, MARIA[0], "¿Tienen horario el sábado?", message_sid=sid)
    say(f"4. {pedro} asks Carlos for a person: handoff")
    send_inbound(env, pedro, CARLOS[0], "Necesito hablar con un asesor humano, por favor")
    say("5. Carlos answers from the dashboard (send function, his session token)")
    conversation = _conversation_id(env, CARLOS[0], pedro)
    answer = requests.post(
        env["SEND_URL"],
        json={"conversation_id": conversation, "body": "Hola, soy Carlos. ¿En qué te ayudo?"},
        headers={"Authorization": f"Bearer {session_token(CARLOS[1], env['SUPABASE_JWT_SECRET'])}",
                 "Idempotency-Key": f"demo-{run}"},
        timeout=15,
    )  # fmt: skip
    say(f"   send function answered {answer.status_code} {answer.json()}")
    say("6. Carlos opens the conversation: read (blue ticks for the customer)")
    base = env["SEND_URL"].rsplit("/messages", 1)[0]
    read = requests.post(
        f"{base}/conversations/{conversation}/read",
        headers={"Authorization": f"Bearer {session_token(CARLOS[1], env['SUPABASE_JWT_SECRET'])}"},
        timeout=15,
    )
    say(f"   send function answered {read.status_code} {read.json()}")
    return [ana, pedro]


def _conversation_id(env: dict[str, str], advisor_number: str, customer: str) -> str:
    with psycopg.connect(env["DATABASE_ADMIN_URL"]) as conn:
        row = conn.execute(
            "select c.id from conversations c join advisors a on a.id = c.advisor_id"
            " where a.twilio_phone_number = %s and c.customer_phone = %s",
            (advisor_number, customer),
        ).fetchone()
    if row is None:
        raise RuntimeError("conversation not found: was the message accepted?")
    return str(row[0])


def transcripts(env: dict[str, str], customers: list[str]) -> str:
    lines: list[str] = []
    # Messages WhatsApp showed "typing…" and blue ticks for (the emulator lists the calls).
    typing = {
        i["messageId"]
        for i in requests.get(env["TWILIO_EMULATOR_URL"] + "/indicators", timeout=5).json()
    }
    with psycopg.connect(env["DATABASE_ADMIN_URL"], row_factory=dict_row) as conn:
        conversations: list[dict[str, Any]] = conn.execute(
            "select c.id, c.customer_phone, c.ai_attention, c.handoff_reason, c.handoff_summary,"
            " a.name"
            " from conversations c join advisors a on a.id = c.advisor_id"
            " where c.customer_phone = any(%s) order by a.name",
            (customers,),
        ).fetchall()
        for conv in conversations:
            state = "AI on" if conv["ai_attention"] else f"human ({conv['handoff_reason']})"
            lines.append(f"\n== {conv['name']} <-> {conv['customer_phone']}  [{state}]")
            if conv["handoff_summary"]:
                lines.append(f"  summary for the advisor: {conv['handoff_summary']}")
            for m in conn.execute(
                "select author, body, status, error_code, provider_sid from messages"
                " where conversation_id = %s order by created_at",
                (conv["id"],),
            ):
                who = {
                    "customer": "customer",
                    "ai": "assistant",
                    "advisor": "advisor",
                    "system": "system",
                }[m["author"]]
                status = m["status"] + (f" ({m['error_code']})" if m["error_code"] else "")
                if m["provider_sid"] in typing:
                    status += ", read + typing shown"
                lines.append(f"  {who:>9} | {m['body']}    [{status}]")
    return "\n".join(lines)


def main() -> int:
    dev_dir = Path(os.environ.get("DEV_DIR", ".dev")).resolve()
    with ExitStack() as stack:
        env = read_env(dev_dir)
        if not _running(env):
            print("no running stack found: starting one for the demo...")
            env = stack.enter_context(Stack(dev_dir, Ports.from_env())).env
        customers = play(env)
        time.sleep(2.5)  # the burst wait, and the emulator's delivery callbacks
        print(transcripts(env, customers))
        print(
            '\nLook further: psql "' + env["DATABASE_ADMIN_URL"] + "\" -c 'select * from messages'"
            "\n  tables: conversations, messages, ai_runs, unrouted_messages;"
            " Realtime broadcasts in realtime.messages"
            f"\n  messages the Twilio emulator sent: {env['TWILIO_EMULATOR_URL']}/messages"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
