"""The PostgreSQL pool, the transaction helper and the migrations runner.

Migrations are the files ``sql/NNNN_name.sql``, applied in order, each in its own
transaction, and recorded in ``schema_migrations``. The runner holds a session-level
advisory lock, so several processes starting at once apply each migration exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from chat.resources import resource_dir

logger = logging.getLogger(__name__)

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# Either a connection of its own (CLI, migrations) or one borrowed from the pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# An arbitrary constant that identifies this application's migration lock ("chat").
MIGRATION_LOCK_KEY = 0x63686174
MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
CONNECT_TIMEOUT = 5.0


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached or refused the connection."""


class MigrationError(RuntimeError):
    """The schema cannot be brought to (or does not match) what this code expects."""


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# TimeoutError, which connecting raises, is an OSError.
CONNECT_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                  asyncpg.InternalClientError)


def _unavailable(url: str, exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"Cannot connect to PostgreSQL at {redact(url)}: {exc or type(exc).__name__}. "
        "Check DATABASE_URL and that the server is running and accepts connections."
    )


async def _init_connection(conn: Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Skip asyncpg's reset query (a round trip on every release, a third of a simple
    request's database time): pooled connections never change session state. asyncpg
    still rolls back a transaction left open, and locks are only ever transaction-scoped."""


async def create_pool(url: str, *, min_size: int = 0, max_size: int = 10) -> Pool:
    """Open a pool, turning every way of failing to connect into :class:`DatabaseUnavailable`.

    Connections open on demand and stay while used (idle ones close after five minutes).
    No minimum by default: asyncpg restores a minimum by retrying in the background and
    logs a traceback for every retry while PostgreSQL is down, where on-demand connections
    recover just as well and :func:`report_unavailable` says it once.
    """
    try:
        pool: Pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT,
            init=_init_connection, reset=_keep_session,
            # Lets an operator tell processes apart in pg_stat_activity.
            server_settings={"application_name": f"chat-{os.getpid()}"},
        )
    except CONNECT_ERRORS as exc:
        raise _unavailable(url, exc) from exc
    return pool


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Connection]:
    """One short-lived connection, for the CLI and the migrations runner."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except CONNECT_ERRORS as exc:
        raise _unavailable(url, exc) from exc
    try:
        await _init_connection(conn)
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def transaction(pool: Pool) -> AsyncIterator[Connection]:
    """A connection from the pool inside one transaction, committed when the block ends."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def ping(pool: Pool) -> bool:
    """True when the database answers a trivial query within two seconds."""
    try:
        async with asyncio.timeout(2.0):
            return bool(await pool.fetchval("SELECT 1") == 1)
    except CONNECT_ERRORS:
        return False


# The exception classes that may mean an outage; :func:`is_outage` tells which do.
OUTAGE_ERRORS = (DatabaseUnavailable, *CONNECT_ERRORS)
# Server states that mean "up, but not serving you now": shutting down (administrator or
# crash), starting up, out of connection slots.
UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says PostgreSQL cannot be reached or dropped the connection.

    False for everything else, a bad query or a misuse of the driver included: those are
    bugs and must surface as such, not hide behind "try again later".
    """
    if isinstance(exc, DatabaseUnavailable | asyncpg.PostgresConnectionError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return exc.sqlstate in UNAVAILABLE_STATES
    if isinstance(exc, asyncpg.InterfaceError):
        # A pooled connection the server closed, or the pool closing at shutdown.
        message = str(exc)
        return "connection is closed" in message or message in ("pool is closing",
                                                                  "pool is closed")
    if isinstance(exc, OSError):
        # Refused, reset, unreachable, timed out: only when the driver raised it, so that
        # an unrelated OSError (a missing template file) stays a bug.
        return any(frame.f_globals.get("__name__", "").startswith("asyncpg.")
                   for frame, _ in traceback.walk_tb(exc.__traceback__))
    return False


async def is_outage(exc: BaseException, pool: Pool) -> bool:
    """:func:`is_unavailable`, or an error that may be either and a ping says it is.

    A connection that PostgreSQL dropped while it sat idle in the pool fails its next
    query with asyncpg's "cannot switch to state ...; another operation is in progress",
    which a misuse of the driver raises too: only a database that does not answer makes
    it an outage.
    """
    if is_unavailable(exc):
        return True
    return isinstance(exc, asyncpg.InternalClientError) and not await ping(pool)


class _Outage:
    """An outage of one pool's database, from the first failed request until a ping works."""

    WATCH_INTERVAL = 1.0

    def __init__(self, pool: Pool, exc: BaseException) -> None:
        self.pool = pool
        self.since = time.monotonic()
        logger.error("PostgreSQL is unavailable (%s: %s); answering 503 with Retry-After "
                     "until it is back", type(exc).__name__, exc)
        self.watcher = asyncio.create_task(self._watch(), name="postgres-outage-watcher")

    async def _watch(self) -> None:
        try:
            while not self.pool.is_closing():
                await asyncio.sleep(self.WATCH_INTERVAL)
                if await ping(self.pool):  # the pool reconnects by itself; this only notices
                    logger.warning("PostgreSQL is available again after %.1f s",
                                   time.monotonic() - self.since)
                    return
        finally:
            del _outages[id(self.pool)]


# Outages going on, by id(pool) (asyncpg pools take no weak references); each entry holds
# its pool, so the id cannot be reused while it is here.
_outages: dict[int, _Outage] = {}


def report_unavailable(pool: Pool, exc: BaseException) -> None:
    """Note that a request failed because PostgreSQL is unavailable.

    The first failure of an outage is logged, and so is the outage's end; the failures in
    between only at debug level (each was answered with a 503).
    """
    if id(pool) in _outages:
        logger.debug("PostgreSQL still unavailable (%s: %s)", type(exc).__name__, exc)
    else:
        _outages[id(pool)] = _Outage(pool, exc)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Every ``NNNN_name.sql`` file of the directory, in version order."""
    directory = directory or resource_dir("sql")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path} is not named NNNN_lowercase_name.sql; rename it.")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"Two migrations share version {version:04d} in {directory}.")
        migrations[version] = Migration(version, match.group(2), path.read_text())
    return [migrations[v] for v in sorted(migrations)]


CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply the pending migrations and return them; a no-op when the schema is current."""
    migrations = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        pending = await _pending(conn, migrations)
        for migration in pending:
            await _apply(conn, migration)
        return pending
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _apply(conn: Connection, migration: Migration) -> None:
    label = f"{migration.version:04d}_{migration.name}.sql"
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"Migration {label} failed: {exc}. Nothing of it was applied; "
            "fix the SQL and run `chat migrate` again."
        ) from exc
    logger.info("Applied migration %s", label)


async def _pending(conn: Connection, migrations: list[Migration]) -> list[Migration]:
    """The migrations not yet applied; refuse a database that is ahead of this code."""
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    known = {m.version: m for m in migrations}
    unknown = sorted(r["version"] for r in rows if r["version"] not in known)
    if unknown:
        names = ", ".join(f"{v:04d}" for v in unknown)
        raise MigrationError(
            f"The database has migrations this code does not know ({names}): it was migrated "
            "by a newer release. Run that release, or restore a backup taken before it."
        )
    for row in rows:
        if row["checksum"] != known[row["version"]].checksum:
            logger.warning(
                "Migration %04d_%s changed after it was applied; migrations are forward-only: "
                "add a new file instead of editing an applied one.", row["version"], row["name"],
            )
    applied = {r["version"] for r in rows}
    return [m for m in migrations if m.version not in applied]


async def check_schema(conn: Connection, migrations: list[Migration] | None = None) -> None:
    """Raise :class:`MigrationError` unless every known migration, and no other, is applied."""
    migrations = load_migrations() if migrations is None else migrations
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    pending = await _pending(conn, migrations) if exists else migrations
    if pending:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
        raise MigrationError(f"The database lacks migrations {names}; run `chat migrate`.")
