"""Many tabs of one browser on plain HTTP/1.1, where a browser allows six connections per host
for all its tabs together: one tab holds the live stream for all of them (static/live.js)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
from playwright.sync_api import BrowserContext, FrameLocator, Page, Request, expect

from tests.conftest import Seed
from tests.e2e.agent import AgentSession
from tests.e2e.conftest import Widget
from tests.e2e.test_dashboard import row, sign_in, wait_until
from tests.e2e.test_widget import conversation_of, open_widget, send
from tests.support import AppProcess

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]

# Counts, in every frame, how often each entry was put into the page: a message the stream
# sent twice would be put in twice (it replaces itself, so only this can tell).
COUNT_INSERTIONS = """
window.__inserted = {};
new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(node => {
  if (node.nodeType === 1 && node.matches('.entry[id]'))
    window.__inserted[node.id] = (window.__inserted[node.id] || 0) + 1;
}))).observe(document, {childList: true, subtree: true});
"""
COUNT_CHIMES = """() => {
  const chime = ChatMessages.chime;
  window.__chimes = 0;
  ChatMessages.chime = () => { window.__chimes++; chime(); };
}"""
FETCH_HEALTH = """async () => {
  const late = new Promise(resolve => setTimeout(() => resolve('still pending'), 5000));
  const health = fetch('/healthz', {cache: 'no-store'}).then(r => r.status, e => String(e));
  return Promise.race([health, late]);
}"""


class Streams:
    """The stream requests a browser context has open, seen from the browser."""

    def __init__(self, context: BrowserContext) -> None:
        self.open: list[Request] = []
        context.on("request", self._started)
        context.on("requestfinished", self._ended)
        context.on("requestfailed", self._ended)

    def _started(self, request: Request) -> None:
        if re.search(r"/stream(\?|$)", request.url):
            self.open.append(request)

    def _ended(self, request: Request) -> None:
        if request in self.open:
            self.open.remove(request)

    def count(self) -> int:
        # A closed page's requests end without an event.
        self.open = [r for r in self.open if not r.frame.page.is_closed()]
        return len(self.open)

    def holder(self) -> Page:
        assert self.count() == 1, [r.url for r in self.open]
        return self.open[0].frame.page


def open_chat(page: Page) -> FrameLocator:
    """Open the widget on the page as it is (``open_widget`` loads the page first)."""
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("iframe[title=Chat]")
    expect(frame.get_by_role("textbox", name="Message")).to_be_focused()
    return frame


def start_conversation(widget: Widget, text: str) -> tuple[int, str]:
    """A visitor of another browser (over HTTP): their conversation and token."""
    response = httpx.post(f"{widget.app.url}/widget/{widget.site_key}/conversations",
                          data={"body": text, "client_id": uuid.uuid4().hex},
                          headers={"Accept": "application/json"})
    assert response.status_code == 201, response.text
    return response.json()["conversation"]["id"], response.json()["visitor_token"]


def visitor_says(app: AppProcess, site_key: str, conversation: int, token: str,
                 text: str) -> None:
    response = httpx.post(f"{app.url}/widget/{site_key}/conversations/{conversation}/messages",
                          data={"body": text, "client_id": uuid.uuid4().hex},
                          headers={"Accept": "application/json", "X-Visitor-Token": token})
    assert response.status_code == 201, response.text


def test_ten_widget_tabs_of_a_returning_visitor_all_chat_and_an_eleventh_still_gets_through(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    visitor = new_context()
    visitor.add_init_script("window.__sounds = 0;"
                            "addEventListener('chatwidget:sound', () => window.__sounds++)")
    streams = Streams(visitor)
    first = visitor.new_page()
    frame = open_widget(first, widget.host.url)
    send(frame, "Hello from the first tab")
    conversation = conversation_of(frame)
    first.get_by_role("button", name="Close chat").click()
    tabs = [first]
    for _ in range(9):  # a returning visitor: every tab's frame loads at once, chat closed
        tab = visitor.new_page()
        tab.goto(widget.host.url)
        tabs.append(tab)

    agent = AgentSession(widget.app.url, seed.email, seed.password)
    agent.reply(conversation, "A reply for every tab")
    for tab in tabs:  # each launcher counts it...
        expect(tab.locator(".badge")).to_have_text("1")
    wait_until(first, lambda: sum(t.evaluate("window.__sounds") for t in tabs) == 1)
    first.wait_for_timeout(1000)  # ...and it chimes once, not once per tab
    assert sum(t.evaluate("window.__sounds") for t in tabs) == 1

    frames = [open_chat(tab) for tab in tabs[:2]]
    expect(tabs[2].locator(".badge")).to_be_hidden()  # read in one tab: read in all
    frames += [open_chat(tab) for tab in tabs[2:]]
    for tab_frame in frames:
        expect(tab_frame.locator(".entry.agent", has_text="A reply for every tab")).to_have_count(1)
    send(frames[6], "Sent from the seventh tab")
    expect(frames[1].locator(".entry.visitor", has_text="seventh tab")).to_have_count(1)
    agent.reply(conversation, "Seen everywhere")
    for tab_frame in frames:
        expect(tab_frame.locator(".entry.agent", has_text="Seen everywhere")).to_have_count(1)

    eleventh = visitor.new_page()
    eleventh.goto(widget.host.url)  # its frame loaded: "load" waits for it
    chat_frame = next(f for f in eleventh.frames if "/frame?" in f.url)
    assert chat_frame.evaluate(FETCH_HEALTH) == 200  # the chat's origin is still reachable
    wait_until(first, lambda: streams.count() == 1)  # one stream for all eleven tabs
    agent.close()


def test_ten_dashboard_tabs_of_one_agent_all_stay_live(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str], redis_url: str,
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    env = dict(app_env, REDIS_URL=redis_url)
    agent_app, visitor_app = start_app(env), start_app(env)
    widget = embed(visitor_app)
    started = [start_conversation(widget, f"Question {n}") for n in range(3)]
    context = new_context()
    streams = Streams(context)
    pages = [sign_in(context, agent_app, seed.email, seed.password)]
    urls = [*(f"/inbox?tab={tab}" for tab in ("waiting", "open", "waiting", "open")),
            *(f"/conversations/{conversation}" for conversation, _ in started),
            f"/conversations/{started[0][0]}?tab=open", "/inbox?tab=mine"]
    for url in urls:
        page = context.new_page()
        page.goto(agent_app.url + url)
        pages.append(page)
    for page in pages:  # every tab loaded, with the inbox
        expect(page.locator(".conversation-row")).to_have_count(3)
        page.evaluate(COUNT_CHIMES)

    start_conversation(widget, "A fourth visitor")
    for page in pages[:-1]:  # live in every tab ("Mine" holds it, hidden)
        expect(row(page, "A fourth visitor")).to_be_visible()
    expect(row(pages[-1], "A fourth visitor")).to_be_hidden()
    wait_until(pages[0], lambda: sum(p.evaluate("window.__chimes") for p in pages) == 1)
    pages[0].wait_for_timeout(1000)  # a chime for the new conversation: one, not ten
    assert sum(p.evaluate("window.__chimes") for p in pages) == 1

    for n, (conversation, token) in enumerate(started):
        visitor_says(visitor_app, widget.site_key, conversation, token, f"Only for tab {n}")
    for n, page in enumerate(pages[5:8]):  # each conversation tab: its own messages only
        history = page.locator(".history .entry.visitor")
        expect(history.filter(has_text=f"Only for tab {n}")).to_have_count(1)
        expect(history.filter(has_text="Only for tab")).to_have_count(1)
    expect(pages[8].locator(".history .entry", has_text="Only for tab 0")).to_have_count(1)
    for n in range(3):  # read in its conversation's tab, so read in the inbox tabs too
        expect(row(pages[1], f"Only for tab {n}").locator(".unread")).to_be_hidden()
    wait_until(pages[0], lambda: streams.count() == 1)  # one stream for all ten

    agent_app.kill()  # every tab says so, whichever holds the stream
    for page in pages:
        expect(page.locator("#connection")).to_have_text("Reconnecting…", timeout=15_000)
    visitor_says(visitor_app, widget.site_key, *started[1], "While the dashboard was away")
    agent_app.start()
    expect(pages[6].locator(".entry.visitor", has_text="was away")).to_have_count(1,
                                                                               timeout=30_000)
    for page in pages:
        expect(page.locator("#connection")).to_have_text("")


def test_closing_the_tab_that_holds_the_stream_hands_it_over_with_nothing_lost_or_doubled(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    visitor = new_context()
    visitor.add_init_script(COUNT_INSERTIONS)
    streams = Streams(visitor)
    first = visitor.new_page()
    send(open_widget(first, widget.host.url), "Who holds the stream?")
    conversation = conversation_of(first.frame_locator("iframe[title=Chat]"))
    tabs = [first, *(visitor.new_page() for _ in range(3))]
    frames = [first.frame_locator("iframe[title=Chat]")]
    frames += [open_widget(tab, widget.host.url) for tab in tabs[1:]]
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    agent.reply(conversation, "Before the handover")
    for tab_frame in frames:
        expect(tab_frame.locator(".entry.agent", has_text="Before")).to_have_count(1)
    wait_until(first, lambda: streams.count() == 1)

    holder = streams.holder()
    holder.close()
    replies = [f"During the handover {n}" for n in range(3)]
    for text in replies:
        agent.reply(conversation, text)
    remaining = [(tab, f) for tab, f in zip(tabs, frames, strict=True) if tab is not holder]
    for _, tab_frame in remaining:
        for text in replies:
            expect(tab_frame.locator(".entry.agent", has_text=text)).to_have_count(1)
    wait_until(first if first is not holder else tabs[1], lambda: streams.count() == 1)
    assert streams.holder() is not holder
    for tab, _ in remaining:  # every reply came live, and once: none was sent again
        chat = next(f for f in tab.frames if "/frame?" in f.url)
        inserted = chat.evaluate("window.__inserted")
        ids = chat.evaluate("() => Array.from(document.querySelectorAll('.entry.agent'),"
                            " e => e.id)")
        assert len(ids) == 4 and [inserted.get(id_) for id_ in ids] == [1] * 4, inserted
    agent.close()


def test_without_web_locks_each_tab_streams_alone_as_before(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    visitor, agents = new_context(), new_context()
    no_locks = "Object.defineProperty(navigator, 'locks', {value: undefined})"
    agents.add_init_script(no_locks)
    # Only the host page lacks them: the chat's third-party frame then tries its own, which
    # this Chromium refuses (as it refuses it storage).
    visitor.add_init_script(f"if (window === top) {no_locks}")
    visitor_streams, agent_streams = Streams(visitor), Streams(agents)
    first = visitor.new_page()
    send(open_widget(first, widget.host.url), "Hello without locks")
    conversation = conversation_of(first.frame_locator("iframe[title=Chat]"))
    frames = [first.frame_locator("iframe[title=Chat]"), open_widget(visitor.new_page(),
                                                                     widget.host.url)]
    inboxes = [sign_in(agents, widget.app, seed.email, seed.password), agents.new_page()]
    for inbox in inboxes:
        inbox.goto(widget.app.url + "/inbox?tab=open")
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    agent.reply(conversation, "Still live in both")
    for tab_frame in frames:
        expect(tab_frame.locator(".entry.agent", has_text="Still live")).to_have_count(1)
    for inbox in inboxes:
        expect(row(inbox, "Still live in both")).to_be_visible()
    wait_until(first, lambda: visitor_streams.count() == 2 and agent_streams.count() == 2)
    agent.close()
