"""Canned responses, which admins prepare and agents insert with "/shortcut"."""

from __future__ import annotations

import re

import asyncpg
from asyncpg import Record

from chat.actions.conversations import clean_body
from chat.db import transaction
from chat.errors import Conflict, Invalid, NotFound
from chat.models import Agent
from chat.queries import canned
from chat.services import Services

SHORTCUT = re.compile(r"[a-z0-9_-]{1,32}")


async def create(svc: Services, actor: Agent, shortcut: str, body: str) -> Record:
    key = shortcut.strip().lower().lstrip("/")
    if not SHORTCUT.fullmatch(key):
        raise Invalid("A shortcut is 1-32 lowercase letters, digits, - or _.", "shortcut")
    text = clean_body(body)
    try:
        async with transaction(svc.pool) as conn:
            return await canned.insert(conn, shortcut=key, body=text, created_by=actor.id)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"The shortcut /{key} exists already.") from None


async def delete(svc: Services, response_id: int) -> None:
    async with transaction(svc.pool) as conn:
        if not await canned.delete(conn, response_id):
            raise NotFound("No such canned response.")
