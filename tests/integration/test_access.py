"""Who may do what, and what bad input gets: clear 4xx answers and nothing half-written."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from chat import db
from tests.clients import Agent, Visitor
from tests.conftest import Seed
from tests.support import AppProcess, run_async


@pytest.fixture
async def alice(app: AppProcess, seed: Seed) -> AsyncIterator[Visitor]:
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("I am Alice")).status_code == 201
    yield visitor
    await visitor.close()


def count_rows(database: str, table: str) -> int:
    async def count() -> int:
        async with db.connect(database) as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))

    return run_async(count())


async def test_a_visitor_reaches_only_their_own_conversations(
    app: AppProcess, seed: Seed, alice: Visitor,
) -> None:
    bob = Visitor(app.url, seed.site_key)
    assert (await bob.start("I am Bob")).status_code == 201
    stolen = alice.conversation_id
    assert (await bob.send("let me in", conversation_id=stolen)).status_code == 404
    stream = await bob.http.get(f"/widget/{seed.site_key}/conversations/{stolen}/stream",
                                headers=bob.headers)
    assert stream.status_code == 404
    anonymous = Visitor(app.url, seed.site_key)
    assert (await anonymous.send("hi", conversation_id=stolen)).status_code == 401
    forged = Visitor(app.url, seed.site_key, token="not-a-real-token")
    response = await forged.send("hi", conversation_id=stolen)
    assert response.status_code == 401
    assert "not valid" in response.json()["error"]
    await bob.close()


async def test_dashboard_routes_need_a_session_and_unsafe_ones_the_csrf_token(
    app: AppProcess, seed: Seed, alice: Visitor,
) -> None:
    conversation = alice.conversation_id
    async with httpx.AsyncClient(base_url=app.url) as anonymous:
        assert (await anonymous.get("/stream")).status_code == 401
        reply = await anonymous.post(f"/conversations/{conversation}/messages",
                                     data={"body": "hi"})
        assert reply.status_code == 401
    agent = Agent(app.url)
    await agent.login(seed.email, seed.password)
    no_token = await agent.http.post(f"/conversations/{conversation}/claim")
    assert no_token.status_code == 403
    wrong = await agent.http.post(f"/conversations/{conversation}/claim",
                                  headers={"X-CSRF-Token": "wrong"})
    assert wrong.status_code == 403
    form_token = await agent.http.post(f"/conversations/{conversation}/claim",
                                       data={"csrf_token": agent.csrf})
    assert form_token.status_code == 200
    assert form_token.json()["conversation"]["status"] == "active"
    await agent.close()


async def test_wrong_credentials_get_one_generic_message(app: AppProcess, seed: Seed) -> None:
    async with httpx.AsyncClient(base_url=app.url) as http:
        for email, password in [(seed.email, "wrong password"), ("nobody@example.com", "x")]:
            response = await http.post("/login", data={"email": email, "password": password},
                                       headers={"Accept": "application/json"})
            assert response.status_code == 401
            assert response.json() == {"error": "Wrong email or password."}
            assert "chat_session" not in response.cookies


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("", 422, "Type a message first."),
        ("   \n  ", 422, "Type a message first."),
        ("x" * 5001, 422, "at most 5,000 characters"),
    ],
)
async def test_bad_messages_are_refused_and_nothing_is_stored(
    app: AppProcess, seed: Seed, alice: Visitor, database: str, body: str, status: int,
    message: str,
) -> None:
    before = count_rows(database, "messages")
    response = await alice.send(body)
    assert response.status_code == status
    assert message in response.json()["error"]
    fresh = Visitor(app.url, seed.site_key)
    visitors_before = count_rows(database, "visitors")
    assert (await fresh.start(body)).status_code == status
    assert count_rows(database, "visitors") == visitors_before  # no visitor without a message
    assert count_rows(database, "messages") == before
    await fresh.close()


async def test_malformed_requests_get_clear_4xx_answers(
    app: AppProcess, seed: Seed, alice: Visitor, database: str,
) -> None:
    base = f"/widget/{seed.site_key}/conversations"
    http = alice.http
    bad_json = await http.post(base, content=b"{not json",
                               headers={"Content-Type": "application/json"})
    assert (bad_json.status_code, bad_json.json()["error"]) == (422, "The body is not valid JSON.")
    not_object = await http.post(base, json=[1, 2])
    assert not_object.status_code == 422
    wrong_type = await http.post(base, json={"body": 42})
    assert wrong_type.json() == {"error": "body must be text.", "field": "body"}
    bad_email = await http.post(base, json={"body": "hi", "email": "not-an-email"})
    assert (bad_email.status_code, bad_email.json()["field"]) == (422, "email")
    bad_client_id = await http.post(base, json={"body": "hi", "client_id": "has spaces"})
    assert bad_client_id.json()["field"] == "client_id"
    huge = await http.post(base, content=b"body=" + b"x" * 70_000,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert huge.status_code == 413
    unknown_site = await http.post("/widget/pk_nope_nope_nope/conversations", data={"body": "x"})
    assert unknown_site.status_code == 404
    assert "site key is unknown" in unknown_site.json()["error"]
    bad_cursor = await http.get(f"{base}/{alice.conversation_id}/stream?after=abc",
                                headers=alice.headers)
    assert bad_cursor.status_code == 422
    assert count_rows(database, "conversations") == 1  # only Alice's


async def test_htmx_requests_get_html_fragments_for_errors_and_entries(
    app: AppProcess, seed: Seed, alice: Visitor,
) -> None:
    headers = {**alice.headers, "HX-Request": "true"}
    url = f"/widget/{seed.site_key}/conversations/{alice.conversation_id}/messages"
    ok = await alice.http.post(url, headers=headers, data={"body": "<b>hi</b>"})
    assert ok.status_code == 201
    assert ok.headers["content-type"].startswith("text/html")
    assert "&lt;b&gt;hi&lt;/b&gt;" in ok.text  # escaped, never markup
    assert f'id="entry-{alice.conversation_id}-2"' in ok.text
    bad = await alice.http.post(url, headers=headers, data={"body": ""})
    assert bad.status_code == 422
    assert 'role="alert"' in bad.text and "Type a message first." in bad.text


async def test_state_changes_on_a_conversation_changed_meanwhile_answer_with_its_state(
    app: AppProcess, seed: Seed, alice: Visitor,
) -> None:
    agent = Agent(app.url)
    await agent.login(seed.email, seed.password)
    conversation = alice.conversation_id
    assert conversation is not None
    assert (await agent.act(conversation, "claim")).status_code == 200
    again = await agent.act(conversation, "claim")
    assert again.status_code == 409
    assert "Alex already took this conversation" in again.json()["error"]
    assert (await agent.act(conversation, "close")).status_code == 200
    assert (await agent.act(conversation, "close")).status_code == 409
    closed = await alice.send("hello?")
    assert closed.status_code == 409
    assert "Start a new one" in closed.json()["error"]
    assert (await agent.act(999999, "close")).status_code == 404
    assert (await agent.act(conversation, "explode")).status_code == 404
    await agent.close()
