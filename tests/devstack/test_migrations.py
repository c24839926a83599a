from __future__ import annotations

from typing import Any

import psycopg
import pytest

from devstack import postgres
from devstack.migrations import apply_migrations, migration_files, prepare_database
from tests.conftest import DatabaseUrls


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
        owner = prepare_database(url, seed=True)
        assert prepare_database(url) == owner  # bootstrap and migrations are idempotent
        with psycopg.connect(owner) as conn:
            names = [r[0] for r in conn.execute("select name from advisors order by name")]
            assert len(names) == 7 and "María González" in names
            numbers = {r[0] for r in conn.execute("select twilio_phone_number from advisors")}
            assert "+14155238886" in numbers and "+5742044646" in numbers
            # Users as Supabase Auth writes them, so they can sign in with email and password.
            users = conn.execute(
                "select u.email, u.email_confirmed_at is not null, u.confirmation_token,"
                " u.recovery_token, u.email_change_token_new, u.email_change, i.provider,"
                " i.provider_id = u.id::text, i.email = u.email"
                " from auth.users u left join auth.identities i on i.user_id = u.id"
            ).fetchall()
            assert len(users) == 8
            for user in users:
                assert user[1:] == (True, "", "", "", "", "email", True, True), user


def test_a_migration_needing_more_than_supabase_gives_fails_here(
    isolated_database: DatabaseUrls,
) -> None:
    with psycopg.connect(isolated_database.owner_url, autocommit=True) as conn:
        for statement in (
            "alter role postgres superuser",
            "create policy sneaky on auth.users for select using (true)",
            "alter table auth.users add column sneaky integer",
            "drop schema storage cascade",
            "create role sneaky superuser",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_migration_file_names_are_timestamped() -> None:
    for path in migration_files():
        version, _, name = path.stem.partition("_")
        assert len(version) == 14 and version.isdigit(), path.name
        assert name, path.name
