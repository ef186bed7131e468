"""The widget's HTTP surface: who may embed it, CORS, limits, pre-chat rules, its views."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import httpx

from chat import db
from tests.clients import Agent, Visitor
from tests.conftest import Seed
from tests.integration.test_dashboard_http import sql
from tests.support import AppProcess, run_async

ALLOWED = "http://127.0.0.1:9"  # the seed site's only origin


def set_site(database: str, **columns: object) -> None:
    async def update() -> None:
        async with db.connect(database) as conn:
            for column, value in columns.items():
                await conn.execute(f"UPDATE sites SET {column} = $1", value)

    run_async(update())


def count(database: str, table: str) -> int:
    async def select() -> int:
        async with db.connect(database) as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))

    return run_async(select())


def test_only_the_sites_origins_may_frame_the_widget(
    app: AppProcess, seed: Seed, database: str,
) -> None:
    frame = f"{app.url}/widget/{seed.site_key}/frame"
    page = httpx.get(frame, params={"origin": ALLOWED})
    assert page.status_code == 200
    assert "frame-ancestors http://127.0.0.1:9;" in page.headers["content-security-policy"]
    assert 'aria-label="Message"' in page.text
    evil = httpx.get(frame, params={"origin": "https://evil.example"},
                     headers={"Accept": "text/html"})
    assert evil.status_code == 403
    assert "<!doctype html>" in evil.text and "may not embed this chat" in evil.text
    assert httpx.get(frame).status_code == 422  # which page embeds it?
    set_site(database, allowed_origins=[])  # no origins listed: any page may embed it
    anywhere = httpx.get(frame, params={"origin": "https://evil.example"})
    assert "frame-ancestors *;" in anywhere.headers["content-security-policy"]


def test_unknown_and_disabled_sites_get_a_404_page_not_a_stack_trace(
    app: AppProcess, seed: Seed, database: str,
) -> None:
    for key in ("pk_unknown_site_key", seed.site_key):
        page = httpx.get(f"{app.url}/widget/{key}/frame", params={"origin": ALLOWED},
                         headers={"Accept": "text/html"})
        assert page.status_code == 404
        assert "site key is unknown or disabled" in page.text
        assert "Traceback" not in page.text
        set_site(database, enabled=False)


def test_cors_lets_the_sites_origins_call_the_api_and_nobody_else(
    app: AppProcess, seed: Seed,
) -> None:
    url = f"{app.url}/widget/{seed.site_key}/conversations"
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, x-visitor-token"}
    allowed = httpx.options(url, headers={"Origin": ALLOWED, **preflight})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "X-Visitor-Token" in allowed.headers["access-control-allow-headers"]
    refused = httpx.options(url, headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers

    posted = httpx.post(url, json={"body": "hi"}, headers={"Origin": ALLOWED})
    assert posted.status_code == 201
    assert posted.headers["access-control-allow-origin"] == ALLOWED
    assert posted.headers["access-control-expose-headers"] == "X-Visitor-Token"
    foreign = httpx.post(url, json={"body": "hi"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403  # a page elsewhere may not write, even unread
    assert "access-control-allow-origin" not in foreign.headers


async def test_starting_conversations_is_rate_limited_per_visitor_and_per_address(
    seed: Seed, app_env: dict[str, str], start_app: Callable[..., AppProcess],
) -> None:
    app = start_app(dict(app_env, RATE_LIMITS="on"))
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("first")).status_code == 201
    for n in range(5):
        assert (await visitor.start(f"again {n}")).status_code == 201
    limited = await visitor.start("one too many")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "continue in the current one" in limited.json()["error"]
    assert "Try again in" in limited.json()["error"]
    for n in range(13):  # 20 starts from this address in all (the refused one counts too)...
        assert (await Visitor(app.url, seed.site_key).start(f"new {n}")).status_code == 201
    from_address = await Visitor(app.url, seed.site_key).start("the 21st")
    assert from_address.status_code == 429  # ...and then no more
    assert "from your network" in from_address.json()["error"]
    await visitor.close()


async def test_prechat_and_offline_rules_refuse_a_start_without_storing_anything(
    app: AppProcess, seed: Seed, database: str,
) -> None:
    set_site(database, settings={"prechat_name": "required"})
    visitor = Visitor(app.url, seed.site_key)
    nameless = await visitor.start("hello")
    assert (nameless.status_code, nameless.json()["field"]) == (422, "name")
    set_site(database, settings={"offline": True})
    no_email = await visitor.start("hello", name="Maria")
    assert (no_email.status_code, no_email.json()["field"]) == (422, "email")
    bad_email = await visitor.start("hello", email="maria@")
    assert (bad_email.status_code, bad_email.json()["field"]) == (422, "email")
    assert count(database, "visitors") == count(database, "conversations") == 0
    assert (await visitor.start("hello", email="maria@example.com")).status_code == 201
    page = await visitor.http.get(f"/widget/{seed.site_key}/frame", params={"origin": ALLOWED})
    assert "We&#39;re away right now" in page.text
    await visitor.close()


def test_the_loader_is_small_cacheable_javascript(app: AppProcess) -> None:
    loader = httpx.get(f"{app.url}/widget.js")
    assert loader.status_code == 200
    assert loader.headers["content-type"].startswith("text/javascript")
    assert "public" in loader.headers["cache-control"]
    # On every page of the customer's site: what crosses the network (gzipped) stays small.
    assert len(loader.content) < 10 * 1024
    assert len(gzip.compress(loader.content)) < 4 * 1024
    assert "window.ChatWidget" in loader.text


async def test_the_visitor_sees_the_welcome_then_their_conversation_and_its_history(
    app: AppProcess, seed: Seed,
) -> None:
    base = f"/widget/{seed.site_key}"
    visitor = Visitor(app.url, seed.site_key)
    welcome = await visitor.http.get(base + "/conversation")
    assert 'data-view="welcome"' in welcome.text
    assert (await visitor.start("message 0")).status_code == 201
    for n in range(1, 40):
        assert (await visitor.send(f"message {n}")).status_code == 201
    view = await visitor.http.get(base + "/conversation", headers=visitor.headers)
    assert 'data-view="conversation"' in view.text
    assert view.text.count('class="entry visitor"') == 30  # the latest page
    assert "message 39" in view.text and "message 9<" not in view.text
    assert 'data-seq="40"' in view.text  # where the stream takes over
    assert visitor.token is not None and visitor.token not in view.text  # kept out of the page
    older = await visitor.http.get(
        f"{base}/conversations/{visitor.conversation_id}/older?before=11", headers=visitor.headers)
    assert older.text.count('class="entry visitor"') == 10
    assert "message 0" in older.text and 'data-action="older"' not in older.text
    fresh = await visitor.http.get(base + "/conversation?new=1", headers=visitor.headers)
    assert 'data-view="welcome"' in fresh.text
    past = await visitor.http.get(base + "/conversations", headers=visitor.headers)
    assert f'data-id="{visitor.conversation_id}"' in past.text
    stranger = await Visitor(app.url, seed.site_key).http.get(base + "/conversations")
    assert stranger.status_code == 401
    await visitor.close()


async def test_the_visitor_ends_the_chat_for_both_sides_once_and_only_their_own(
    app: AppProcess, seed: Seed, database: str,
) -> None:
    visitor, stranger = Visitor(app.url, seed.site_key), Visitor(app.url, seed.site_key)
    assert (await visitor.start("Thanks, that was all")).status_code == 201
    assert (await stranger.start("I am someone else")).status_code == 201
    conversation = visitor.conversation_id
    close = f"/widget/{seed.site_key}/conversations/{conversation}/close"
    refused = await stranger.http.post(close, headers=stranger.headers)
    assert refused.status_code == 404  # neither whose it is nor whether it exists
    agent = Agent(app.url)
    await agent.login(seed.email, seed.password)
    async with agent.stream(conversation_id=conversation) as stream:
        ended = await visitor.http.post(close, headers={**visitor.headers, "HX-Request": "true"})
        assert ended.status_code == 200
        assert 'data-status="closed"' in ended.text and 'data-action="new"' in ended.text
        assert "You ended the chat" in ended.text  # the widget's own words for it
        events = await stream.until(lambda es: any("The visitor ended the chat" in e.data
                                                   for e in es))
        assert any('data-status="closed"' in e.data for e in events)  # the agent's header, live
    again = await visitor.http.post(close, headers=visitor.headers)  # another tab, a retry
    assert again.status_code == 200
    assert again.json() == {"conversation": {"id": conversation, "status": "closed"}}
    by_visitor = ("SELECT count(*) FROM messages WHERE conversation_id = $1 AND kind = 'activity'"
                  " AND agent_id IS NULL AND meta->>'by' = 'visitor'")
    assert sql(database, by_visitor, conversation) == 1  # once, and the visitor's doing
    assert sql(database, "SELECT status FROM conversations WHERE id = $1",
               stranger.conversation_id) == "waiting"
    await agent.close()
    await visitor.close()
    await stranger.close()
