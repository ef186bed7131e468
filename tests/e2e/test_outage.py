"""While PostgreSQL is down, a visitor and an agent are told to try again, and their retries
go through once it is back: nothing lost, nothing doubled."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, FrameLocator, Locator, expect

from chat import db
from tests.conftest import Seed
from tests.e2e.conftest import HOST_PAGE, HostSite
from tests.e2e.test_dashboard import sign_in
from tests.e2e.test_widget import conversation_of, open_widget, send
from tests.support import AppProcess, PostgresProcess, run_async

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]
UNAVAILABLE = "Not sent. The chat is briefly unavailable. Please try again in a few seconds."


def type_and_send(box: Locator, text: str) -> None:
    box.fill(text)
    box.press("Enter")


def retry_when_allowed(failed: Locator) -> None:
    retry = failed.get_by_role("button", name=re.compile("Retry"))
    expect(retry).to_have_text("Retry", timeout=20_000)  # Retry-After has passed
    retry.click()


def test_during_an_outage_both_sides_are_told_to_try_again_and_the_retries_go_through(
    own_postgres: PostgresProcess, app_env: dict[str, str], start_app: StartApp,
    new_context: NewContext, host_site: HostSite,
) -> None:
    async def allow_any_origin() -> None:  # the host page's origin among them
        async with db.connect(own_postgres.url) as conn:
            await conn.execute("UPDATE sites SET allowed_origins = '{}'")

    run_async(allow_any_origin())
    app = start_app(dict(app_env, DATABASE_URL=own_postgres.url))
    (host_site.directory / "index.html").write_text(
        HOST_PAGE.format(title="Acme Store", app=app.url, key="pk_test_site_0001"))
    visitor = new_context().new_page()
    frame: FrameLocator = open_widget(visitor, host_site.url)
    send(frame, "Hello, is anyone there?")
    conversation = conversation_of(frame)
    agent = sign_in(new_context(), app, Seed.email, Seed.password)
    agent.goto(f"{app.url}/conversations/{conversation}")
    expect(agent.locator(".entry.visitor", has_text="anyone there")).to_be_visible()

    own_postgres.stop()
    type_and_send(frame.get_by_role("textbox", name="Message"), "Hello again?")
    type_and_send(agent.get_by_role("textbox", name="Reply"), "Yes, I am here.")
    visitor_failed = frame.locator(".entry.failed", has_text="Hello again?")
    agent_failed = agent.locator(".entry.failed", has_text="Yes, I am here.")
    for failed in (visitor_failed, agent_failed):
        expect(failed).to_contain_text(UNAVAILABLE)
        expect(failed.get_by_role("button", name=re.compile(r"Retry in \d+ s"))).to_be_disabled()

    own_postgres.start()
    retry_when_allowed(visitor_failed)
    retry_when_allowed(agent_failed)
    for page in (frame, agent):
        expect(page.locator(".entry.visitor", has_text="Hello again?")).to_have_count(
            1, timeout=20_000)
        expect(page.locator(".entry.agent", has_text="Yes, I am here.")).to_have_count(
            1, timeout=20_000)
        expect(page.locator(".entry.failed")).to_have_count(0)
