"""The application factory: routes, middleware and the lifespan that owns the resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from chat import db, templating
from chat.broker import create_broker
from chat.config import Settings
from chat.memory import Settler, freeze_start_up, thaw
from chat.presence import create_presence
from chat.queries import installation
from chat.ratelimit import RateLimiter
from chat.receipts import Recorder
from chat.repair import Repairer
from chat.resources import resource_dir
from chat.roster import Roster
from chat.services import Services
from chat.slots import StreamSlots
from chat.web import admin, auth, dashboard, health, metrics, widget
from chat.web.cors import WidgetCors
from chat.web.http import EXCEPTION_HANDLERS, BodySizeLimit, Edge
from chat.web.security import SecurityHeaders
from chat.web.sse import Watchdog

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    """Build the app. ``settings.database_url`` must be set (the CLI resolves the embedded one)."""
    if settings.database_url is None:
        raise ValueError("create_app needs a database URL; `chat serve` starts the embedded one")
    database_url = settings.database_url
    templating.environment.globals["htmx_url"] = settings.htmx_url

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await db.create_pool(database_url)
        try:
            async with pool.acquire() as conn:
                await db.check_schema(conn)
                namespace = settings.redis_namespace or await installation.namespace(conn)
            broker = create_broker(settings.redis_url, namespace)
            await broker.start()
            limiter = RateLimiter(settings.redis_url, enabled=settings.rate_limits,
                                  namespace=namespace)
            slots = StreamSlots(settings.streams_per_client, settings.streams_per_address)
            watchdog = Watchdog()
            repairer = Repairer(broker, pool, settings.repair_interval)
            presence = create_presence(settings.redis_url, namespace)
            roster = Roster(presence, broker, pool, ttl=settings.presence_ttl,
                            away_after=settings.away_after)
            templating.environment.globals["here_refresh"] = roster.here_refresh
            recorder = Recorder(pool, broker)
            app.state.services = Services(settings, pool, broker, limiter, presence, slots,
                                          watchdog, repairer, roster, recorder)
            tasks = [asyncio.create_task(repairer.run(), name="repair-check"),
                     asyncio.create_task(watchdog.run(), name="stream-watchdog"),
                     asyncio.create_task(Settler().run(), name="gc-settler"),
                     asyncio.create_task(roster.run(), name="presence"),
                     asyncio.create_task(recorder.run(), name="receipts")]
            restore_signals = watchdog.shut_down_on_exit_signals()
            freeze_start_up()
            try:
                yield
            finally:
                restore_signals()
                thaw()
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await roster.close()
                await recorder.close()
                await broker.close()
                await presence.close()
        finally:
            await pool.close()

    return Starlette(
        routes=[*health.routes, *metrics.routes, *auth.routes, *widget.routes,
                *dashboard.routes, *admin.routes,
                Mount("/static", StaticFiles(directory=resource_dir("static")), name="static")],
        middleware=[Middleware(Edge, security=SecurityHeaders(settings.htmx_url)),
                    Middleware(BodySizeLimit), Middleware(WidgetCors)],
        exception_handlers={**EXCEPTION_HANDLERS,
                            auth.SignInRequired: auth.handle_sign_in_required},
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """The uvicorn factory used by ``chat serve``: each worker reads the environment itself."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)


def configure_logging(level: str) -> None:
    """One line per event, with time, level and logger name."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
