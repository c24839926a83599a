"""Supabase Realtime subset: the Phoenix websocket protocol (vsn 2.0.0, JSON array frames) with
private broadcast channels, as supabase-js's RealtimeClient speaks it.

A join of `realtime:<topic>` with `config.private` is authorized the way Realtime does it: in a
transaction that is rolled back, a probe row for the topic is written to `realtime.messages`,
then read back as the user (role from the token, claims in `request.jwt.claims`, the topic in
`realtime.topic`); the join is refused unless our RLS policy lets the user see it. Broadcasts
are the rows our triggers insert into `realtime.messages`, read by polling (Realtime reads
that table from the database too) and pushed to every socket joined to their topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import WSMsgType, web
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from devstack.supabase_api.auth import AuthFailure, Sessions

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1
# A row committed late carries an older inserted_at: look back this far, skip rows already sent.
LOOKBACK = timedelta(seconds=10)


@dataclass
class Channel:
    join_ref: str | None
    topic: str  # the database topic, e.g. advisor:<id>
    joined_at: datetime


@dataclass(eq=False)  # one per connection, kept in a set by identity
class Socket:
    ws: web.WebSocketResponse
    token: str | None
    channels: dict[str, Channel] = field(default_factory=dict)  # realtime:<topic> -> channel

    async def push(self, frame: list[Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps(frame, default=str))


class Realtime:
    def __init__(self, admin: AsyncConnectionPool, sessions: Sessions) -> None:
        self.admin = admin
        self.sessions = sessions
        self.sockets: set[Socket] = set()
        self.accepting = True
        self._seen: dict[str, datetime] = {}
        self._cursor: datetime | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.accepting:
            return web.json_response({"message": "realtime unavailable"}, status=503)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        socket = Socket(ws, request.query.get("apikey"))
        self.sockets.add(socket)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                join_ref, ref, topic, event, payload = json.loads(message.data)
                await self._on_frame(socket, join_ref, ref, topic, event, payload or {})
        finally:
            self.sockets.discard(socket)
        return ws

    async def _on_frame(
        self, socket: Socket, join_ref: str | None, ref: str | None, topic: str, event: str,
        payload: dict[str, Any],
    ) -> None:  # fmt: skip
        def reply(status: str, response: dict[str, Any]) -> list[Any]:
            return [join_ref, ref, topic, "phx_reply", {"status": status, "response": response}]

        if topic == "phoenix" and event == "heartbeat":
            await socket.push(reply("ok", {}))
        elif event == "phx_join":
            error = await self._join(socket, join_ref, topic, payload)
            if error:
                await socket.push(reply("error", {"reason": error}))
            else:
                await socket.push(reply("ok", {"postgres_changes": []}))
        elif event == "access_token":
            socket.token = payload.get("access_token") or socket.token
        elif event == "phx_leave":
            socket.channels.pop(topic, None)
            await socket.push(reply("ok", {}))
        else:
            await socket.push(reply("error", {"reason": f"unsupported event {event}"}))

    async def _join(
        self, socket: Socket, join_ref: str | None, topic: str, payload: dict[str, Any]
    ) -> str | None:
        """Authorize a join; return the refusal reason, or None when joined."""
        if not topic.startswith("realtime:"):
            return "invalid topic"
        db_topic = topic.removeprefix("realtime:")
        config = payload.get("config") or {}
        if config.get("postgres_changes"):
            return "postgres_changes are not served by the local stand-in"
        if not config.get("private"):
            return "only private channels are served by the local stand-in"
        socket.token = payload.get("access_token") or socket.token
        try:
            claims = self.sessions.claims(socket.token)
        except AuthFailure as exc:
            return f"Unauthorized: {exc}"
        allowed, now = await self.may_read(claims, db_topic)
        if not allowed:
            return f"Unauthorized: You do not have permissions to read from this Channel topic: {db_topic}"
        socket.channels[topic] = Channel(join_ref, db_topic, now)
        return None

    async def may_read(self, claims: dict[str, Any], topic: str) -> tuple[bool, datetime]:
        async with self.admin.connection() as conn:
            try:
                async with conn.transaction(force_rollback=True):
                    probe = await conn.execute(
                        "insert into realtime.messages (topic, extension, private, payload)"
                        " values (%s, 'broadcast', true, '{}') returning id, localtimestamp",
                        (topic,),
                    )
                    probe_id, now = await probe.fetchone()  # type: ignore[misc]
                    await conn.execute(
                        sql.SQL("set local role {}").format(sql.Identifier(claims["role"]))
                    )
                    await conn.execute(
                        "select set_config('request.jwt.claims', %s, true),"
                        " set_config('realtime.topic', %s, true)",
                        (json.dumps(claims), topic),
                    )
                    seen = await conn.execute(
                        "select exists (select 1 from realtime.messages where id = %s)", (probe_id,)
                    )
                    row = await seen.fetchone()
                    return bool(row and row[0]), now
            except Exception as exc:  # a policy error refuses the join, like Realtime
                log.warning("realtime authorization failed: %s", exc)
                return False, datetime.min

    def joined_topics(self) -> set[str]:
        return {c.topic for s in self.sockets for c in s.channels.values()}

    async def poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # the database restarting must not end delivery
                log.warning("realtime poll failed: %s", exc)
            await asyncio.sleep(POLL_SECONDS)

    async def poll_once(self) -> None:
        async with self.admin.connection() as conn:
            if self._cursor is None:
                cursor = await conn.execute("select localtimestamp")
                self._cursor = (await cursor.fetchone())[0]  # type: ignore[index]
            topics = self.joined_topics()
            if not topics:
                return
            rows = await conn.execute(
                "select id::text, topic, event, payload, inserted_at from realtime.messages"
                " where inserted_at > %s and topic = any(%s) and extension = 'broadcast'"
                " and private order by inserted_at, id",
                (self._cursor - LOOKBACK, list(topics)),
            )
            for message_id, topic, event, payload, inserted_at in await rows.fetchall():
                if message_id in self._seen:
                    continue
                self._seen[message_id] = inserted_at
                self._cursor = max(self._cursor, inserted_at)
                await self._deliver(topic, event, payload, inserted_at)
        horizon = self._cursor - 2 * LOOKBACK
        self._seen = {k: v for k, v in self._seen.items() if v > horizon}

    async def _deliver(self, topic: str, event: str, payload: Any, inserted_at: datetime) -> None:
        for socket in list(self.sockets):
            for name, channel in list(socket.channels.items()):
                if channel.topic == topic and inserted_at >= channel.joined_at:
                    body = {"type": "broadcast", "event": event, "payload": payload}
                    await socket.push([None, None, name, "broadcast", body])

    async def drop_connections(self, accept_new: bool) -> None:
        """Close every socket (a network drop); refuse new ones until accept_new is True."""
        self.accepting = accept_new
        for socket in list(self.sockets):
            await socket.ws.close()
