"""The original multi-advisor design's webhook, for benchmarks only (never deployed).

Same signature check, model and Twilio calls as ours, but the data path of the system this one
replaces: look the advisor up by number, then the latest conversation row, then `ai_attention`,
then `audio_available`, then insert the message, then read the history, then insert the reply:
each a separate query, no cache, no Redis. Served by functions-framework (target `baseline`).
"""

from __future__ import annotations

import os
from typing import Any

import functions_framework
from flask import Request, Response
from psycopg_pool import ConnectionPool
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from shared.assistant import Assistant
from shared.whatsapp import WhatsApp, bare_number

pool = ConnectionPool(
    os.environ["DATABASE_ADMIN_URL"],
    min_size=1,
    max_size=int(os.environ.get("DATABASE_POOL_SIZE", "4")),
    kwargs={"autocommit": True},
    open=True,
)
validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
public_url = os.environ["BASELINE_PUBLIC_URL"]
assistant = Assistant(
    os.environ["OPENAI_API_KEY"], os.environ["OPENAI_BASE_URL"], "gpt-4o-mini", 0, 8
)
whatsapp = WhatsApp(
    os.environ["TWILIO_ACCOUNT_SID"],
    os.environ["TWILIO_AUTH_TOKEN"],
    None,
    "",
    5,
    os.environ["TWILIO_API_BASE_URL"],
)


@functions_framework.http
def baseline(request: Request) -> Response:
    if not validator.validate(
        public_url, request.form, request.headers.get("X-Twilio-Signature", "")
    ):
        return Response("forbidden", status=403)
    form = request.form
    to, customer = bare_number(form["To"]), bare_number(form["From"])
    with pool.connection() as conn:
        advisor: Any = conn.execute(
            "select id, tenant_id, name from advisors where twilio_phone_number = %s and is_active",
            (to,),
        ).fetchone()
        if advisor is None:
            return Response(str(MessagingResponse()), mimetype="text/xml")
        conversation: Any = conn.execute(
            "select id from conversations where advisor_id = %s and customer_phone = %s"
            " order by created_at desc limit 1",
            (advisor[0], customer),
        ).fetchone()
        if conversation is None:
            conversation = conn.execute(
                "insert into conversations (tenant_id, advisor_id, customer_phone) values (%s, %s, %s)"
                " on conflict (advisor_id, customer_phone) do update set updated_at = now() returning id",
                (advisor[1], advisor[0], customer),
            ).fetchone()
        conn.execute(
            "select ai_attention from conversations where id = %s", (conversation[0],)
        ).fetchone()
        conn.execute(
            "select audio_available from conversations where id = %s", (conversation[0],)
        ).fetchone()
        conn.execute(
            "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body,"
            " provider_sid, status) values (%s, %s, %s, 'inbound', 'customer', %s, %s, 'received')",
            (advisor[1], advisor[0], conversation[0], form.get("Body", ""), form["MessageSid"]),
        )
        history = [
            {"direction": row[0], "author": row[1], "body": row[2]}
            for row in reversed(conn.execute(
                "select direction, author, body from messages where conversation_id = %s"
                " order by created_at desc limit 20",
                (conversation[0],),
            ).fetchall())
        ]  # fmt: skip
    reply = assistant.reply(f"Eres el asistente de {advisor[2]}.", history)
    sent = whatsapp.send(to, customer, reply.text or "")
    with pool.connection() as conn:
        conn.execute(
            "insert into messages (tenant_id, advisor_id, conversation_id, direction, author, body,"
            " provider_sid, status) values (%s, %s, %s, 'outbound', 'ai', %s, %s, %s)",
            (advisor[1], advisor[0], conversation[0], reply.text, sent.sid, sent.status),
        )
    return Response(str(MessagingResponse()), mimetype="text/xml")
