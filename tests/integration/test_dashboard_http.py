"""The dashboard's HTTP surface: sessions, roles, CSRF, set-up, team management, races."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from chat import db
from chat.actions.agents import create_agent
from tests.clients import Agent, Visitor
from tests.conftest import Seed
from tests.support import AppProcess, run_async

HTML = {"Accept": "text/html"}
HTMX = {"HX-Request": "true"}


def sql(database: str, query: str, *args: object) -> object:
    async def run() -> object:
        async with db.connect(database) as conn:
            return await conn.fetchval(query, *args)

    return run_async(run())


@pytest.fixture
def sam(seed: Seed, database: str) -> tuple[str, str]:
    """A second agent, without the admin role."""

    async def add() -> None:
        async with db.connect(database) as conn:
            await create_agent(conn, email="sam@example.com", name="Sam", password="sam password")

    run_async(add())
    return "sam@example.com", "sam password"


def signed_in(app: AppProcess, email: str, password: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=app.url, timeout=15)
    response = client.post("/login", data={"email": email, "password": password},
                           headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    return client, response.json()["csrf_token"]


@pytest.fixture
def conversation(app: AppProcess, seed: Seed) -> int:
    response = httpx.post(f"{app.url}/widget/{seed.site_key}/conversations",
                          data={"body": "Hello from the widget", "name": "Maria"})
    return int(response.json()["conversation"]["id"])


PAGES = ["/inbox", "/inbox?tab=mine", "/conversations/{c}", "/profile"]
ADMIN_PAGES = ["/settings", "/agents", "/canned"]


def test_pages_need_a_session_and_admin_pages_the_admin_role(
    app: AppProcess, seed: Seed, sam: tuple[str, str], conversation: int,
) -> None:
    anonymous = httpx.Client(base_url=app.url)
    for page in PAGES + ADMIN_PAGES:
        response = anonymous.get(page.format(c=conversation), headers=HTML)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/login?next=")
    assert anonymous.get("/stream").status_code == 401
    refused = anonymous.post(f"/conversations/{conversation}/claim", headers=HTMX)
    assert (refused.status_code, refused.headers["hx-redirect"]) == (401, "/login")

    agent, _ = signed_in(app, *sam)
    admin, _ = signed_in(app, seed.email, seed.password)
    for page in PAGES:
        assert agent.get(page.format(c=conversation), headers=HTML).status_code == 200, page
    for page in ADMIN_PAGES:
        assert agent.get(page, headers=HTML).status_code == 403, page
        assert admin.get(page, headers=HTML).status_code == 200, page
    assert anonymous.get("/", headers=HTML).headers["location"].startswith("/login")
    assert admin.get("/", headers=HTML).headers["location"] == "/inbox"


def test_admin_changes_are_refused_to_agents_and_unsafe_requests_need_the_csrf_token(
    app: AppProcess, seed: Seed, sam: tuple[str, str], conversation: int, database: str,
) -> None:
    agent, agent_csrf = signed_in(app, *sam)
    forms = {
        "/agents": {"name": "Eve", "email": "eve@example.com", "password": "eve password"},
        "/canned": {"shortcut": "hi", "body": "Hello!"},
        "/settings/sites": {"name": "Another", "origins": ""},
        f"/settings/sites/{seed.site_id}": {"name": "Renamed", "origins": ""},
        f"/settings/sites/{seed.site_id}/identity": {"action": "on"},
    }
    for path, form in forms.items():
        response = agent.post(path, data={**form, "csrf_token": agent_csrf})
        assert response.status_code == 403, path
    admin, admin_csrf = signed_in(app, seed.email, seed.password)
    unsafe = [*forms, f"/conversations/{conversation}/claim",
              f"/conversations/{conversation}/messages", f"/conversations/{conversation}/read",
              "/profile", "/logout"]
    for path in unsafe:
        assert admin.post(path, data=forms.get(path, {"body": "x"})).status_code == 403, path
        forged = admin.post(path, data={**forms.get(path, {}), "csrf_token": agent_csrf})
        assert forged.status_code == 403, path  # another session's token does not count
    assert sql(database, "SELECT count(*) FROM agents") == 2
    assert sql(database, "SELECT name FROM sites") == "Test site"
    assert sql(database, "SELECT identity_secret FROM sites") is None
    assert sql(database, "SELECT status FROM conversations") == "waiting"
    assert admin.post("/canned", data={**forms["/canned"], "csrf_token": admin_csrf},
                      headers=HTML).status_code == 303


def test_deactivation_ends_the_agents_sessions_and_open_streams(
    app: AppProcess, seed: Seed, sam: tuple[str, str], database: str,
) -> None:
    agent, _ = signed_in(app, *sam)
    admin, admin_csrf = signed_in(app, seed.email, seed.password)
    sam_id = sql(database, "SELECT id FROM agents WHERE email = $1", sam[0])
    with agent.stream("GET", "/stream", timeout=httpx.Timeout(10, read=15)) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: hello"
        response = admin.post(f"/agents/{sam_id}/deactivate", data={"csrf_token": admin_csrf},
                              headers=HTML)
        assert response.status_code == 303
        rest = list(lines)  # the stream ends by itself...
    assert "event: reload" in rest  # ...telling the page to reload (to the sign-in page)
    assert agent.get("/inbox", headers=HTML).status_code == 303
    again = httpx.post(f"{app.url}/login", data={"email": sam[0], "password": sam[1]},
                       headers={"Accept": "application/json"})
    assert again.status_code == 401
    assert again.json()["error"] == "Wrong email or password."


def test_the_last_admin_cannot_be_demoted_or_deactivated(
    app: AppProcess, seed: Seed, sam: tuple[str, str],
) -> None:
    admin, csrf = signed_in(app, seed.email, seed.password)
    demote = admin.post(f"/agents/{seed.agent_id}/role",
                        data={"role": "agent", "csrf_token": csrf}, headers=HTML)
    assert demote.status_code == 409
    assert "last active admin" in demote.text
    itself = admin.post(f"/agents/{seed.agent_id}/deactivate", data={"csrf_token": csrf},
                        headers=HTML)
    assert itself.status_code == 409


async def test_two_agents_claiming_at_once_exactly_one_wins_and_the_other_sees_who(
    app: AppProcess, seed: Seed, sam: tuple[str, str], database: str,
) -> None:
    alex, sam_agent = Agent(app.url), Agent(app.url)
    await alex.login(seed.email, seed.password)
    await sam_agent.login(*sam)
    for round_ in range(5):
        visitor = Visitor(app.url, seed.site_key)
        assert (await visitor.start(f"race {round_}")).status_code == 201
        conversation = visitor.conversation_id
        assert conversation is not None
        results = await asyncio.gather(alex.act(conversation, "claim"),
                                       sam_agent.act(conversation, "claim"))
        assert sorted(r.status_code for r in results) == [200, 409]
        winner = next(r for r in results if r.status_code == 200).json()["conversation"]
        loser = next(r for r in results if r.status_code == 409).json()
        assert f"{winner['assignee_name']} already took this conversation" in loser["error"]
        assert loser["conversation"]["assignee_id"] == winner["assignee_id"]
        joined = sql(database, "SELECT count(*) FROM messages WHERE conversation_id = $1 "
                               "AND kind = 'activity'", conversation)
        assert joined == 1  # one "joined" line, never two
        await visitor.close()
    await alex.close()
    await sam_agent.close()


def test_first_run_set_up_creates_one_admin_then_disappears(
    database: str, app_env: dict[str, str], start_app: Callable[..., AppProcess],
) -> None:
    app = start_app(app_env)  # no seed: no agent at all
    browser = httpx.Client(base_url=app.url)
    assert browser.get("/login", headers=HTML).headers["location"] == "/setup"
    page = browser.get("/setup", headers=HTML)
    assert page.status_code == 200 and "Create account" in page.text
    bad = browser.post("/setup", data={"name": "Ada", "email": "ada@", "password": "x"},
                       headers=HTML)
    assert bad.status_code == 422 and "not a valid email" in bad.text
    made = browser.post("/setup", data={"name": "Ada", "email": "ada@example.com",
                                        "password": "ada password"}, headers=HTML)
    assert (made.status_code, made.headers["location"]) == (303, "/inbox")
    assert browser.get("/inbox", headers=HTML).status_code == 200  # signed in
    assert httpx.get(f"{app.url}/setup", headers=HTML).status_code == 404
    late = httpx.post(f"{app.url}/setup", data={"name": "Eve", "email": "eve@example.com",
                                                "password": "eve password"})
    assert late.status_code == 404
    assert sql(database, "SELECT count(*) FROM agents") == 1
    assert sql(database, "SELECT role FROM agents") == "admin"


def test_failed_sign_ins_are_throttled(
    seed: Seed, app_env: dict[str, str], start_app: Callable[..., AppProcess],
) -> None:
    app = start_app(dict(app_env, RATE_LIMITS="on"))
    login = {"email": seed.email, "password": "wrong"}
    for _ in range(10):
        assert httpx.post(f"{app.url}/login", data=login).status_code == 401
    throttled = httpx.post(f"{app.url}/login", data={**login, "password": seed.password},
                           headers=HTML)
    assert throttled.status_code == 429
    assert "Too many failed sign-ins" in throttled.text


def test_an_expired_session_on_an_htmx_request_is_sent_to_the_sign_in_page(
    app: AppProcess, seed: Seed, conversation: int, database: str,
) -> None:
    admin, csrf = signed_in(app, seed.email, seed.password)
    sql(database, "UPDATE agent_sessions SET expires_at = now() - interval '1 second'")
    response = admin.post(f"/conversations/{conversation}/claim",
                          headers={**HTMX, "X-CSRF-Token": csrf})
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/login"
    assert "<!doctype html>" not in response.text  # a fragment for htmx, never a whole page


def test_search_finds_conversations_by_name_email_and_message_text(
    app: AppProcess, seed: Seed,
) -> None:
    for name, email, body in [("Maria Silva", "maria@example.com", "my invoice is wrong"),
                              ("John Roe", "john@example.org", "where is the parcel")]:
        httpx.post(f"{app.url}/widget/{seed.site_key}/conversations",
                   data={"body": body, "name": name, "email": email})
    admin, _ = signed_in(app, seed.email, seed.password)
    for query, found, missing in [("silva", "Maria Silva", "John Roe"),
                                  ("example.org", "John Roe", "Maria Silva"),
                                  ("invoice", "Maria Silva", "John Roe")]:
        page = admin.get("/inbox", params={"q": query}, headers=HTML)
        assert found in page.text and missing not in page.text, query


def test_admins_manage_sites_team_and_canned_responses(
    app: AppProcess, seed: Seed, conversation: int, database: str,
) -> None:
    admin, csrf = signed_in(app, seed.email, seed.password)
    saved = admin.post(f"/settings/sites/{seed.site_id}", headers=HTML, data={
        "csrf_token": csrf, "name": "Acme", "origins": "https://acme.test\nhttp://localhost:8080",
        "color": "#ff6600", "greeting": "Hello!", "welcome": "Ask away.",
        "prechat_name": "required", "prechat_email": "off", "offline_message": "Away.",
    })
    assert saved.status_code == 303
    assert sql(database, "SELECT allowed_origins FROM sites") == ["https://acme.test",
                                                                  "http://localhost:8080"]
    bad = admin.post(f"/settings/sites/{seed.site_id}", headers=HTML, data={
        "csrf_token": csrf, "name": "Acme", "origins": "", "color": "orange"})
    assert bad.status_code == 422 and "colour" in bad.text
    assert sql(database, "SELECT settings->>'color' FROM sites") == "#ff6600"
    page = admin.get("/settings", headers=HTML)
    assert 'data-site="pk_test_site_0001"' in page.text.replace("&#34;", '"')

    assert admin.post("/canned", data={"csrf_token": csrf, "shortcut": "thanks",
                                       "body": "Thanks for waiting!"}).json() == {"ok": True}
    duplicate = admin.post("/canned", headers=HTML, data={"csrf_token": csrf,
                                                          "shortcut": "thanks", "body": "x"})
    assert duplicate.status_code == 409
    view = admin.get(f"/conversations/{conversation}", headers=HTML)
    assert 'data-shortcut="thanks"' in view.text

    added = admin.post("/agents", headers=HTML, data={
        "csrf_token": csrf, "name": "Kim", "email": "kim@example.com", "password": "kim password"})
    assert added.status_code == 303
    assert "Kim" in admin.get("/agents", headers=HTML).text


def test_agents_change_their_own_name_and_password(
    app: AppProcess, seed: Seed, sam: tuple[str, str],
) -> None:
    agent, csrf = signed_in(app, *sam)
    renamed = agent.post("/profile", data={"csrf_token": csrf, "name": "Samantha"}, headers=HTML)
    assert renamed.status_code == 200 and "Saved." in renamed.text
    assert "Samantha" in agent.get("/inbox", headers=HTML).text
    wrong = agent.post("/profile", headers=HTML, data={
        "csrf_token": csrf, "current_password": "nope", "new_password": "a new password"})
    assert wrong.status_code == 422 and "current password is not right" in wrong.text
    changed = agent.post("/profile", headers=HTML, data={
        "csrf_token": csrf, "current_password": sam[1], "new_password": "a new password"})
    assert changed.status_code == 200
    signed_in(app, sam[0], "a new password")
    old = httpx.post(f"{app.url}/login", data={"email": sam[0], "password": sam[1]})
    assert old.status_code == 401


async def test_assigning_transfers_a_conversation_and_says_so_in_its_history(
    app: AppProcess, seed: Seed, sam: tuple[str, str], conversation: int, database: str,
) -> None:
    alex = Agent(app.url)
    await alex.login(seed.email, seed.password)
    sam_id = sql(database, "SELECT id FROM agents WHERE email = $1", sam[0])
    moved = await alex.act(conversation, "assign", assignee_id=str(sam_id))
    assert moved.status_code == 200
    assert moved.json()["conversation"]["assignee_name"] == "Sam"
    assert sql(database, "SELECT body FROM messages WHERE kind = 'activity'") == (
        "Alex assigned the conversation to Sam")
    nobody = await alex.act(conversation, "assign", assignee_id="999999")
    assert nobody.status_code == 422
    await alex.close()
