"""The ``chat`` command: serve, migrate, create-agent.

Every expected failure (bad setting, unreachable database, bad migration, duplicate
agent) ends with one line naming the cause and the fix, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from chat import db
from chat.actions.agents import insert_agent, prepare_agent
from chat.actions.sites import create_site, ensure_default_site
from chat.app import configure_logging
from chat.bench import SCENARIOS
from chat.config import ConfigError, Settings
from chat.embedded import EmbeddedPostgres, EmbeddedPostgresError
from chat.errors import ChatError
from chat.queries import sites as site_queries
from chat.sites import Site, embed_snippet

logger = logging.getLogger(__name__)

EXPECTED_ERRORS = (
    ConfigError, db.DatabaseUnavailable, db.MigrationError, EmbeddedPostgresError, ChatError,
)


class CommandError(Exception):
    """A usage problem found after parsing; printed without a traceback."""


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """``DATABASE_URL``, or the embedded server's URL for as long as the block runs."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    with EmbeddedPostgres(settings.data_dir) as url:
        yield url


async def _migrate(url: str) -> list[db.Migration]:
    async with db.connect(url) as conn:
        applied = await db.migrate(conn)
        site = await ensure_default_site(conn)
    if site is not None:
        logger.info("Created the site %r with the public key %s", site["name"], site["public_key"])
    return applied


@contextlib.contextmanager
def served_database(settings: Settings, workers: int) -> Iterator[str]:
    """The database a server will use, migrated, with its URL exported for the workers.

    Workers are separate processes that build their own Settings from the environment, so
    the resolved (possibly embedded) database travels there.
    """
    if workers > 1 and settings.redis_url is None:
        raise CommandError(
            f"--workers {workers} needs REDIS_URL: without Redis each worker would deliver "
            "live events only to its own streams. Set REDIS_URL=redis://HOST:6379/0 "
            "(and DATABASE_URL for an external PostgreSQL), or run a single worker."
        )
    with database_url(settings) as url:
        asyncio.run(_migrate(url))
        os.environ["DATABASE_URL"] = url
        yield url


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    # uvicorn re-raises SIGTERM once it has shut down; exiting through SystemExit instead
    # of dying of the signal lets the embedded database stop cleanly below.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with served_database(settings, args.workers):
        logger.info("Serving on http://%s:%d with %d worker(s)", args.host, args.port,
                    args.workers)
        uvicorn.run(
            "chat.app:app_from_env", factory=True, host=args.host, port=args.port,
            workers=args.workers, log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=5, http="chat.web.protocol:LimitedHttpToolsProtocol",
            # Forwarded headers are believed only from the proxies the operator lists:
            # anyone else could claim any address and slip past every throttle.
            proxy_headers=bool(settings.forwarded_allow_ips),
            forwarded_allow_ips=list(settings.forwarded_allow_ips),
        )


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    with database_url(settings) as url:
        applied = asyncio.run(_migrate(url))
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print("The database is up to date.")


def read_password(prompt: str = "Password: ") -> str:
    """From an interactive prompt (asked twice), or the first line of piped stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("Repeat password: ") != first:
        raise CommandError("The two passwords differ; nothing was created.")
    return first


def cmd_create_agent(args: argparse.Namespace, settings: Settings) -> None:
    password = read_password()

    async def create(url: str) -> None:
        new = await prepare_agent(email=args.email, name=args.name, password=password,
                                  role="admin" if args.admin else "agent")
        async with db.connect(url) as conn:
            await db.check_schema(conn)
            agent = await insert_agent(conn, new)
        print(f"Created {agent['role']} {agent['name']} <{agent['email']}> (id {agent['id']}).")

    with database_url(settings) as url:
        asyncio.run(create(url))


def cmd_bench(args: argparse.Namespace, settings: Settings) -> None:
    try:
        from chat.bench import report
    except ImportError as exc:
        raise CommandError(f"chat bench needs its extra ({exc.name} is missing): "
                           "pip install 'chat[bench]', or run `make bench`.") from None
    names = report.NAMES if args.scenario == "all" else [args.scenario]
    with served_database(settings, 1) as url:
        report.run(names, url, Path(args.out), args.quick)


def cmd_site(args: argparse.Namespace, settings: Settings) -> None:
    base_url = settings.public_url or "http://127.0.0.1:8000"

    async def run(url: str) -> list[Site]:
        async with db.connect(url) as conn:
            await db.check_schema(conn)
            if args.site_command == "add":
                rows = [await create_site(conn, args.name, args.origin)]
            else:
                rows = await site_queries.all_sites(conn)
        return [Site.from_row(row) for row in rows]

    with database_url(settings) as url:
        found = asyncio.run(run(url))
    if not found:
        print("No sites yet: `chat serve` creates the first one, or use `chat site add`.")
    for site in found:
        origins = ", ".join(site.allowed_origins) or "any (add origins to restrict)"
        print(f"{site.name}  (id {site.id}{'' if site.enabled else ', disabled'})\n"
              f"  public key:      {site.public_key}\n"
              f"  allowed origins: {origins}\n"
              f"  identity check:  {'on' if site.identity_secret else 'off'}"
              " (identity verification, set on the Sites page)\n"
              f"  embed snippet:   {embed_snippet(base_url, site.public_key)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="migrate the database, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive, default=1,
                       help="worker processes; more than one needs REDIS_URL")
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(handler=cmd_migrate)

    agent = commands.add_parser(
        "create-agent", help="create an agent account (password from a prompt or stdin)"
    )
    agent.add_argument("email")
    agent.add_argument("--name", required=True)
    agent.add_argument("--admin", action="store_true", help="give the account the admin role")
    agent.set_defaults(handler=cmd_create_agent)

    site = commands.add_parser("site", help="list or add the websites that embed the widget")
    site_commands = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    site_commands.add_parser("list", help="every site with its key, origins and embed snippet")
    add = site_commands.add_parser("add", help="create a site allowed on the given origins")
    add.add_argument("name")
    add.add_argument("--origin", action="append", default=[], metavar="ORIGIN",
                     help="e.g. https://www.example.com (repeat for several)")
    site.set_defaults(handler=cmd_site)

    bench = commands.add_parser(
        "bench", help="the capacity report: named scenarios against the product and the floor"
    )
    bench.add_argument("--scenario", default="all",
                       choices=["all", *SCENARIOS])
    bench.add_argument("--quick", action="store_true", help="a smoke run: a tenth of the load")
    bench.add_argument("--out", default="bench-results", help="where the report goes")
    bench.set_defaults(handler=cmd_bench)
    return parser


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], None] = args.handler
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level)
        handler(args, settings)
    except (CommandError, *EXPECTED_ERRORS) as exc:
        print(f"chat {args.command}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`chat site list | head`): stop quietly, as Unix tools do.
        # Pointing stdout at /dev/null keeps Python's exit-time flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
