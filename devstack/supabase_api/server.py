"""The local Supabase API stand-in: Auth, the Data API, Realtime and Storage, on one port,
exactly the parts the advisor console uses. Never deployed; a real project serves these.

Data requests run as PostgREST runs them: connected as `authenticator`, `set local role` to the
token's role, the verified claims in `request.jwt.claims`, one transaction per request, so our
grants and RLS policies decide every answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from aiohttp import BodyPartReader, web
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from devstack.supabase_api import rest, storage
from devstack.supabase_api.auth import USER_COLUMNS, AuthFailure, Sessions, api_key, check_password
from devstack.supabase_api.realtime import Realtime
from devstack.supabase_api.storage import StorageFailure

T = TypeVar("T")
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PATCH, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, apikey, content-type, x-client-info, prefer,"
    " range, accept-profile, content-profile, x-supabase-api-version, x-upsert, cache-control",
    "Access-Control-Expose-Headers": "Content-Range, X-Supabase-Api-Version",
    "Access-Control-Max-Age": "3600",
}


class SupabaseStandIn:
    def __init__(
        self, admin_url: str, api_url: str, jwt_secret: str, storage_dir: Path,
        host: str = "127.0.0.1", port: int = 0,
    ) -> None:  # fmt: skip
        self.admin_url = admin_url  # Auth, Realtime and Storage's own privileged access
        self.api_url = api_url  # the `authenticator` login, as PostgREST connects
        self.secret = jwt_secret
        self.storage_dir = storage_dir
        self.host, self.port = host, port
        self.anon_key = api_key(jwt_secret, "anon")
        self.service_role_key = api_key(jwt_secret, "service_role")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.sessions = Sessions(jwt_secret, "")
        self.realtime: Realtime | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> SupabaseStandIn:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()  # its self-pipe sockets with it

    def _call(self, coroutine: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        return future.result(timeout=30)

    async def _start(self) -> None:
        kwargs: dict[str, Any] = {"autocommit": True}
        self.admin = AsyncConnectionPool(
            self.admin_url, min_size=1, max_size=4, kwargs=kwargs, open=False
        )
        self.api = AsyncConnectionPool(
            self.api_url, min_size=1, max_size=8, kwargs=kwargs, open=False
        )
        await self.admin.open(wait=True)
        await self.api.open(wait=True)
        self.realtime = Realtime(self.admin, self.sessions)
        self._poller = asyncio.get_running_loop().create_task(self.realtime.poll_forever())
        app = web.Application(middlewares=[self._errors], client_max_size=20 * 1024 * 1024)
        app.router.add_route("OPTIONS", "/{tail:.*}", self._preflight)
        app.router.add_post("/auth/v1/token", self._token)
        app.router.add_get("/auth/v1/user", self._user)
        app.router.add_post("/auth/v1/logout", self._logout)
        app.router.add_post("/rest/v1/rpc/{function}", self._rpc)
        app.router.add_get("/rest/v1/{table}", self._select)
        app.router.add_patch("/rest/v1/{table}", self._update)
        app.router.add_get("/realtime/v1/websocket", self.realtime.handle)
        app.router.add_post("/storage/v1/object/sign/{bucket}/{name:.+}", self._sign)
        app.router.add_get("/storage/v1/object/sign/{bucket}/{name:.+}", self._signed_object)
        app.router.add_post("/storage/v1/object/{bucket}/{name:.+}", self._upload)
        app.router.add_put("/storage/v1/object/{bucket}/{name:.+}", self._upload)
        app.router.add_delete("/storage/v1/object/{bucket}", self._remove)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.sessions.issuer = self.url + "/auth/v1"

    async def _stop(self) -> None:
        self._poller.cancel()
        if self.realtime:
            await self.realtime.drop_connections(accept_new=False)
        if self._runner:
            await self._runner.cleanup()
        await self.api.close()
        await self.admin.close()

    def drop_realtime(self, accept_new: bool) -> None:
        """Close every Realtime socket; with accept_new=False, refuse reconnects until called
        again with True (a laptop asleep, a network change)."""
        assert self.realtime is not None
        self._call(self.realtime.drop_connections(accept_new))

    # plumbing -----------------------------------------------------------------------------------
    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except (AuthFailure, StorageFailure, rest.QueryError) as exc:
            response = web.json_response(exc.body, status=exc.status)
        except psycopg.OperationalError as exc:
            body = {
                "code": "PGRST000",
                "message": "Could not connect to the database",
                "details": str(exc),
                "hint": None,
            }
            response = web.json_response(body, status=503)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(CORS)
        return response

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    def _claims(self, request: web.Request) -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        token = (
            header[7:] if header.lower().startswith("bearer ") else request.headers.get("apikey")
        )
        return self.sessions.claims(token)

    async def _as(
        self, claims: dict[str, Any], statement: sql.Composed | sql.SQL, params: list[Any]
    ) -> Any:
        """Run one statement as the token's role with its claims; return the first column."""
        async with self.api.connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(
                        sql.SQL("set local role {}").format(sql.Identifier(claims["role"]))
                    )
                    await conn.execute(
                        "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                    )
                    cursor = await conn.execute(statement, params)
                    row = await cursor.fetchone()
                    return row[0] if row else None
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                diag = exc.diag
                status = rest.status_for(exc.sqlstate, claims["role"])
                raise rest.QueryError(
                    status,
                    exc.sqlstate or "XX000",
                    diag.message_primary or str(exc),
                    diag.message_detail,
                ) from None

    # Auth ---------------------------------------------------------------------------------------
    async def _load_user(self, column: str, value: str) -> dict[str, Any] | None:
        async with self.admin.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                sql.SQL("select {} from auth.users where {} = %s").format(
                    sql.SQL(USER_COLUMNS), sql.Identifier(column)
                ),
                (value,),
            )
            return await cursor.fetchone()

    async def _token(self, request: web.Request) -> web.Response:
        grant = request.query.get("grant_type")
        body = await request.json()
        if grant == "password":
            email = str(body.get("email") or "").strip().lower()
            row = await self._load_user("email", email)
            await asyncio.to_thread(check_password, row, str(body.get("password") or ""))
            assert row is not None
            async with self.admin.connection() as conn:
                await conn.execute(
                    "update auth.users set last_sign_in_at = now() where id = %s", (row["id"],)
                )
            return web.json_response(self.sessions.issue(row))
        if grant == "refresh_token":
            user_id, session_id = self.sessions.redeem(str(body.get("refresh_token") or ""))
            row = await self._load_user("id", user_id)
            if row is None:
                raise AuthFailure(
                    400, "user_not_found", "User from sub claim in JWT does not exist"
                )
            return web.json_response(self.sessions.issue(row, session_id))
        raise AuthFailure(400, "unsupported_grant_type", "unsupported grant_type")

    async def _user(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        if claims.get("role") != "authenticated":
            raise AuthFailure(403, "bad_jwt", "invalid claim: missing sub claim")
        row = await self._load_user("id", claims["sub"])
        if row is None:
            raise AuthFailure(403, "user_not_found", "User from sub claim in JWT does not exist")
        from devstack.supabase_api.auth import user_json

        return web.json_response(user_json(row))

    async def _logout(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        if claims.get("session_id"):
            self.sessions.sign_out(claims["session_id"])
        return web.Response(status=204)

    # Data API -----------------------------------------------------------------------------------
    async def _select(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        query = rest.parse(request.match_info["table"], list(request.query.items()))
        await self._table_exists(claims, query.table)
        rows = await self._as(claims, rest.select_statement(query), query.params)
        headers = {}
        if "count=exact" in request.headers.get("Prefer", ""):
            total = await self._as(claims, rest.count_statement(query), query.params)
            end = query.offset + len(rows) - 1
            headers["Content-Range"] = f"{query.offset}-{end}/{total}" if rows else f"*/{total}"
        return self._rows(request, rows, headers)

    async def _update(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        query = rest.parse(request.match_info["table"], list(request.query.items()))
        await self._table_exists(claims, query.table)
        try:
            changes = await request.json()
        except json.JSONDecodeError:
            raise rest.QueryError(400, "PGRST102", "Empty or invalid json") from None
        statement, params = rest.update_statement(query, changes)
        rows = await self._as(claims, statement, params)
        if "return=representation" not in request.headers.get("Prefer", ""):
            return web.Response(status=204)
        return self._rows(request, rows, {})

    def _rows(self, request: web.Request, rows: list[Any], headers: dict[str, str]) -> web.Response:
        if "vnd.pgrst.object" in request.headers.get("Accept", ""):
            if len(rows) != 1:
                body = {"code": "PGRST116", "message": "JSON object requested, multiple (or no) rows returned",
                        "details": f"The result contains {len(rows)} rows", "hint": None}  # fmt: skip
                return web.json_response(body, status=406)
            return web.json_response(rows[0], headers=headers)
        return web.json_response(rows, headers=headers)

    async def _table_exists(self, claims: dict[str, Any], table: str) -> None:
        found = await self._as(
            claims, sql.SQL("select to_regclass(%s) is not null"), [f"public.{table}"]
        )
        if not found:
            raise rest.QueryError(
                404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache"
            )

    async def _rpc(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        name = request.match_info["function"]
        rest.identifier(name)
        args = await request.json() if request.can_read_body else {}
        if not isinstance(args, dict):
            raise rest.QueryError(400, "PGRST102", "Empty or invalid json")
        # Input arguments only (a function returning a table lists its columns as arguments too).
        signature = await self._as(
            claims,
            sql.SQL(
                "select json_build_object('names', (select json_agg(a.name order by a.n)"
                " from unnest(p.proargnames, coalesce(p.proargmodes,"
                " array_fill('i'::\"char\", array[cardinality(p.proargnames)])))"
                " with ordinality a(name, mode, n) where a.mode in ('i', 'b', 'v')),"
                " 'types', (select json_agg(format_type(t, null) order by n)"
                " from unnest(p.proargtypes) with ordinality x(t, n)), 'set', p.proretset)"
                " from pg_catalog.pg_proc p where p.pronamespace = 'public'::regnamespace"
                " and p.proname = %s and p.pronargs = %s"
            ),
            [name, len(args)],
        )
        names = (signature or {}).get("names") or []
        if signature is None or set(names) != set(args):
            raise rest.QueryError(
                404, "PGRST202", f"Could not find the function public.{name} in the schema cache"
            )
        types = dict(zip(names, signature["types"] or [], strict=False))
        call = sql.SQL("public.{}({})").format(
            sql.Identifier(name),
            sql.SQL(", ").join(
                sql.SQL("{} => %s::{}").format(sql.Identifier(arg), sql.SQL(types[arg]))
                for arg in args
            ),
        )
        statement = (
            sql.SQL("select coalesce(json_agg(r), '[]'::json) from {} r").format(call)
            if signature["set"]
            else sql.SQL("select to_json({})").format(call)
        )
        params = [rest.parameter(v) for v in args.values()]
        result = await self._as(claims, statement, params)
        return web.json_response(result)

    # Storage ------------------------------------------------------------------------------------
    async def _sign(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        body = await request.json()
        found = await self._as(
            claims,
            sql.SQL(
                "select exists (select 1 from storage.objects where bucket_id = %s and name = %s)"
            ),
            [bucket, name],
        )
        if not found:
            raise StorageFailure(404, "not_found", "Object not found")
        token = storage.sign(self.secret, bucket, name, int(body.get("expiresIn") or 60))
        return web.json_response({"signedURL": f"/object/sign/{bucket}/{name}?token={token}"})

    async def _signed_object(self, request: web.Request) -> web.Response:
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        storage.verify(self.secret, bucket, name, request.query.get("token", ""))
        async with self.admin.connection() as conn:
            cursor = await conn.execute(
                "select metadata from storage.objects where bucket_id = %s and name = %s",
                (bucket, name),
            )
            row = await cursor.fetchone()
        path = storage.object_path(self.storage_dir, bucket, name)
        if row is None or not path.exists():
            raise StorageFailure(404, "not_found", "Object not found")
        return web.Response(body=path.read_bytes(), content_type=storage.content_type(name, row[0]))

    async def _upload(self, request: web.Request) -> web.Response:
        storage.require_service_role(self._claims(request))
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        data, mimetype = await self._uploaded_file(request)
        path = storage.object_path(self.storage_dir, bucket, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        async with self.admin.connection() as conn:
            cursor = await conn.execute(
                "insert into storage.objects (bucket_id, name, metadata) values (%s, %s, %s)"
                " on conflict (bucket_id, name) do update set metadata = excluded.metadata,"
                " updated_at = now() returning id::text",
                (bucket, name, Jsonb({"mimetype": mimetype, "size": len(data)})),
            )
            (object_id,) = await cursor.fetchone()  # type: ignore[misc]
        return web.json_response({"Key": f"{bucket}/{name}", "Id": object_id})

    @staticmethod
    async def _uploaded_file(request: web.Request) -> tuple[bytes, str]:
        """The file of an upload: the raw body, or the file part of a multipart form (what the
        Python client sends, beside `cacheControl`), with its content type."""
        content_type = request.headers.get("Content-Type", "application/octet-stream")
        if not content_type.startswith("multipart/form-data"):
            return await request.read(), content_type
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.filename is not None:
                return await part.read(decode=True), part.headers.get(
                    "Content-Type", "application/octet-stream"
                )
        raise StorageFailure(400, "invalid_request", "no file in the form")

    async def _remove(self, request: web.Request) -> web.Response:
        """Storage's bulk delete: `{"prefixes": [names]}`; answers the objects it deleted."""
        storage.require_service_role(self._claims(request))
        bucket = request.match_info["bucket"]
        names = (await request.json()).get("prefixes") or []
        async with self.admin.connection() as conn:
            cursor = await conn.execute(
                "delete from storage.objects where bucket_id = %s and name = any(%s)"
                " returning id::text, name, bucket_id, metadata",
                (bucket, names),
            )
            deleted = await cursor.fetchall()
        for _, name, _, _ in deleted:
            storage.object_path(self.storage_dir, bucket, name).unlink(missing_ok=True)
        return web.json_response(
            [{"id": i, "name": n, "bucket_id": b, "metadata": m} for i, n, b, m in deleted]
        )
