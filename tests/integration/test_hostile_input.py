"""Hostile input, generated: every form and JSON endpoint, as each kind of principal, gets
malformed fields (NUL characters, lone surrogates, numbers beyond every column, Unicode
digits, deep nesting, wrong types, huge strings, broken encodings and origins). The answer
is never a 500, and a refused request leaves every table as it was.

The app runs in-process (nothing here streams) on the real PostgreSQL of the tests.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from chat import db
from chat.app import create_app
from chat.config import Settings
from tests.conftest import Seed
from tests.support import AppProcess

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "30"))  # per endpoint; raise to dig deeper
NASTY = ["\x00", "a\x00b", "\ud800", "x\udfffy", "²", "\u0661\u0662", "9" * 25,
         str(2**63), str(2**31), "-1", "1\n", " 1", "1.5", "1e9", "", " ", "null", "true",
         "<script>alert(1)</script>", "http://[::1", "http://x:99999", "https://a b.c",
         "%00", "\u202e", "😀" * 3000, "x" * 70_000, "a@b", "@", "#ff660", "/\\evil.example"]

hostile_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30),
    st.text(max_size=3).map(lambda s: s * 5000),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=8,
)
path_id_strategy = st.one_of(
    st.sampled_from(["0", "9" * 18, "9" * 19, "9" * 20, "1%00", "%C2%B2", "-1", "1.0", "abc"]),
    st.integers(0, 2**64).map(str),
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{id}" is filled from path_id; "{own}" is the principal's own object
    principal: str  # anonymous, visitor, agent, admin
    valid: dict[str, str] = field(default_factory=dict)  # a request it would accept
    own: str = "conversation"  # what "{own}" names: conversation, site, agent, canned


START = {"body": "Hello", "client_id": "c-1", "name": "Maria", "email": "maria@example.com",
         "page": "https://shop.example/cart", "identity_hash": "00"}
SITE = {"name": "Test site", "origins": "http://127.0.0.1:9", "color": "#2563eb",
        "greeting": "Hi!", "welcome": "Ask us.", "prechat_name": "optional",
        "prechat_email": "optional", "offline": "", "offline_message": "Away."}
ENDPOINTS = [
    Endpoint("POST", "/widget/{key}/conversations", "anonymous", START),
    Endpoint("POST", "/widget/{key}/conversations", "visitor", START),
    Endpoint("POST", "/widget/{key}/conversations/{id}/messages", "visitor",
             {"body": "More", "client_id": "c-2"}),
    Endpoint("GET", "/widget/{key}/conversation", "visitor", {"id": "{own}", "new": ""}),
    Endpoint("GET", "/widget/{key}/conversations/{id}/older", "visitor", {"before": "5"}),
    Endpoint("GET", "/widget/{key}/frame", "anonymous", {"origin": "http://127.0.0.1:9"}),
    Endpoint("POST", "/login", "anonymous",
             {"email": "alex@example.com", "password": "wrong", "next": "/inbox"}),
    Endpoint("POST", "/setup", "anonymous",
             {"email": "eve@example.com", "name": "Eve", "password": "eve password"}),
    Endpoint("POST", "/profile", "agent", {"name": "Alex"}),
    Endpoint("POST", "/profile", "agent", {"current_password": "wrong",
                                           "new_password": "a new password"}),
    Endpoint("POST", "/me/alerts", "agent", {"alerts": "all", "sound": "1"}),
    Endpoint("GET", "/inbox", "agent", {"tab": "open", "q": "maria"}),
    Endpoint("GET", "/conversations/{id}", "agent", {"tab": "mine", "q": ""}),
    Endpoint("GET", "/conversations/{id}/older", "agent", {"before": "5"}),
    Endpoint("POST", "/conversations/{id}/read", "agent", {"count": "1"}),
    Endpoint("POST", "/conversations/{id}/messages", "agent",
             {"body": "Hi!", "client_id": "a-1", "note": "1"}),
    Endpoint("POST", "/conversations/{id}/claim", "agent"),
    Endpoint("POST", "/conversations/{id}/close", "agent"),
    Endpoint("POST", "/conversations/{id}/reopen", "agent"),
    Endpoint("POST", "/conversations/{id}/assign", "agent", {"assignee_id": "1"}),
    Endpoint("POST", "/settings/sites", "admin",
             {"name": "Another", "origins": "https://another.example"}),
    Endpoint("POST", "/settings/sites/{id}", "admin", SITE, own="site"),
    Endpoint("POST", "/settings/sites/{id}/identity", "admin", {"action": "off"}, own="site"),
    Endpoint("POST", "/agents", "admin", {"email": "new@example.com", "name": "New",
                                          "password": "new password", "role": "agent"}),
    Endpoint("POST", "/agents/{id}/role", "admin", {"role": "agent"}, own="agent"),
    Endpoint("POST", "/agents/{id}/reactivate", "admin", own="agent"),
    Endpoint("POST", "/canned", "admin", {"shortcut": "thanks", "body": "Thanks!"}),
    Endpoint("POST", "/canned/{id}/delete", "admin", own="canned"),
]


@st.composite
def requests(draw: st.DrawFn, endpoint: Endpoint) -> dict[str, object]:
    """Keyword arguments for httpx: the endpoint's valid request with a field or two (or
    its body, path id or Origin) made hostile, so that the bad value gets past the rest."""
    headers: dict[str, str | bytes] = {}
    if draw(st.integers(0, 3)) == 0:  # a malformed Origin once made every widget request 500
        headers["Origin"] = draw(hostile_text.filter(_latin1)).encode("latin-1")
    names = [*endpoint.valid, "extra"]
    corrupt = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    kind = "query" if endpoint.method == "GET" else draw(st.sampled_from(["form", "json",
                                                                          "bytes"]))
    path_id = draw(st.just("{own}") | path_id_strategy)
    if kind == "json":
        values: dict[str, object] = {**endpoint.valid,
                                     **{name: draw(json_value) for name in corrupt}}
        body: dict[str, object] = {"content": json.dumps(values).encode()}
        headers["Content-Type"] = "application/json"
        if draw(st.integers(0, 9)) == 0:
            body["content"] = b"[" * 50_000 + b"]" * 50_000  # nested past any recursion limit
    elif kind == "bytes":
        body = {"content": draw(st.binary(max_size=200))}
        headers["Content-Type"] = draw(st.sampled_from([
            "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
            "application/json", "text/plain"]))
    else:
        text = hostile_text.filter(_encodable)
        if kind == "query":  # a real server refuses heads over 32 KiB before the app
            text = text.filter(lambda value: len(value.encode()) < 4000)
        values = {**endpoint.valid, **{name: draw(text) for name in corrupt}}
        body = {"params" if kind == "query" else "data": values}
    return {"path_id": path_id, "headers": headers, **body}


def _latin1(text: str) -> bool:
    return text.isprintable() and all(ord(c) < 256 for c in text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Principals:
    """Credentials of each kind of principal, and the objects they own."""

    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)
    own: dict[str, int] = field(default_factory=dict)


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    database: db.Pool
    seed: Seed
    principals: Principals
    tried: int = 0
    refused: int = 0

    def run(self, endpoint: Endpoint, request: dict[str, object]) -> None:
        self.loop.run_until_complete(self._check(endpoint, request))

    async def _check(self, endpoint: Endpoint, request: dict[str, object]) -> None:
        own = str(self.principals.own[endpoint.own])
        path_id = str(request.pop("path_id")).replace("{own}", own)
        url = endpoint.path.replace("{key}", self.seed.site_key).replace("{id}", path_id)
        for part in ("params", "data", "content"):
            if isinstance(request.get(part), dict):
                request[part] = {k: v.replace("{own}", own) if isinstance(v, str) else v
                                 for k, v in request[part].items()}  # type: ignore[union-attr]
        headers = {"Accept": "application/json",
                   **self.principals.headers.get(endpoint.principal, {}),
                   **request.pop("headers")}  # type: ignore[dict-item]
        before = await self._counts()
        self.client.cookies = self.principals.cookies.get(endpoint.principal, {})
        response = await self.client.request(endpoint.method, url, headers=headers,
                                             **request)  # type: ignore[arg-type]
        self.tried += 1
        assert response.status_code < 500, (endpoint, url, request, response.text[:500])
        if response.status_code >= 400:
            self.refused += 1
            assert await self._counts() == before, (endpoint, url, request, response.text)

    async def _counts(self) -> dict[str, int]:
        rows = await self.database.fetch(
            "SELECT relname, n FROM (VALUES " + ", ".join(
                f"('{t}', (SELECT count(*) FROM {t}))" for t in TABLES) + ") AS c(relname, n)")
        return {row["relname"]: row["n"] for row in rows}


TABLES = ("sites", "agents", "agent_sessions", "visitors", "conversations", "messages",
          "agent_reads", "canned_responses")


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://chat.test") as client:
        yield client


async def _principals(client: httpx.AsyncClient, seed: Seed, pool: db.Pool) -> Principals:
    found = Principals()
    started = await client.post(f"/widget/{seed.site_key}/conversations",
                                data={"body": "I am the visitor"})
    found.headers["visitor"] = {"X-Visitor-Token": started.json()["visitor_token"]}
    found.own["conversation"] = started.json()["conversation"]["id"]
    for principal in ("agent", "admin"):  # the seed admin acts as both
        login = await client.post("/login", data={"email": seed.email,
                                                  "password": seed.password})
        found.headers[principal] = {"X-CSRF-Token": login.json()["csrf_token"]}
        found.cookies[principal] = dict(login.cookies)
    found.own["site"] = seed.site_id
    found.own["agent"] = await pool.fetchval(
        "INSERT INTO agents (email, name, password_hash) VALUES ('spare@example.com', 'Spare', "
        "'x') RETURNING id")
    found.own["canned"] = await pool.fetchval(
        "INSERT INTO canned_responses (shortcut, body) VALUES ('hi', 'Hello') RETURNING id")
    return found


@pytest.fixture
def world(seed: Seed, database: str, tmp_path: Path) -> Iterator[World]:
    settings_ = Settings.from_env({"DATABASE_URL": database, "CHAT_DATA_DIR": str(tmp_path),
                                   "SECRET_KEY": "k" * 40, "RATE_LIMITS": "off"})
    loop = asyncio.new_event_loop()
    app = create_app(settings_)
    serving = running(app)
    client = loop.run_until_complete(serving.__aenter__())
    pool = loop.run_until_complete(db.create_pool(database, max_size=2))
    principals = loop.run_until_complete(_principals(client, seed, pool))
    yield World(loop, client, pool, seed, principals)
    loop.run_until_complete(pool.close())
    loop.run_until_complete(serving.__aexit__(None, None, None))
    loop.close()


@pytest.mark.parametrize("endpoint", ENDPOINTS,
                         ids=[f"{e.method} {e.path} as {e.principal}" for e in ENDPOINTS])
def test_hostile_input_gets_a_4xx_and_leaves_nothing_half_written(
    world: World, endpoint: Endpoint,
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=requests(endpoint))
    def attack(request: dict[str, object]) -> None:
        world.run(endpoint, request)

    attack()
    assert world.tried >= EXAMPLES // 2  # the examples did reach the app


STREAMS = [
    Endpoint("GET", "/stream", "agent",
             {"inbox": "open", "conversation": "{own}", "after": "0", "watch": "{own}-0"}),
    Endpoint("GET", "/widget/{key}/stream", "visitor", {"watch": "{own}-0"}),
    Endpoint("GET", "/widget/{key}/conversations/{id}/stream", "visitor", {"after": "0"}),
]
cursor_text = st.one_of(hostile_text.filter(_latin1).filter(lambda v: len(v) < 4000),
                        st.sampled_from([
    "1-1", "1-²", "²-1", "1-99999999999999999999", "-1-1", "1-1-1", ",", "1-0," * 60, " 1-0 ",
    "1-0,,2-0", "0-0"]))


@pytest.mark.parametrize("endpoint", STREAMS,
                         ids=[f"{e.method} {e.path} as {e.principal}" for e in STREAMS])
def test_hostile_stream_cursors_get_a_4xx_or_a_stream(
    app: AppProcess, seed: Seed, endpoint: Endpoint,
) -> None:
    """Streams never end in-process, so these go to a real server and read only the status."""
    with httpx.Client(base_url=app.url, timeout=10) as client:
        started = client.post(f"/widget/{seed.site_key}/conversations", data={"body": "Hi"})
        conversation, token = started.json()["conversation"]["id"], started.json()["visitor_token"]
        login = client.post("/login", data={"email": seed.email, "password": seed.password},
                            headers={"Accept": "application/json"})
        credentials = {"visitor": {"X-Visitor-Token": token}, "agent": {}}[endpoint.principal]

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(corrupt=st.dictionaries(st.sampled_from([*endpoint.valid, "Last-Event-ID"]),
                                       cursor_text, min_size=1, max_size=2))
        def attack(corrupt: dict[str, str]) -> None:
            query = {k: v.replace("{own}", str(conversation)) for k, v in endpoint.valid.items()}
            headers: dict[str, str | bytes] = {"Accept": "text/event-stream", **credentials}
            for name, value in corrupt.items():
                if name == "Last-Event-ID":  # as a client can send it: no edge whitespace
                    headers[name] = value.strip().encode("latin-1") or b"x"
                else:
                    query[name] = value
            url = endpoint.path.replace("{key}", seed.site_key).replace("{id}", str(conversation))
            with client.stream("GET", url, params=query, headers=headers,
                               cookies=login.cookies) as response:
                assert response.status_code < 500, (url, query, headers, response.read())

        attack()
