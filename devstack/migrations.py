"""Apply supabase/migrations/*.sql in file-name order, recording versions like the Supabase CLI.

Each file runs in its own transaction and is recorded in supabase_migrations.schema_migrations
(version, statements, name), the table `supabase db push` keeps, so a database migrated here is
recognised by the CLI and a second run applies nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import psycopg

from devstack import postgres

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = ROOT / "supabase" / "migrations"
BOOTSTRAP_SQL = Path(__file__).resolve().parent / "supabase_bootstrap.sql"
SEED_SQL = ROOT / "supabase" / "seed.sql"

_HISTORY_TABLE = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text not null primary key,
  statements text[],
  name text
);
"""


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("*.sql"))


def apply_migrations(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # One runner at a time per database, whatever else is starting up.
        conn.execute("select pg_advisory_lock(hashtext('supabase_migrations'))")
        try:
            conn.execute(_HISTORY_TABLE)
            done = {
                row[0]
                for row in conn.execute("select version from supabase_migrations.schema_migrations")
            }
            for path in migration_files(directory):
                version, _, name = path.stem.partition("_")
                if version in done:
                    continue
                sql = path.read_text()
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "insert into supabase_migrations.schema_migrations"
                        " (version, statements, name) values (%s, %s, %s)",
                        (version, [sql], name),
                    )
                applied.append(version)
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('supabase_migrations'))")
    return applied


def run_sql_file(conninfo: str, path: Path) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute(path.read_text().encode())


def prepare_database(admin_url: str, *, seed: bool = False) -> str:
    """Bootstrap the Supabase parts as the superuser, then migrate (and optionally seed) as the
    non-superuser `postgres`, as on Supabase; return the migration owner's URL."""
    run_sql_file(admin_url, BOOTSTRAP_SQL)
    owner = postgres.owner_url(admin_url)
    apply_migrations(owner)
    if seed:
        run_sql_file(owner, SEED_SQL)
    return owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument(
        "--bootstrap", action="store_true", help="also apply the Supabase bootstrap (local only)"
    )
    args = parser.parse_args()
    if not args.database_url:
        parser.error("DATABASE_URL is required")
    url = args.database_url
    if args.bootstrap:  # local: the URL is a superuser's; migrations run as postgres
        run_sql_file(url, BOOTSTRAP_SQL)
        url = postgres.owner_url(url)
    for version in apply_migrations(url):
        print(f"applied {version}")


if __name__ == "__main__":
    main()
