"""Who may do what: every route, asked by every kind of principal, with the answer each one
must get written down. A route the table does not list fails the test, so a new route
cannot ship without its row."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.routing import Mount, Route

from chat.app import create_app
from chat.config import Settings
from tests.conftest import Seed
from tests.integration.test_dashboard_http import sql
from tests.support import AppProcess

PRINCIPALS = ("anonymous", "visitor_a", "visitor_b", "other_site_visitor", "agent", "admin",
              "deactivated", "signed_out")
OTHER_SITE_KEY = "pk_other_site_key"
FRAME_ORIGIN = "http://127.0.0.1:9"  # the seed site's origin


@dataclass(frozen=True)
class Row:
    """One route; ``url`` may name fixtures: {key} {other_key} {conv} {fresh} {closed}
    {site} {agent_id} {canned}. ``expect``: a status per principal, in PRINCIPALS order."""

    route: str  # "METHOD template", as the app declares it
    url: str
    expect: str
    data: dict[str, str] | None = None


SESSION = "401 401 401 401 {ok} {ok} 401 401"  # needs a session: visitors have none
ADMIN = "401 401 401 401 403 {ok} 401 401"

TABLE = [
    Row("GET /healthz", "/healthz", "200 200 200 200 200 200 200 200"),
    Row("GET /metrics", "/metrics", "401 401 401 401 401 401 401 401"),  # only with the token
    Row("GET /static/{path}", "/static/widget.css", "200 200 200 200 200 200 200 200"),
    Row("GET /setup", "/setup", "404 404 404 404 404 404 404 404"),  # agents exist
    Row("POST /setup", "/setup", "404 404 404 404 404 404 404 404",
        {"email": "eve@example.com", "name": "Eve", "password": "eve password"}),
    Row("GET /login", "/login", "200 200 200 200 200 200 200 200"),
    Row("POST /login", "/login", "401 401 401 401 401 401 401 401",
        {"email": "alex@example.com", "password": "not the password"}),
    Row("GET /profile", "/profile", SESSION.format(ok=200)),
    Row("POST /profile", "/profile", SESSION.format(ok=200), {"name": "Still Me"}),
    # The widget: a visitor reaches only their own conversations, and only on their site.
    Row("GET /widget.js", "/widget.js", "200 200 200 200 200 200 200 200"),
    Row("GET /widget/{site_key}/frame", f"/widget/{{key}}/frame?origin={FRAME_ORIGIN}",
        "200 200 200 401 200 200 200 200"),  # public, but a token from elsewhere is refused
    Row("GET /widget/{site_key}/look", "/widget/{key}/look",
        "200 200 200 401 200 200 200 200"),  # the colour is public, as is the frame
    Row("POST /widget/{site_key}/identity", "/widget/{key}/identity",
        "401 204 204 401 401 401 401 401", {"name": "Jo Brand"}),  # the visitor's own record
    Row("GET /widget/{site_key}/conversation", "/widget/{key}/conversation",
        "200 200 200 401 200 200 200 200"),
    Row("GET /widget/{site_key}/conversations", "/widget/{key}/conversations",
        "401 200 200 401 401 401 401 401"),
    Row("POST /widget/{site_key}/conversations", "/widget/{key}/conversations",
        "201 201 201 401 201 201 201 201", {"body": "Hello"}),
    Row("POST /widget/{site_key}/conversations/{conversation_id:id}/messages",
        "/widget/{key}/conversations/{conv}/messages", "401 201 404 401 401 401 401 401",
        {"body": "Me again"}),
    Row("GET /widget/{site_key}/conversations/{conversation_id:id}/older",
        "/widget/{key}/conversations/{conv}/older?before=2", "401 200 404 401 401 401 401 401"),
    Row("POST /widget/{site_key}/conversations/{conversation_id:id}/typing",
        "/widget/{key}/conversations/{conv}/typing", "401 204 404 401 401 401 401 401",
        {"typing": "1"}),
    Row("POST /widget/{site_key}/conversations/{conversation_id:id}/page",
        "/widget/{key}/conversations/{conv}/page", "401 204 404 401 401 401 401 401",
        {"page": "https://example.com/pricing"}),
    Row("POST /widget/{site_key}/conversations/{conversation_id:id}/read",
        "/widget/{key}/conversations/{conv}/read", "401 204 404 401 401 401 401 401",
        {"seq": "1"}),
    Row("GET /widget/{site_key}/conversations/{conversation_id:id}/stream",
        "/widget/{key}/conversations/{conv}/stream", "401 200 404 401 401 401 401 401"),
    Row("GET /widget/{site_key}/stream", "/widget/{key}/stream?watch={conv}-0",
        "401 200 404 401 401 401 401 401"),  # a browser's one stream, for all its tabs
    Row("GET /widget/{site_key}/stream", "/widget/{key}/stream",
        "401 200 200 401 401 401 401 401"),  # watching nothing yet
    # Visitor A's conversation asked for through another site's key: nobody gets it.
    Row("POST /widget/{site_key}/conversations/{conversation_id:id}/messages",
        "/widget/{other_key}/conversations/{conv}/messages", "401 401 401 404 401 401 401 401",
        {"body": "Sneaky"}),
    # Last of the widget's rows: it closes visitor A's conversation (End chat).
    Row("POST /widget/{site_key}/conversations/{conversation_id:id}/close",
        "/widget/{key}/conversations/{conv}/close", "401 200 404 401 401 401 401 401"),
    # The dashboard: agents and admins, with a live session.
    Row("GET /", "/", SESSION.format(ok=303)),
    Row("GET /inbox", "/inbox", SESSION.format(ok=200)),
    Row("GET /stream", "/stream", SESSION.format(ok=200)),
    Row("POST /presence/here", "/presence/here", SESSION.format(ok=204)),
    Row("POST /me/alerts", "/me/alerts", SESSION.format(ok=200), {"alerts": "all"}),
    Row("POST /presence/status", "/presence/status", SESSION.format(ok=204),
        {"status": "online"}),
    Row("GET /conversations/{conversation_id:id}", "/conversations/{conv}",
        SESSION.format(ok=200)),
    Row("GET /conversations/{conversation_id:id}/older", "/conversations/{conv}/older",
        SESSION.format(ok=200)),
    Row("POST /conversations/{conversation_id:id}/read", "/conversations/{fresh}/read",
        SESSION.format(ok=204), {"count": "1"}),
    Row("POST /conversations/{conversation_id:id}/messages", "/conversations/{fresh}/messages",
        SESSION.format(ok=201), {"body": "How can I help?"}),
    Row("POST /conversations/{conversation_id:id}/signal", "/conversations/{fresh}/signal",
        SESSION.format(ok=204), {"kind": "viewing"}),
    Row("POST /conversations/{conversation_id:id}/claim", "/conversations/{fresh}/claim",
        SESSION.format(ok=200)),
    Row("POST /conversations/{conversation_id:id}/close", "/conversations/{fresh}/close",
        SESSION.format(ok=200)),
    Row("POST /conversations/{conversation_id:id}/reopen", "/conversations/{closed}/reopen",
        SESSION.format(ok=200)),
    Row("POST /conversations/{conversation_id:id}/assign", "/conversations/{fresh}/assign",
        SESSION.format(ok=200)),
    # Admins only.
    Row("GET /settings", "/settings", ADMIN.format(ok=200)),
    Row("POST /settings/sites", "/settings/sites", ADMIN.format(ok=200),
        {"name": "Another site", "origins": "https://another.example"}),
    Row("POST /settings/sites/{site_id:id}", "/settings/sites/{site}", ADMIN.format(ok=200),
        {"name": "Test site", "origins": FRAME_ORIGIN}),
    Row("POST /settings/sites/{site_id:id}/identity", "/settings/sites/{site}/identity",
        ADMIN.format(ok=200), {"action": "off"}),
    Row("GET /agents", "/agents", ADMIN.format(ok=200)),
    Row("POST /agents", "/agents", ADMIN.format(ok=200),
        {"email": "new-{unique}@example.com", "name": "New", "password": "new password"}),
    Row("POST /agents/{agent_id:id}/deactivate", "/agents/{agent_id}/deactivate",
        ADMIN.format(ok=200)),
    Row("POST /agents/{agent_id:id}/reactivate", "/agents/{agent_id}/reactivate",
        ADMIN.format(ok=200)),
    Row("POST /agents/{agent_id:id}/role", "/agents/{agent_id}/role", ADMIN.format(ok=200),
        {"role": "admin"}),
    Row("GET /canned", "/canned", ADMIN.format(ok=200)),
    Row("POST /canned", "/canned", ADMIN.format(ok=200),
        {"shortcut": "s{unique}", "body": "Thanks!"}),
    Row("POST /canned/{response_id:id}/delete", "/canned/{canned}/delete",
        ADMIN.format(ok=200)),
    # Last: signing out ends the sessions the rows above used.
    Row("POST /logout", "/logout", SESSION.format(ok=303)),
]


def declared_routes(tmp_path: object) -> set[str]:
    settings = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "SECRET_KEY": "k" * 40,
                                  "DATABASE_URL": "postgresql://unused/db"})
    found = set()
    for route in create_app(settings).routes:
        if isinstance(route, Mount):
            found.add(f"GET {route.path}/{{path}}")
        elif isinstance(route, Route):
            found.update(f"{method} {route.path}" for method in route.methods or ()
                         if method != "HEAD")
    return found


def test_the_table_covers_every_route(tmp_path: object) -> None:
    assert {row.route for row in TABLE} == declared_routes(tmp_path)


class World:
    """The principals' credentials and the fixtures the rows name, made over HTTP."""

    def __init__(self, app: AppProcess, seed: Seed, database: str) -> None:
        self.app, self.seed, self.database = app, seed, database
        sql(database, "INSERT INTO sites (public_key, name) VALUES ($1, 'Other')", OTHER_SITE_KEY)
        self.headers: dict[str, dict[str, str]] = {"anonymous": {}}
        self.clients: dict[str, httpx.Client] = {}
        self.conversation = self._visitor("visitor_a", seed.site_key)
        self._visitor("visitor_b", seed.site_key)
        self._visitor("other_site_visitor", OTHER_SITE_KEY)
        self._sign_in("admin", seed.email, seed.password)
        for name, email in [("agent", "sam@example.com"), ("deactivated", "dee@example.com"),
                            ("signed_out", "olly@example.com")]:
            added = self.request("admin", "POST", "/agents", {  # as an admin would
                "email": email, "name": name.title(), "password": "agent password"})
            assert added.status_code == 200, added.text
            self._sign_in(name, email, "agent password")
        dee = sql(database, "SELECT id FROM agents WHERE email = 'dee@example.com'")
        assert self.request("admin", "POST", f"/agents/{dee}/deactivate").status_code == 200
        assert self.request("signed_out", "POST", "/logout").status_code == 303

    def _visitor(self, name: str, key: str) -> int:
        response = self.request("anonymous", "POST", f"/widget/{key}/conversations",
                                {"body": f"I am {name}"})
        assert response.status_code == 201, response.text
        self.headers[name] = {"X-Visitor-Token": response.json()["visitor_token"]}
        return int(response.json()["conversation"]["id"])

    def _sign_in(self, name: str, email: str, password: str) -> None:
        response = httpx.post(f"{self.app.url}/login", data={"email": email, "password": password},
                              headers={"Accept": "application/json"})
        assert response.status_code == 200, response.text
        self.clients[name] = httpx.Client(base_url=self.app.url, cookies=response.cookies,
                                          timeout=15)
        self.headers[name] = {"X-CSRF-Token": response.json()["csrf_token"]}

    def request(self, principal: str, method: str, url: str,
                data: dict[str, str] | None = None) -> httpx.Response:
        headers = {"Accept": "application/json", **self.headers[principal]}
        if principal not in self.clients:
            self.clients[principal] = httpx.Client(base_url=self.app.url, timeout=15)
        client = self.clients[principal]
        if "/stream" in url:  # endless when allowed: the status is enough
            with client.stream(method, url, headers=headers) as response:
                return response
        return client.request(method, url, headers=headers, data=data)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def fill(self, text: str) -> str:
        """The row's placeholders, with fresh fixtures where a row changes them."""
        names: dict[str, Callable[[], object]] = {
            "key": lambda: self.seed.site_key, "other_key": lambda: OTHER_SITE_KEY,
            "conv": lambda: self.conversation, "fresh": lambda: self._visitor("fresh",
                                                                             self.seed.site_key),
            "closed": self._closed, "site": lambda: self.seed.site_id,
            "agent_id": self._spare_agent, "canned": self._canned,
            "unique": lambda: uuid.uuid4().hex[:8],
        }
        for name, make in names.items():
            if "{" + name + "}" in text:
                text = text.replace("{" + name + "}", str(make()))
        return text

    def _closed(self) -> int:
        conversation = self._visitor("fresh", self.seed.site_key)
        assert self.request("admin", "POST", f"/conversations/{conversation}/close"
                            ).status_code == 200
        return conversation

    def _spare_agent(self) -> int:
        email = f"spare-{uuid.uuid4().hex[:8]}@example.com"
        return int(sql(self.database, "INSERT INTO agents (email, name, password_hash) "
                                      "VALUES ($1, 'Spare', 'x') RETURNING id", email))

    def _canned(self) -> int:
        return int(sql(self.database, "INSERT INTO canned_responses (shortcut, body) "
                                      "VALUES ($1, 'Hi') RETURNING id", uuid.uuid4().hex[:8]))


@pytest.fixture
def world(app: AppProcess, seed: Seed, database: str) -> Iterator[World]:
    world = World(app, seed, database)
    yield world
    world.close()


def test_every_route_answers_every_principal_as_written_down(world: World) -> None:
    mismatches = []
    for row in TABLE:
        method = row.route.split()[0]
        for principal, expected in zip(PRINCIPALS, row.expect.split(), strict=True):
            data = {k: world.fill(v) for k, v in (row.data or {}).items()}
            got = world.request(principal, method, world.fill(row.url), data or None)
            if got.status_code != int(expected):
                mismatches.append(f"{row.route} as {principal}: {got.status_code}, "
                                  f"expected {expected} ({got.text[:120]!r})")
    assert not mismatches, "\n".join(mismatches)
