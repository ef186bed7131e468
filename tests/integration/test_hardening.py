"""The edges hold against a hostile client: throttles that cannot be dodged, limits that
survive a Redis outage, sessions that really end, installations that never hear each
other, and a server that refuses heads too big or too slow."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import pytest

from chat import db
from chat.actions.agents import create_agent
from chat.queries import sites
from tests.clients import Agent, EventReader, Visitor
from tests.conftest import Seed
from tests.integration.test_dashboard_http import HTML, signed_in, sql
from tests.support import METRICS_AUTH, AppProcess, RedisProcess, run_async

StartApp = Callable[..., AppProcess]
JSON = {"Accept": "application/json"}


def failed_sign_in(app: AppProcess, email: str, **headers: str) -> int:
    response = httpx.post(f"{app.url}/login", data={"email": email, "password": "wrong"},
                          headers={**JSON, **headers})
    return response.status_code


def test_failed_sign_ins_are_limited_per_address_whatever_the_email(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(dict(app_env, RATE_LIMITS="on"))
    statuses = [failed_sign_in(app, f"guess{n}@example.com") for n in range(31)]
    assert statuses == [401] * 30 + [429]


def test_a_forged_x_forwarded_for_does_not_escape_the_throttle(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(dict(app_env, RATE_LIMITS="on"))
    statuses = [failed_sign_in(app, f"guess{n}@example.com", **{"X-Forwarded-For": f"10.0.0.{n}"})
                for n in range(31)]
    assert statuses[-1] == 429  # every attempt counted against the real address


def test_a_listed_proxy_passes_on_the_clients_address(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(dict(app_env, RATE_LIMITS="on", FORWARDED_ALLOW_IPS="127.0.0.1"))
    statuses = [failed_sign_in(app, f"guess{n}@example.com", **{"X-Forwarded-For": f"10.0.0.{n}"})
                for n in range(31)]
    assert statuses == [401] * 31  # 31 different clients behind the proxy
    same_client = [failed_sign_in(app, f"again{n}@example.com", **{"X-Forwarded-For": "10.9.9.9"})
                   for n in range(31)]
    assert same_client[-1] == 429


async def test_with_redis_down_sign_in_and_new_conversations_are_served_and_still_limited(
    seed: Seed, app_env: dict[str, str], start_app: StartApp, redis_process: RedisProcess,
) -> None:
    app = start_app(dict(app_env, RATE_LIMITS="on", REDIS_URL=redis_process.url))
    redis_process.kill()
    assert failed_sign_in(app, seed.email) == 401  # not a 500
    visitor = Visitor(app.url, seed.site_key)
    statuses = [(await visitor.start(f"hello {n}")).status_code for n in range(7)]
    assert statuses == [201] * 6 + [429]  # counted in the process while Redis is away
    assert (await visitor.http.get("/healthz")).json()["broker"] == "down"
    await visitor.close()


async def test_visitor_messages_are_limited_with_the_reason_and_when_to_retry(
    seed: Seed, app_env: dict[str, str], start_app: StartApp, database: str,
) -> None:
    app = start_app(dict(app_env, RATE_LIMITS="on"))
    visitor = Visitor(app.url, seed.site_key)
    assert (await visitor.start("hello")).status_code == 201
    statuses = [(await visitor.send(f"spam {n}")).status_code for n in range(11)]
    assert statuses == [201] * 10 + [429]
    limited = await visitor.send("one more")
    assert 0 < int(limited.headers["retry-after"]) <= 10
    assert limited.json()["error"].startswith("You're sending messages very fast. Try again in")
    assert sql(database, "SELECT count(*) FROM messages") == 11
    await visitor.close()


def test_changing_the_password_signs_out_every_other_session(
    app: AppProcess, seed: Seed,
) -> None:
    laptop, csrf = signed_in(app, seed.email, seed.password)
    phone, _ = signed_in(app, seed.email, seed.password)
    changed = laptop.post("/profile", headers=HTML, data={
        "csrf_token": csrf, "current_password": seed.password, "new_password": "a new one!"})
    assert changed.status_code == 200 and "Your password is changed." in changed.text
    assert laptop.get("/inbox", headers=JSON).status_code == 200  # the session that changed it
    assert phone.get("/inbox", headers=JSON).status_code == 401


async def ends_with_a_reload(stream: EventReader) -> None:
    """The stream tells the page to reload (to the sign-in page), then ends."""
    ending = await stream.until(lambda events: any(e.event == "reload" for e in events))
    assert ending[-1].event == "reload"
    with pytest.raises(EOFError):
        await stream.next(timeout=5)


async def test_the_streams_of_other_sessions_end_when_the_password_changes(
    app: AppProcess, seed: Seed,
) -> None:
    laptop, phone = Agent(app.url), Agent(app.url)
    await laptop.login(seed.email, seed.password)
    await phone.login(seed.email, seed.password)
    async with phone.stream() as stream:
        await stream.until(lambda events: len(events) >= 1)  # the inbox
        changed = await laptop.http.post("/profile", headers={"X-CSRF-Token": laptop.csrf},
                                         data={"current_password": seed.password,
                                               "new_password": "a new one!"})
        assert changed.status_code == 200
        await ends_with_a_reload(stream)
    await laptop.close()
    await phone.close()


async def test_signing_out_ends_that_sessions_stream(app: AppProcess, seed: Seed) -> None:
    agent = Agent(app.url)
    await agent.login(seed.email, seed.password)
    async with agent.stream() as stream:
        await stream.until(lambda events: len(events) >= 1)
        cookies = dict(agent.http.cookies)
        async with httpx.AsyncClient(base_url=app.url, cookies=cookies) as same_session:
            out = await same_session.post("/logout", headers={"X-CSRF-Token": agent.csrf})
            assert out.status_code == 303
        await ends_with_a_reload(stream)
    await agent.close()


async def test_a_sessions_stream_ends_when_the_session_expires(
    app: AppProcess, seed: Seed, database: str,
) -> None:
    agent = Agent(app.url)
    await agent.login(seed.email, seed.password)
    sql(database, "UPDATE agent_sessions SET expires_at = now() + interval '2 seconds'")
    async with agent.stream() as stream:
        await ends_with_a_reload(stream)  # at the expiry, not at the next sign of life
    assert (await agent.http.get("/inbox", headers=JSON)).status_code == 401
    await agent.close()


def migrated_copy(make_database: Callable[[], str]) -> str:
    """A second installation's database: migrated, with a site and an agent like the seed."""
    url = make_database()

    async def prepare() -> None:
        async with db.connect(url) as conn:
            await db.migrate(conn)
            await sites.insert(conn, public_key="pk_other_install", name="Other",
                               allowed_origins=[])
            await create_agent(conn, email=Seed.email, name="Bo", password=Seed.password,
                               role="admin")

    run_async(prepare())
    return url


