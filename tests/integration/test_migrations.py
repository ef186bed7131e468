"""The migrations runner against real, empty PostgreSQL databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from chat import db

EXPECTED_TABLES = {"sites", "agents", "visitors", "conversations", "messages", "schema_migrations"}


async def tables(conn: db.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def test_migrations_apply_from_empty_and_are_idempotent(
    make_database: Callable[[], str],
) -> None:
    url = make_database()
    async with db.connect(url) as conn:
        with pytest.raises(db.MigrationError, match="run `chat migrate`"):
            await db.check_schema(conn)
        applied = await db.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in db.load_migrations()]
        assert await tables(conn) >= EXPECTED_TABLES
        assert await db.migrate(conn) == []
        await db.check_schema(conn)


async def test_concurrent_runners_apply_each_migration_once(
    make_database: Callable[[], str],
) -> None:
    url = make_database()

    async def run() -> list[db.Migration]:
        async with db.connect(url) as conn:
            return await db.migrate(conn)

    results = await asyncio.gather(*(run() for _ in range(4)))
    applied = sorted(m.version for result in results for m in result)
    assert applied == [m.version for m in db.load_migrations()]
    async with db.connect(url) as conn:
        count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    assert count == len(db.load_migrations())


def write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


async def test_a_failing_migration_applies_nothing_of_itself_and_names_the_file(
    make_database: Callable[[], str], tmp_path: Path,
) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE one (id int);")
    write(tmp_path, "0002_broken.sql", "CREATE TABLE two (id int); SELEC nonsense;")
    async with db.connect(make_database()) as conn:
        with pytest.raises(db.MigrationError, match=r"0002_broken\.sql failed"):
            await db.migrate(conn, db.load_migrations(tmp_path))
        assert await tables(conn) == {"one", "schema_migrations"}
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 1


async def test_a_database_ahead_of_the_code_is_refused(
    make_database: Callable[[], str], tmp_path: Path,
) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE one (id int);")
    write(tmp_path, "0002_newer.sql", "CREATE TABLE two (id int);")
    async with db.connect(make_database()) as conn:
        await db.migrate(conn, db.load_migrations(tmp_path))
        (tmp_path / "0002_newer.sql").unlink()
        older = db.load_migrations(tmp_path)
        with pytest.raises(db.MigrationError, match=r"does not know \(0002\)"):
            await db.migrate(conn, older)
        with pytest.raises(db.MigrationError, match="newer release"):
            await db.check_schema(conn, older)


def test_badly_named_migration_files_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "1_init.sql", "")
    with pytest.raises(db.MigrationError, match=r"NNNN_lowercase_name\.sql"):
        db.load_migrations(tmp_path)


async def test_schema_enforces_history_invariants(pool: db.Pool) -> None:
    """Sequence numbers and client ids are unique per conversation; emails per case."""
    import asyncpg

    async with db.transaction(pool) as conn:
        site = await conn.fetchval(
            "INSERT INTO sites (public_key, name) VALUES ('pk_test_1234', 'Site') RETURNING id")
        visitor = await conn.fetchval(
            "INSERT INTO visitors (site_id, token_hash) VALUES ($1, '\\x01') RETURNING id", site)
        conv = await conn.fetchval(
            "INSERT INTO conversations (site_id, visitor_id) VALUES ($1, $2) RETURNING id",
            site, visitor)
        await conn.execute(
            "INSERT INTO messages (conversation_id, seq, kind, body, client_id) "
            "VALUES ($1, 1, 'visitor', 'hi', 'c1')", conv)
    insert = ("INSERT INTO messages (conversation_id, seq, kind, body, client_id) "
              "VALUES ($1, $2, 'visitor', 'x', $3)")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(insert, conv, 1, "c2")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(insert, conv, 2, "c1")
    agent = "INSERT INTO agents (email, name, password_hash) VALUES ($1, 'A', 'h')"
    await pool.execute(agent, "Alex@Example.com")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(agent, "alex@example.COM")
