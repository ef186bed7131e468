"""``GET /metrics``: this process's Prometheus metrics (scrape every process).

They tell how busy the service is and who uses it how much, so they are served only to a
scraper holding ``METRICS_TOKEN`` (Prometheus: ``authorization: {credentials: TOKEN}``).
"""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chat import metrics, tokens
from chat.errors import Forbidden, Unauthorized
from chat.services import services


async def metrics_endpoint(request: Request) -> Response:
    svc = services(request)
    expected = svc.settings.metrics_token
    if expected is None:
        raise Forbidden("Metrics are off: set METRICS_TOKEN, and scrape with the header "
                        "`Authorization: Bearer METRICS_TOKEN`.")
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not tokens.same(sent.strip(), expected):
        raise Unauthorized("Send `Authorization: Bearer METRICS_TOKEN`.")
    metrics.BROKER_SUBSCRIPTIONS.set(svc.broker.subscription_count())
    metrics.ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
