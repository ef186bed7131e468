"""The widget's connection and its end, in a real Chromium: "Reconnecting…" while its stream
is down, what failed to send going by itself once it is back, and the visitor's End chat."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Frame, FrameLocator, Locator, Page, expect

from tests.conftest import Seed
from tests.e2e.conftest import Widget
from tests.e2e.test_accessibility import violations
from tests.e2e.test_dashboard import open_as_agent, sign_in
from tests.e2e.test_widget import conversation_of, open_widget, send
from tests.integration.test_dashboard_http import sql
from tests.support import AppProcess

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]


def chat_frame(page: Page) -> Frame:
    """The widget's frame itself (for axe), where a FrameLocator only finds elements."""
    return next(frame for frame in page.frames if "/frame" in frame.url)


def reconnecting(frame: FrameLocator) -> Locator:
    return frame.get_by_role("status").filter(has_text="Reconnecting…")


def test_a_message_sent_while_the_widgets_server_is_down_goes_once_when_it_is_back(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str], redis_url: str,
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str, axe_source: str,
) -> None:
    env = dict(app_env, REDIS_URL=redis_url)
    widget_app, agent_app = start_app(env), start_app(env)
    widget = embed(widget_app)
    visitor = new_context()
    page = visitor.new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "Are you there?")
    conversation = conversation_of(frame)
    # A second tab of the visitor's: one tab holds the stream for both, and both show its state.
    other = open_widget(visitor.new_page(), widget.host.origin + "/other.html")
    alex = sign_in(new_context(), agent_app, seed.email, seed.password)
    alex.goto(f"{agent_app.url}/conversations/{conversation}")
    expect(alex.locator(".entry.visitor", has_text="Are you there?")).to_be_visible()

    widget_app.kill()  # SIGKILL: the stream is cut, and sends fail
    for tab in (frame, other):
        expect(reconnecting(tab)).to_be_visible(timeout=15_000)
    box = frame.get_by_role("textbox", name="Message")
    box.fill("Sent while you were away")
    box.press("Enter")
    bubble = frame.locator(".entry.visitor", has_text="Sent while you were away")
    expect(bubble).to_contain_text(re.compile("Not sent|Sending…"))
    client_id = bubble.get_attribute("data-pending")
    assert client_id
    page.bring_to_front()  # a background tab may not paint the frame's latest state
    page.screenshot(path="/tmp/widget-reconnecting.png")
    assert violations(chat_frame(page), axe_source) == []  # the status line reads well too

    widget_app.start()  # the same port, as a restarted process would be
    stored = frame.locator(".entry.visitor[data-seq]", has_text="Sent while you were away")
    expect(stored).to_have_count(1, timeout=30_000)  # by itself: nobody pressed Retry
    expect(frame.locator(".entry.failed, .entry.pending")).to_have_count(0)
    for tab in (frame, other):
        expect(reconnecting(tab)).to_have_count(0)
        expect(tab.locator("#connection")).to_be_hidden()
    expect(other.locator(".entry.visitor", has_text="Sent while you were away")).to_have_count(1)
    expect(alex.locator(".entry.visitor", has_text="Sent while you were away")).to_have_count(1)
    assert sql(database, "SELECT count(*) FROM messages WHERE client_id = $1", client_id) == 1


def test_the_visitor_ends_the_chat_after_confirming_and_the_agent_sees_it_closed_live(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, axe_source: str,
) -> None:
    agent, frame = open_as_agent(new_context, embed(start_app(app_env)), seed)
    end = frame.get_by_role("button", name="End chat")
    end.click()
    question = frame.get_by_role("region", name="End this chat?")
    expect(question).to_be_visible()
    keep = frame.get_by_role("button", name="Keep chatting")
    expect(keep).to_be_focused()  # the safe answer: an Enter too many keeps the chat going
    expect(end).to_have_attribute("aria-expanded", "true")
    visitor = frame.owner.page
    visitor.screenshot(path="/tmp/widget-end-chat-confirm.png")
    assert violations(chat_frame(visitor), axe_source) == []
    keep.click()
    expect(question).to_be_hidden()
    expect(end).to_be_focused()
    expect(frame.get_by_role("textbox", name="Message")).to_be_enabled()  # nothing happened
    end.click()
    visitor.keyboard.press("Escape")  # "not now", here: the question goes, the chat stays
    expect(question).to_be_hidden()
    expect(visitor.locator("iframe[title=Chat]")).to_be_visible()

    end.click()
    frame.get_by_role("button", name="Yes, end the chat").click()
    expect(agent.locator(".conversation-status")).to_contain_text("Closed")  # live
    expect(agent.get_by_role("textbox", name="Reply")).to_be_disabled()
    expect(agent.locator(".entry.activity", has_text="The visitor ended the chat")).to_be_visible()
    expect(frame.locator(".conversation-status")).to_contain_text("This conversation is closed.")
    expect(frame.locator(".entry.activity", has_text="You ended the chat")).to_have_count(1)
    expect(frame.get_by_role("button", name="Start a new conversation")).to_be_focused()
    expect(end).to_be_hidden()
    expect(frame.get_by_role("textbox", name="Message")).to_be_disabled()
    visitor.screenshot(path="/tmp/widget-ended.png")
