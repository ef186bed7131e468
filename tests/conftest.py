"""Fixtures for real services.

PostgreSQL: ``TEST_DATABASE_URL`` (any database on a server where the user may create
databases), else the embedded PostgreSQL in a temporary directory. Redis:
``TEST_REDIS_URL``, else a ``redis-server`` started here. Without a service a test is
skipped, except with ``CI`` set, where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from chat import db
from chat.actions.agents import create_agent
from chat.embedded import EmbeddedPostgres
from chat.queries import sites
from tests.support import (
    METRICS_TOKEN,
    AppProcess,
    PostgresProcess,
    RedisProcess,
    run_async,
    unavailable,
)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL to a PostgreSQL server on which the tests may create databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    embedded = None
    if url is None:
        embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded"))
        try:
            url = embedded.start()
        except Exception as exc:
            unavailable(f"no TEST_DATABASE_URL, and the embedded PostgreSQL failed: {exc}")
    assert url is not None
    try:
        run_async(_admin(url, "SELECT 1"))
    except Exception as exc:
        unavailable(f"cannot reach PostgreSQL at {db.redact(url)}: {exc}")
    yield url
    if embedded is not None:
        embedded.stop()


@pytest.fixture
def make_database(pg_server: str) -> Iterator[Callable[[], str]]:
    """A factory of empty databases, each dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"chat_test_{uuid.uuid4().hex[:12]}"
        run_async(_admin(pg_server, f'CREATE DATABASE "{name}"'))
        created.append(name)
        return with_database(pg_server, name)

    yield make
    for name in created:
        run_async(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def migrated_database(pg_server: str) -> Iterator[str]:
    """One migrated database for the whole run; :func:`database` empties it per test."""
    name = f"chat_test_{uuid.uuid4().hex[:12]}"
    run_async(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    url = with_database(pg_server, name)

    async def migrate() -> None:
        async with db.connect(url) as conn:
            await db.migrate(conn)

    run_async(migrate())
    yield url
    run_async(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database(migrated_database: str) -> str:
    """The URL of a migrated database with every table emptied."""

    async def truncate() -> None:
        async with db.connect(migrated_database) as conn:
            tables = await conn.fetchval(
                "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

    run_async(truncate())
    return migrated_database


@dataclass(frozen=True)
class Seed:
    """A site and an admin agent, created before the app starts."""

    site_id: int
    site_key: str
    agent_id: int
    email: str = "alex@example.com"
    password: str = "correct horse battery"


@pytest.fixture
def seed(database: str) -> Seed:
    async def create() -> Seed:
        async with db.connect(database) as conn:
            site = await sites.insert(conn, public_key="pk_test_site_0001", name="Test site",
                                      allowed_origins=["http://127.0.0.1:9"])
            agent = await create_agent(conn, email=Seed.email, name="Alex",
                                       password=Seed.password, role="admin")
        return Seed(site["id"], site["public_key"], agent["id"])

    return run_async(create())


@pytest.fixture
async def pool(database: str) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(database)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis the tests share; tests that kill Redis use :func:`redis_process` instead."""
    url = os.environ.get("TEST_REDIS_URL")
    if url is not None:
        yield url
        return
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.kill()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which it may kill and restart."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def app_env(database: str, tmp_path: Path) -> dict[str, str]:
    """The environment of an app process on the test database, without Redis."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=database, CHAT_DATA_DIR=str(tmp_path / "data"),
        SECRET_KEY="test-secret-key-" + "x" * 32, LOG_LEVEL="INFO",
        # Tests share one address (and maybe one Redis); the limits have tests of their own.
        RATE_LIMITS="off", METRICS_TOKEN=METRICS_TOKEN,
    )
    return env


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., AppProcess]]:
    """Start app processes; every one still running is killed after the test."""
    started: list[AppProcess] = []

    def start(env: dict[str, str], *, workers: int = 1) -> AppProcess:
        app = AppProcess(env, tmp_path / f"app-{len(started)}.log", workers=workers)
        started.append(app)
        app.start()
        return app

    yield start
    for app in started:
        app.kill()


@pytest.fixture
def own_postgres() -> Iterator[PostgresProcess]:
    """A PostgreSQL cluster of this test's own, migrated and seeded like ``seed``."""
    server = PostgresProcess()
    server.start()

    async def prepare() -> None:
        async with db.connect(server.url) as conn:
            await db.migrate(conn)
            await sites.insert(conn, public_key="pk_test_site_0001", name="Test site",
                               allowed_origins=["http://127.0.0.1:9"])
            await create_agent(conn, email=Seed.email, name="Alex", password=Seed.password,
                               role="admin")

    run_async(prepare())
    try:
        yield server
    finally:
        server.remove()
