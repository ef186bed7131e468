"""Liveness and readiness for load balancers and monitors."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chat import db
from chat.services import services


async def healthz(request: Request) -> JSONResponse:
    """200 when PostgreSQL and the broker both answer, else 503 naming what is down."""
    svc = services(request)
    database_ok, broker_ok = await asyncio.gather(db.ping(svc.pool), svc.broker.ping())
    body = {
        "status": "ok" if database_ok and broker_ok else "unavailable",
        "database": "ok" if database_ok else "down",
        "broker": "ok" if broker_ok else "down",
    }
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


routes = [Route("/healthz", healthz, methods=["GET", "HEAD"])]
