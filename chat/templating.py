"""Jinja2 templates: one partial serves the full page, an htmx response and an SSE push."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from starlette.templating import Jinja2Templates

from chat import browsers, links, tabs
from chat.config import HTMX_FILES
from chat.resources import resource_dir

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(resource_dir("templates")),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
templates = Jinja2Templates(env=environment)


def render(name: str, **context: Any) -> str:
    """A template rendered outside a request (SSE frames, fragments)."""
    return environment.get_template(name).render(**context)


def clock(moment: datetime) -> str:
    """A compact time for message bubbles, said to be UTC: static/messages.js replaces it with
    the reader's local time, so this is what a page without JavaScript shows."""
    return moment.astimezone(UTC).strftime("%H:%M UTC")


environment.filters["clock"] = clock
environment.filters["browser"] = browsers.describe
environment.filters["linkify"] = links.linkify
environment.filters["tabs"] = tabs.of
# What pages load; not htmx's SSE extension: static/live.js holds the streams, one per browser.
environment.globals["htmx_files"] = HTMX_FILES
environment.filters["isotime"] = lambda moment: moment.astimezone(UTC).isoformat()
