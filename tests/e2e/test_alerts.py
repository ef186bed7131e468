"""Alerts in a real Chromium: which new messages chime and notify an agent, by their own
preference; sound that the browser holds back until a click, said so; and the widget's
chime for a returning visitor, played by the host page."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from tests.conftest import Seed
from tests.e2e.agent import AgentSession
from tests.e2e.conftest import Widget
from tests.e2e.test_accessibility import violations
from tests.e2e.test_awareness import hide
from tests.e2e.test_dashboard import add_agent, row, sign_in, wait_until
from tests.e2e.test_widget import conversation_of, open_widget, send
from tests.support import AppProcess

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]

# Every tone the page makes (a chime is two, in static/messages.js and widget/loader.js).
COUNT_TONES = """
window.__tones = 0;
const createOscillator = BaseAudioContext.prototype.createOscillator;
BaseAudioContext.prototype.createOscillator = function () {
    window.__tones += 1;
    return createOscillator.call(this);
};
"""

# What browsers do by default and headless Chromium does not: an audio context stays
# suspended (silent) until it is resumed in a user gesture.
BLOCK_AUTOPLAY = """
(() => {
    const Real = window.AudioContext;
    window.AudioContext = class extends Real {
        constructor(...args) {
            super(...args);
            this.allowed = navigator.userActivation.isActive;
            if (!this.allowed) super.suspend();
        }
        get state() { return this.allowed ? super.state : "suspended"; }
        resume() {
            if (!navigator.userActivation.isActive) return Promise.resolve();
            this.allowed = true;
            return super.resume().then(() => this.dispatchEvent(new Event("statechange")));
        }
    };
})();
"""


def notifications(permission: str) -> str:
    """Desktop notifications, recorded in ``window.__notes``; asking grants them, and the
    browser remembers that (here for the tab's session)."""
    return """
    window.__permission = "%s";
    window.__notes = [];
    window.__asked = 0;
    window.Notification = class {
        static permission = sessionStorage.getItem("permission") || window.__permission;
        static requestPermission() {
            window.__asked += 1;
            window.Notification.permission = "granted";
            sessionStorage.setItem("permission", "granted");
            return Promise.resolve("granted");
        }
        constructor(title, options) {
            this.title = title;
            this.body = options.body;
            window.__notes.push(this);
        }
        close() {}
    };
    """.replace("%s", permission)


def chimes(page: Page) -> int:
    return int(page.evaluate("window.__tones")) // 2


def notes(page: Page) -> list[str]:
    return list(page.evaluate("window.__notes.map(note => note.title)"))


def turn_on_alerts(page: Page) -> None:
    """A freshly loaded page may not chime yet: the agent's click allows it."""
    page.get_by_role("button", name="Turn on alerts").click()
    expect(page.get_by_role("button", name="Turn on alerts")).to_be_hidden()


def choose(page: Page, level: str) -> None:
    page.get_by_label("Alerts", exact=True).select_option(level)
    expect(page.locator("#alerts")).to_have_attribute("data-alerts", level)  # saved


def test_new_visitor_messages_alert_the_agent_as_they_chose_and_never_what_they_read_or_wrote(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str,
) -> None:
    widget = embed(start_app(app_env))
    add_agent(database, "Sam", "sam@example.com")
    context = new_context()
    context.add_init_script(COUNT_TONES + BLOCK_AUTOPLAY + notifications("granted"))
    alex = sign_in(context, widget.app, seed.email, seed.password)
    visitor = new_context().new_page()
    frame = open_widget(visitor, widget.host.url)
    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Hello, anyone there?")
    conversation = conversation_of(frame)
    alex.goto(f"{widget.app.url}/conversations/{conversation}")  # loaded afresh: no gesture
    turn_on_alerts(alex)
    alex.get_by_role("button", name="Claim").click()

    # Read where the agent looks at it (a visible tab): no alert. Hidden: a chime and a
    # notification. Each later alert shows that nothing came before it: chimes are in order.
    send(frame, "Is it shipped yet?")
    expect(alex.locator(".entry.visitor", has_text="Is it shipped yet?")).to_be_visible()
    hide(alex)
    send(frame, "Where is my order? It was due on Monday, with the red scarf")
    wait_until(alex, lambda: chimes(alex) == 1)
    assert notes(alex) == ["Maria Silva: Where is my order? It was due on…"]

    # On the inbox, "Mine and unassigned" (the default) says nothing of Sam's
    # conversation; "All messages" does, but never for an agent's reply or a note.
    alex.goto(widget.app.url + "/inbox")
    turn_on_alerts(alex)
    hide(alex)
    sam = AgentSession(widget.app.url, "sam@example.com", "agent password")
    sam.act(conversation, "assign")
    expect(row(alex, "Maria Silva").locator(".assignee")).to_have_text("Sam")
    send(frame, "Hello? Sam?")
    expect(row(alex, "Maria Silva").locator(".preview")).to_have_text("Hello? Sam?")
    choose(alex, "all")
    sam.reply(conversation, "Looking into it")
    expect(row(alex, "Maria Silva").locator(".preview")).to_have_text("Looking into it")
    alex_http = AgentSession(widget.app.url, seed.email, seed.password)  # Alex, elsewhere
    alex_http.reply(conversation, "I am here too")
    expect(row(alex, "Maria Silva").locator(".preview")).to_have_text("I am here too")
    response = alex_http.http.post(f"/conversations/{conversation}/messages",
                                   headers={"X-CSRF-Token": alex_http.csrf},
                                   data={"body": "Courier is late", "note": "1"})
    assert response.status_code == 201, response.text  # a note: no row shows it
    send(frame, "Anyone?")
    wait_until(alex, lambda: chimes(alex) == 1)
    assert notes(alex) == ["Maria Silva: Anyone?"]

    # "New conversations only" and "None": nothing for a message.
    for level, text in (("new", "Still waiting"), ("none", "Bye then")):
        choose(alex, level)
        send(frame, text)
        expect(row(alex, "Maria Silva").locator(".preview")).to_have_text(text)
    choose(alex, "all")
    send(frame, "Last try")
    wait_until(alex, lambda: chimes(alex) == 2)
    assert notes(alex) == ["Maria Silva: Anyone?", "Maria Silva: Last try"]

    # The notification opens the conversation.
    alex.evaluate("window.__notes.at(-1).onclick()")
    expect(alex).to_have_url(re.compile(rf"/conversations/{conversation}$"))
    sam.close()
    alex_http.close()


def test_one_tab_of_the_agents_alerts_and_none_while_another_shows_the_conversation(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    context = new_context()
    context.add_init_script(COUNT_TONES + BLOCK_AUTOPLAY + notifications("granted"))
    inbox = sign_in(context, widget.app, seed.email, seed.password)
    visitor = new_context().new_page()
    frame = open_widget(visitor, widget.host.url)
    frame.get_by_label("Your name").fill("Maria Silva")
    send(frame, "Hello, anyone there?")
    conversation = conversation_of(frame)
    reading = context.new_page()
    reading.goto(f"{widget.app.url}/conversations/{conversation}")
    inbox.reload()
    tabs = (inbox, reading)
    for tab in tabs:
        turn_on_alerts(tab)
    hide(inbox)

    # Read in the other tab, in front of the agent: neither tab alerts. Once that one is
    # hidden too, one of them does, not both.
    send(frame, "Is it shipped yet?")
    expect(row(inbox, "Maria Silva").locator(".preview")).to_have_text("Is it shipped yet?")
    expect(reading.locator(".entry.visitor", has_text="Is it shipped yet?")).to_be_visible()
    hide(reading)
    send(frame, "Where is my order?")
    wait_until(inbox, lambda: sum(chimes(tab) for tab in tabs) == 1)
    send(frame, "Hello?")  # a second tab's alert for the first would have come by now
    wait_until(inbox, lambda: sum(chimes(tab) for tab in tabs) == 2)
    titles = sorted(title for tab in tabs for title in notes(tab))
    assert titles == ["Maria Silva: Hello?", "Maria Silva: Where is my order?"]


def test_sound_off_shows_until_the_agent_turns_alerts_on_and_the_preference_is_theirs(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    seed: Seed, axe_source: str,
) -> None:
    app = start_app(app_env)
    context = new_context()
    context.add_init_script(COUNT_TONES + BLOCK_AUTOPLAY + notifications("default"))
    alex = sign_in(context, app, seed.email, seed.password)
    alex.reload()  # the inbox loaded afresh, as after reopening the browser: no click yet
    sound_off = alex.get_by_role("status", name=re.compile("^Sound off"))
    expect(sound_off).to_have_text("Sound off")
    expect(alex.get_by_role("button", name="Turn on alerts")).to_be_visible()
    assert violations(alex, axe_source) == []
    alex.locator(".topbar").screenshot(path="/tmp/alerts-header.png")

    # One click: sound plays from now on, and the browser asked about notifications.
    turn_on_alerts(alex)
    expect(sound_off).to_be_hidden()
    assert alex.evaluate("window.__asked") == 1

    # The choice is the agent's, kept by the server: it survives a reload (sound muted:
    # nothing to turn on any more).
    alex.get_by_label("Sound", exact=True).uncheck()
    expect(alex.locator("#alerts")).to_have_attribute("data-sound", "off")
    choose(alex, "new")
    alex.reload()
    expect(alex.get_by_label("Alerts", exact=True)).to_have_value("new")
    expect(alex.get_by_label("Sound", exact=True)).not_to_be_checked()
    expect(alex.get_by_role("button", name="Turn on alerts")).to_be_hidden()
    expect(sound_off).to_be_hidden()

    agent = AgentSession(app.url, seed.email, seed.password)
    refused = agent.http.post("/me/alerts", headers={"X-CSRF-Token": agent.csrf},
                              data={"alerts": "loud", "sound": "1"})
    assert refused.status_code == 422
    assert "alerts must be one of all, mine, new, none" in refused.text
    forged = agent.http.post("/me/alerts", data={"alerts": "all", "sound": "1"})
    assert forged.status_code == 403
    saved = agent.http.post("/me/alerts", headers={"X-CSRF-Token": agent.csrf},
                            data={"alerts": "all", "sound": "1"})
    assert saved.json() == {"alerts": "all", "sound": True}
    without_javascript = agent.http.post("/me/alerts", headers={"Accept": "text/html"},
                                         data={"alerts": "none", "csrf_token": agent.csrf})
    assert without_javascript.status_code == 303
    alex.reload()
    expect(alex.get_by_label("Alerts", exact=True)).to_have_value("none")
    expect(alex.get_by_label("Sound", exact=True)).not_to_be_checked()
    agent.close()


def test_a_returning_visitor_hears_a_reply_once_they_touched_the_host_page(
    new_context: NewContext, start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed,
) -> None:
    widget = embed(start_app(app_env))
    visitor = new_context()
    visitor.add_init_script(COUNT_TONES + BLOCK_AUTOPLAY)
    page = visitor.new_page()
    frame = open_widget(page, widget.host.url)
    send(frame, "Is anyone there?")
    conversation = conversation_of(frame)

    # After a reload the chat's frame has had no click or key of its own: it cannot chime.
    page.reload()
    expect(page.frame_locator("iframe[title=Chat]").locator(".entry.visitor")).to_have_count(1)
    page.get_by_role("heading", name="Acme Store").click()  # anywhere on the host page
    agent = AgentSession(widget.app.url, seed.email, seed.password)
    agent.reply(conversation, "Yes, how can I help?")
    expect(page.get_by_role("button", name="Open chat")).to_have_text("1")
    wait_until(page, lambda: chimes(page) == 1)
    chat = next(f for f in page.frames if "/frame" in f.url)
    assert chat.evaluate("window.__tones") == 0  # the host page played it
    agent.close()
