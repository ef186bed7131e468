"""Times in the reader's own time zone, and a history that follows new messages, both sides."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import BrowserContext, Frame, Locator, Page, expect

from chat import db
from tests.conftest import Seed
from tests.e2e.agent import AgentSession
from tests.e2e.conftest import Widget
from tests.e2e.test_dashboard import sign_in
from tests.e2e.test_widget import conversation_of, open_widget, send
from tests.support import AppProcess, run_async

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]

# How far from the end a scroller is; "at the end" allows for sub-pixel rounding.
GAP = "m => m.scrollHeight - m.scrollTop - m.clientHeight"
AT_END = 2
# Two frames: a scroll the test makes has had its scroll event before the test goes on.
SETTLE = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
FIVE_LINES = "\n".join(f"line {n} of a longer message" for n in range(1, 6))


class Visitor:
    """The visitor's side over HTTP, as the widget sends, with the token the widget holds."""

    def __init__(self, widget: Widget, frame: Frame) -> None:
        token = frame.evaluate("window.chatFrame.state.token")
        self.http = httpx.Client(base_url=f"{widget.app.url}/widget/{widget.site_key}", timeout=15,
                                 headers={"X-Visitor-Token": token, "HX-Request": "true",
                                          "Origin": widget.host.origin})

    def send(self, conversation_id: int, body: str) -> None:
        response = self.http.post(f"/conversations/{conversation_id}/messages",
                                  data={"body": body, "client_id": uuid.uuid4().hex})
        assert response.status_code == 201, response.text

    def close(self) -> None:
        self.http.close()


def created_at(database: str, conversation_id: int, body: str) -> datetime:
    async def read() -> datetime:
        async with db.connect(database) as conn:
            moment = await conn.fetchval(
                "SELECT created_at FROM messages WHERE conversation_id = $1 AND body = $2",
                conversation_id, body)
        assert isinstance(moment, datetime)
        return moment

    return run_async(read())


def backdate(database: str, conversation_id: int, body: str, days: int) -> None:
    async def move() -> None:
        async with db.connect(database) as conn:
            await conn.execute(
                "UPDATE messages SET created_at = created_at - $3::interval"
                " WHERE conversation_id = $1 AND body = $2",
                conversation_id, body, timedelta(days=days))

    run_async(move())


def expect_local(time: Locator, moment: datetime, zone: str) -> None:
    """``time`` shows ``moment``'s hour and minute in ``zone``, and its title the full date."""
    local = moment.astimezone(ZoneInfo(zone))
    expect(time).to_have_text(local.strftime("%H:%M"))
    title = time.get_attribute("title") or ""
    assert str(local.year) in title and str(local.day) in title, title


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_times_show_in_the_readers_time_zone_on_both_sides_live_and_on_load(
    zone: str, new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    visitor_page = new_context(timezone_id=zone, locale="en-GB").new_page()
    frame = open_widget(visitor_page, widget.host.url)
    send(frame, "What time is it there?")
    conversation = conversation_of(frame)
    agent_page = sign_in(new_context(timezone_id=zone, locale="en-GB"), widget.app,
                         seed.email, seed.password)
    agent_page.goto(f"{widget.app.url}/conversations/{conversation}")
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    agent.reply(conversation, "Morning here.")  # reaches both pages through their streams

    asked = created_at(database, conversation, "What time is it there?")
    answered = created_at(database, conversation, "Morning here.")
    for page in (frame, agent_page):
        expect_local(page.locator(".entry", has_text="What time is it there?").locator("time"),
                     asked, zone)
        expect_local(page.locator(".entry", has_text="Morning here.").locator("time"),
                     answered, zone)

    # An older message shows its date too, in the reader's zone; without JS it would say UTC.
    backdate(database, conversation, "What time is it there?", days=3)
    earlier = created_at(database, conversation, "What time is it there?")
    earlier = earlier.astimezone(ZoneInfo(zone))
    agent_page.reload()
    shown = agent_page.locator(".entry", has_text="What time is it there?").locator("time")
    expect(shown).to_contain_text(earlier.strftime("%H:%M"))
    expect(shown).to_contain_text(f"{earlier.day} {earlier.strftime('%b')}")
    agent.close()


def chat_frame(page: Page) -> Frame:
    return page.frames[1]  # the host page embeds one frame: the chat


def wait_at_end(frame: Frame, selector: str) -> None:
    frame.wait_for_function(f"() => ({GAP})(document.querySelector({selector!r})) <= {AT_END}")


def follows_the_other_side(
    frame: Frame, selector: str, entry: str, other: Callable[[str], None],
) -> None:
    """After one line, five lines and a burst of 25 from the other side, the reader at the end
    stays at the end; scrolled up, they stay put and the pill offers the news."""
    scroller = frame.locator(selector)
    entries = frame.locator(f"{selector} {entry}")
    wait_at_end(frame, selector)
    assert scroller.evaluate("m => m.scrollHeight > m.clientHeight + 200"), "no overflow to test"
    for bodies in (["one line"], [FIVE_LINES], [f"burst {n}" for n in range(25)]):
        for body in bodies:
            other(body)
        expect(entries.filter(has_text=bodies[-1])).to_have_count(1)
        wait_at_end(frame, selector)
        expect(frame.get_by_role("button", name="New messages")).to_be_hidden()

    scroller.evaluate("m => { m.scrollTop = m.scrollHeight - m.clientHeight - 300; }")
    frame.evaluate(SETTLE)
    place = scroller.evaluate("m => m.scrollTop")
    other("while you were reading")
    pill = frame.get_by_role("button", name="New messages")
    expect(pill).to_be_visible()
    expect(entries.filter(has_text="while you were reading")).to_have_count(1)
    frame.evaluate(SETTLE)
    assert scroller.evaluate("m => m.scrollTop") == place
    pill.click()
    wait_at_end(frame, selector)
    expect(pill).to_be_hidden()


def test_the_widget_follows_new_replies_unless_the_visitor_scrolled_up(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    page = new_context().new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "Hello")
    conversation = conversation_of(frame)
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    for n in range(15):
        agent.reply(conversation, f"earlier {n}")
    expect(frame.locator(".entry", has_text="earlier 14")).to_have_count(1)

    def reply(body: str) -> None:
        agent.reply(conversation, body)

    follows_the_other_side(chat_frame(page), "main", ".entry.agent", reply)
    agent.close()


def test_the_dashboard_follows_new_messages_unless_the_agent_scrolled_up(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    visitor_page = new_context().new_page()
    frame = open_widget(visitor_page, widget.host.url)
    send(frame, "Hello")
    conversation = conversation_of(frame)
    visitor = Visitor(widget, chat_frame(visitor_page))
    for n in range(15):
        visitor.send(conversation, f"earlier {n}")
    agent_page = sign_in(new_context(), widget.app, seed.email, seed.password)
    agent_page.goto(f"{widget.app.url}/conversations/{conversation}")
    expect(agent_page.locator(".entry", has_text="earlier 14")).to_have_count(1)
    follows_the_other_side(agent_page.main_frame, "#history", ".entry.visitor",
                           lambda body: visitor.send(conversation, body))
    visitor.close()
