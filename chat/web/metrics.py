"""``GET /metrics``: this process's Prometheus metrics (scrape every process)."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chat import metrics
from chat.services import services


async def metrics_endpoint(request: Request) -> Response:
    metrics.BROKER_SUBSCRIPTIONS.set(services(request).broker.subscription_count())
    metrics.ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