async def test_installations_sharing_one_redis_never_hear_each_other(
    seed: Seed, app_env: dict[str, str], start_app: StartApp, redis_url: str,
    make_database: Callable[[], str], tmp_path: object,
) -> None:
    ours = start_app(dict(app_env, REDIS_URL=redis_url))
    theirs = start_app(dict(app_env, REDIS_URL=redis_url, CHAT_DATA_DIR=f"{tmp_path}/other",
                            DATABASE_URL=migrated_copy(make_database)))
    agent = Agent(ours.url)
    await agent.login(seed.email, seed.password)
    their_visitor, our_visitor = Visitor(theirs.url, "pk_other_install"), Visitor(ours.url,
                                                                                 seed.site_key)
    async with agent.stream() as stream:
        await stream.until(lambda events: len(events) >= 1)  # our (empty) inbox
        assert (await their_visitor.start("their secret question")).status_code == 201
        assert (await our_visitor.start("our sentinel")).status_code == 201  # same site id 1
        events = await stream.until(lambda es: any("our sentinel" in e.data for e in es))
        assert not any("their secret question" in e.data for e in events)
    for client in (agent, their_visitor, our_visitor):
        await client.close()


def test_metrics_are_served_only_with_the_token(
    app: AppProcess, seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    assert httpx.get(f"{app.url}/metrics").status_code == 401
    wrong = httpx.get(f"{app.url}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    scraped = httpx.get(f"{app.url}/metrics", headers=METRICS_AUTH)
    assert scraped.status_code == 200 and "chat_streams_open" in scraped.text
    off = start_app({k: v for k, v in app_env.items() if k != "METRICS_TOKEN"})
    refused = httpx.get(f"{off.url}/metrics", headers=METRICS_AUTH)
    assert refused.status_code == 403 and "set METRICS_TOKEN" in refused.json()["error"]


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_signing_in_from_another_site_is_refused(
    app: AppProcess, seed: Seed, headers: dict[str, str],
) -> None:
    response = httpx.post(f"{app.url}/login", headers={**HTML, **headers},
                          data={"email": seed.email, "password": seed.password})
    assert response.status_code == 403
    assert "chat_session" not in response.cookies
    assert "from another site" in response.text


def test_signing_in_from_the_chats_own_page_works(app: AppProcess, seed: Seed) -> None:
    for headers in ({"Origin": app.url}, {"Origin": app.url, "Sec-Fetch-Site": "same-origin"}):
        response = httpx.post(f"{app.url}/login", headers={**HTML, **headers},
                              data={"email": seed.email, "password": seed.password})
        assert response.status_code == 303 and "chat_session" in response.cookies


def test_every_response_carries_the_security_headers(app: AppProcess, seed: Seed) -> None:
    admin, _ = signed_in(app, seed.email, seed.password)
    for response in (httpx.get(f"{app.url}/login"), admin.get("/inbox", headers=HTML),
                     admin.get("/settings", headers=HTML), httpx.get(f"{app.url}/healthz")):
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self' " in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    frame = httpx.get(f"{app.url}/widget/{seed.site_key}/frame",
                      params={"origin": "http://127.0.0.1:9"})
    assert "frame-ancestors http://127.0.0.1:9;" in frame.headers["content-security-policy"]
    assert frame.headers["x-content-type-options"] == "nosniff"


def raw_request(app: AppProcess, data: bytes, timeout: float = 15) -> bytes:
    """Send ``data`` on a fresh connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", app.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_request_head_over_the_limit_is_refused(app: AppProcess) -> None:
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 40_000 + b"\r\n\r\n"
    assert raw_request(app, huge).startswith(b"HTTP/1.1 400")
    normal = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert raw_request(app, normal).startswith(b"HTTP/1.1 200")


def test_a_client_that_never_finishes_its_head_is_disconnected(app: AppProcess) -> None:
    # The server closes it (after 10 s): our own timeout (30 s) would raise instead.
    assert raw_request(app, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", timeout=30) == b""


async def test_open_streams_are_capped_per_visitor_and_per_address_and_freed_on_close(
    seed: Seed, app_env: dict[str, str], start_app: StartApp,
) -> None:
    app = start_app(dict(app_env, STREAMS_PER_CLIENT="2", STREAMS_PER_ADDRESS="3"))
    alice, bob = Visitor(app.url, seed.site_key), Visitor(app.url, seed.site_key)
    assert (await alice.start("hi")).status_code == 201
    assert (await bob.start("hello")).status_code == 201
    url = f"/widget/{seed.site_key}/conversations/{alice.conversation_id}/stream"
    async with alice.stream(), alice.stream():
        third = await alice.http.get(url, headers=alice.headers)
        assert third.status_code == 429 and int(third.headers["retry-after"]) > 0
        assert "2 chat streams open already" in third.json()["error"]
        async with bob.stream():  # the address's third
            bob_url = f"/widget/{seed.site_key}/conversations/{bob.conversation_id}/stream"
            fourth = await bob.http.get(bob_url, headers=bob.headers)
            assert fourth.status_code == 429
            assert "Your network has 3 chat streams open" in fourth.json()["error"]
    async with asyncio.timeout(10):
        while await app.metric('chat_streams_open{audience="visitor"}') > 0:  # saw them close
            await asyncio.sleep(0.05)
    async with alice.stream(), alice.stream():  # closed streams gave their slots back
        pass
    for client in (alice, bob):
        await client.close()
