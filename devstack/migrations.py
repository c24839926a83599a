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


def prepare_database(conninfo: str, *, seed: bool = False) -> None:
    """Bootstrap the Supabase parts, migrate, and optionally load the demo seed."""
    run_sql_file(conninfo, BOOTSTRAP_SQL)
    apply_migrations(conninfo)
    if seed:
        run_sql_file(conninfo, SEED_SQL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument(
        "--bootstrap", action="store_true", help="also apply the Supabase bootstrap (local only)"
    )
    args = parser.parse_args()
    if not args.database_url:
        parser.error("DATABASE_URL is required")
    if args.bootstrap:
        run_sql_file(args.database_url, BOOTSTRAP_SQL)
    for version in apply_migrations(args.database_url):
        print(f"applied {version}")


if __name__ == "__main__":
    main()
