from __future__ import annotations

from typing import Any

import psycopg

from devstack import postgres
from devstack.migrations import apply_migrations, migration_files, prepare_database


def test_migrations_apply_once_and_are_recorded(
    database_url: str, db: psycopg.Connection[Any]
) -> None:
    versions = [p.stem.split("_", 1)[0] for p in migration_files()]
    recorded = db.execute(
        "select version, name from supabase_migrations.schema_migrations order by version"
    ).fetchall()
    assert [r["version"] for r in recorded] == versions
    # A second run applies nothing and changes nothing.
    assert apply_migrations(database_url) == []
    assert db.execute(
        "select count(*) as n from supabase_migrations.schema_migrations"
    ).fetchone() == {"n": len(versions)}


def test_fresh_database_bootstrap_migrate_and_seed(pg_admin_url: str) -> None:
    with postgres.fresh_database(pg_admin_url, prefix="seed") as url:
        prepare_database(url, seed=True)
        prepare_database(url)  # bootstrap and migrations are idempotent
        with psycopg.connect(url) as conn:
            names = [r[0] for r in conn.execute("select name from advisors order by name")]
            assert len(names) == 7 and "María González" in names
            numbers = {r[0] for r in conn.execute("select twilio_phone_number from advisors")}
            assert "+14155238886" in numbers and "+5742044646" in numbers


def test_migration_file_names_are_timestamped() -> None:
    for path in migration_files():
        version, _, name = path.stem.partition("_")
        assert len(version) == 14 and version.isdigit(), path.name
        assert name, path.name
