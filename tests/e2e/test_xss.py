"""An XSS corpus in every field that a visitor, an agent or an admin can set, on every screen
that shows it, in a real Chromium: nothing runs, nothing is fetched, no dialog opens, htmx
acts on none of it, and the text reads back as it was typed.

Each payload that could run calls ``__xss(id)`` (a binding into the test), fetches
``/xss-probe/ID`` or ``http://xss.invalid/ID`` (a route catches both), opens a dialog, or
carries a ``data-xss`` attribute that the DOM would show if the text had become markup;
the id names the field, so a failure says where the hole is.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Dialog, Locator, Page, Route, expect

from chat import db
from chat.actions.conversations import MAX_BODY_LENGTH
from tests.conftest import Seed
from tests.e2e.agent import AgentSession
from tests.e2e.conftest import Widget
from tests.e2e.test_dashboard import sign_in
from tests.e2e.test_widget import conversation_of, open_widget
from tests.support import AppProcess, run_async

StartApp = Callable[..., AppProcess]
NewContext = Callable[..., BrowserContext]

MARK = "XID"  # replaced by "<field>-<payload>" in every payload
PAYLOADS = {
    "script": "<script data-xss>__xss('XID')</script>",
    "img": "<img data-xss src=/xss-probe/XID onerror=\"__xss('XID')\">",
    "exfil": "<img data-xss src=\"http://xss.invalid/XID\">",
    "svg": "<svg data-xss onload=__xss('XID')>",
    "svg-script": "<svg><script data-xss>__xss('XID')</script></svg>",
    "mathml": "<math><mtext><table><mglyph><style><img data-xss src=/xss-probe/XID "
              "onerror=__xss('XID')>",
    "details": "<details data-xss open ontoggle=\"__xss('XID')\">x</details>",
    "autofocus": "<input data-xss autofocus onfocus=\"__xss('XID')\">",
    "srcdoc": "<iframe data-xss srcdoc=\"<script>parent.__xss('XID')</script>\"></iframe>",
    "iframe-js": "<iframe data-xss src=\"javascript:__xss('XID')\"></iframe>",
    "a-js": "<a data-xss href=\"jav&#x09;ascript:__xss('XID')\">click</a>",
    "form-js": "<form data-xss action=\"javascript:__xss('XID')\"><button>go</button></form>",
    "meta": "<meta data-xss http-equiv=refresh content=\"0;url=javascript:__xss('XID')\">",
    "base": "<base data-xss href=\"http://xss.invalid/XID/\">",
    "object": "<object data-xss data=\"javascript:__xss('XID')\"></object>",
    "dialog": "<img data-xss src=/xss-probe/XID onerror=\"alert('XID')\">",
    "dq-break": "\"><img data-xss src=/xss-probe/XID onerror=\"__xss('XID')\">",
    "sq-break": "'><img data-xss src=/xss-probe/XID onerror='__xss(`XID`)'>",
    "dq-attr": "\" data-xss autofocus onfocus=\"__xss('XID')\" x=\"",
    "sq-attr": "' data-xss autofocus onfocus='__xss(`XID`)' x='",
    "textarea": "</textarea><img data-xss src=/xss-probe/XID onerror=\"__xss('XID')\">",
    "title": "</title><img data-xss src=/xss-probe/XID onerror=\"__xss('XID')\">",
    "script-end": "</script><script data-xss>__xss('XID')</script>",
    "style-end": "</style><img data-xss src=/xss-probe/XID onerror=\"__xss('XID')\">",
    "comment": "--><img data-xss src=/xss-probe/XID onerror=\"__xss('XID')\"><!--",
    "noscript": "<noscript><p title=\"</noscript><img data-xss src=/xss-probe/XID "
                "onerror=__xss('XID')>\">",
    "js-string": "\\';__xss('XID');//</script>\"}]",
    "template": "<template data-xss><img src=/xss-probe/XID onerror=\"__xss('XID')\"></template>",
    "hx-partial": "<hx-partial hx-target=\"body\" hx-swap=\"beforeend\"><b data-xss>XID</b>"
                  "</hx-partial>",
    "hx-upsert": "<hx-upsert hx-target=\"body\" key=\"id\"><b data-xss id=\"XID\">XID</b>"
                 "</hx-upsert>",
    "hx-template": "<template hx type=\"partial\" hx-target=\"body\"><b data-xss>XID</b>"
                   "</template>",
    "hx-get": "<div data-xss hx-get=\"/xss-probe/XID\" hx-trigger=\"load\">XID</div>",
    "hx-on": "<div data-xss hx-on::after:init=\"__xss('XID')\" hx-on:click=\"__xss('XID')\">"
             "x</div>",
    "hx-oob": "<div data-xss id=\"main\" hx-swap-oob=\"true\">XID</div>",
    "css-import": "<style data-xss>@import url(/xss-probe/XID);</style>",
    "css-attr": "\" style=\"background:url(/xss-probe/XID)\" data-xss x=\"",
    "markdown": "[click](javascript:__xss('XID')) ![x](/xss-probe/XID) <javascript:__xss('XID')>",
    "url-break": "https://example.com/\"><img data-xss src=/xss-probe/XID onerror=__xss('XID')>",
    "url-quote": "see https://example.com/?a='onmouseover='__xss(`XID`)'&b=&quot;x, thanks",
    "js-url": "javascript:__xss('XID')//https://example.com",
    "entities": "&lt;img data-xss src=x onerror=__xss('XID')&gt; &#60;b&#62; &amp;amp;",
    "template-syntax": "{{7*7}} {% raw %} ${__xss('XID')} #{7*7} <%= 7*7 %> XID",
    "fullwidth": "\uff1cimg data-xss src=/xss-probe/XID onerror=__xss('XID')\uff1e",
    "polyglot": "jaVasCript:/*-/*`/*'/*\"/**/(/* */oNcliCk=__xss('XID') )//</stYle/</titLe/"
                "</teXtarEa/</scRipt/--!><sVg/data-xss/oNloAd=__xss('XID')//>",
    "unicode": "\u202egnp.exe\u202c \U0001f469\u200d\U0001f4bb zero\u200bwidth \ufeffbom "
               "e\u0301 \u05e9\u05dc\u05d5\u05dd XID",
}


def corpus(field: str, limit: int = MAX_BODY_LENGTH, *, ascii: bool = False) -> list[str]:
    """Every payload that fits in ``limit`` characters, marked with ``field``."""
    items = [text.replace(MARK, f"{field}-{name}") for name, text in PAYLOADS.items()]
    return [item for item in items if len(item) <= limit and (item.isascii() or not ascii)]


def pick(field: str, *names: str) -> list[str]:
    """The named payloads, marked with ``field``."""
    return [PAYLOADS[name].replace(MARK, f"{field}-{name}") for name in names]


# Closes whatever a value lands in (an attribute, a textarea, a title, a style, a script or a
# comment), so that what follows it would be markup wherever the value is put unescaped.
BREAKOUT = "\"'></textarea></title></style></script>-->"
# Payloads that leave the parser inside a style, a comment or an attribute, where they would
# hide the payloads after them: last in a value made of several.
OPENERS = {"mathml", "comment", "dq-attr", "sq-attr", "css-attr"}


def hostile(field: str, limit: int, start: int = 0, *, ascii: bool = False) -> str:
    """One value for a field that holds one: the break-out, a tag short enough for any field,
    then as many payloads as fit, from the start-th on (so that fields differ)."""
    names = [name for name in PAYLOADS if name != "svg"]
    names = names[start:] + names[:start]
    names.sort(key=lambda name: name in OPENERS)
    value = BREAKOUT
    for item in pick(field, "svg", *names):
        if len(value) + 1 + len(item) <= limit and (item.isascii() or not ascii):
            value = f"{value} {item}"
    return value


def long_text(field: str) -> str:
    """A message of the longest length allowed, made of markup."""
    chunk = f"<b data-xss hx-get=/xss-probe/{field} hx-trigger=load>{field}</b>"
    return (chunk * (MAX_BODY_LENGTH // len(chunk) + 1))[:MAX_BODY_LENGTH]


def as_name(text: str) -> str:
    """What the server keeps of a name: whitespace runs collapsed."""
    return " ".join(text.split())


# Payloads that a valid email address (one "@", no spaces) can carry, for the server's check.
EMAIL = "\"'><svg/data-xss/onload=\"__xss('email')\"></textarea>@x.io"
PRECHAT_EMAIL = "'/onfocus=__xss`prechat`//{}|~^@x.io"  # valid for the browser and the server
BAD_EMAIL = "\"><img data-xss src=/xss-probe/bad-email onerror=__xss(1)>"  # invalid: echoed

# Elements and attributes that only user text made markup could have put in a page.
SCAN = """() => {
    const suspicious = a => a.name === 'data-xss' || a.name === 'srcdoc'
        || /^(on|hx-on)/.test(a.name) || (a.name.startsWith('hx-') && a.value.includes('xss'))
        || (/^(href|src|action|formaction|data)$/.test(a.name)
            && /^\\s*(javascript|vbscript|data):/i.test(a.value));
    return Array.from(document.querySelectorAll('*')).flatMap(el => [
        ...(el.localName.startsWith('xss') ? [`<${el.localName}>`] : []),
        ...Array.from(el.attributes).filter(suspicious)
            .map(a => `<${el.localName} ${a.name}="${a.value.slice(0, 60)}">`)]);
}"""


class Watch:
    """Everything a payload would do if it ran, in the browser contexts it makes."""

    def __init__(self, new_context: NewContext) -> None:
        self._new_context = new_context
        self.contexts: list[BrowserContext] = []
        self.ran: list[str] = []  # __xss() calls
        self.dialogs: list[str] = []
        self.fetched: list[str] = []  # requests to /xss-probe/ or xss.invalid
        self.csp: list[str] = []  # Content-Security-Policy violations in the console

    def new_context(self, **options: object) -> BrowserContext:
        context = self._new_context(**options)
        context.expose_binding("__xss", lambda source, *args: self.ran.append(repr(args)))
        context.on("dialog", self._dialog)
        context.on("console", self._console)
        context.route(_is_probe, self._probe)
        self.contexts.append(context)
        return context

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp.append(message.text)

    def _probe(self, route: Route) -> None:
        self.fetched.append(route.request.url)
        route.fulfill(status=404, body="")

    def assert_clean(self) -> None:
        """Nothing ran, and no element in any page carries markup that came from user text."""
        markup = {frame.url: found for context in self.contexts for page in context.pages
                  for frame in page.frames if (found := frame.evaluate(SCAN))}
        seen = {"ran": self.ran, "dialogs": self.dialogs, "fetched": self.fetched,
                "csp": sorted(set(self.csp)), "markup": markup}
        assert {name: found for name, found in seen.items() if found} == {}


@pytest.fixture
def watch(new_context: NewContext) -> Iterator[Watch]:
    watch = Watch(new_context)
    yield watch
    watch.assert_clean()  # after a failed text check too: what ran shows where the hole is


def _is_probe(url: str) -> bool:
    parts = urlsplit(url)
    return parts.hostname == "xss.invalid" or parts.path.startswith("/xss-probe/")


class HttpVisitor:
    """A visitor calling the widget's endpoints directly, as any script can, with what the
    widget's own form would refuse (an email the browser rejects, any page, any browser)."""

    def __init__(self, widget: Widget, user_agent: str = "curl/8") -> None:
        self.http = httpx.Client(
            base_url=f"{widget.app.url}/widget/{widget.site_key}", timeout=15,
            headers={"User-Agent": user_agent, "Origin": widget.host.origin,
                     "Accept": "application/json"})

    def start(self, body: str, **contact: str) -> int:
        response = self.http.post("/conversations", data={
            "body": body, "client_id": uuid.uuid4().hex, **contact})
        assert response.status_code == 201, response.text
        if "visitor_token" in response.json():  # a new visitor
            self.http.headers["X-Visitor-Token"] = response.json()["visitor_token"]
        return int(response.json()["conversation"]["id"])

    def close(self) -> None:
        self.http.close()


def api(session: AgentSession, path: str, **data: str) -> None:
    """An admin's change through the app's own endpoint, so the values pass its checks."""
    response = session.http.post(path, data=data, headers={
        "X-CSRF-Token": session.csrf, "Accept": "application/json"})
    assert response.status_code == 200, response.text


def fetch_value(database: str, query: str, *args: object) -> Any:
    async def fetch() -> Any:
        async with db.connect(database) as conn:
            return await conn.fetchval(query, *args)

    return run_async(fetch())


def texts(locator: Locator) -> list[str]:
    return [text.strip() for text in locator.all_text_contents()]


def scroll_back(page: Page, history: Locator, entries: Locator, count: int) -> None:
    """Scroll to the top until ``count`` entries are there: each visit loads a page more."""
    while (loaded := entries.count()) < count:
        history.hover()
        page.mouse.wheel(0, -100_000)
        expect(entries).not_to_have_count(loaded)


# One value per single-value field; each names its field.
AGENT = hostile("agent", 100)
AGENT_2 = pick("agent2", "hx-get")[0]  # for htmx: in live status headers and activity
SITE_NAME = hostile("site", 100, 3)
GREETING = hostile("greeting", 500)
WELCOME = hostile("welcome", 500, 11)
AWAY = hostile("away", 500, 22)
CANNED = hostile("canned", 1000, 16)
IDENTIFY = hostile("identify", 100, 27)
USER_AGENT = hostile("ua", 500, 5, ascii=True)
TYPED = pick("typed", "script", "dq-break", "textarea", "hx-partial", "hx-get", "unicode")
SITE_ID = "SELECT id FROM sites WHERE public_key = $1"
STORED = ":not(.pending, .failed)"  # entries the server sent, not the optimistic bubbles


def test_hostile_text_from_visitors_and_agents_shows_as_text_in_the_widget_and_dashboard(
    start_app: StartApp, app_env: dict[str, str],
    embed: Callable[[AppProcess], Widget], seed: Seed, database: str, watch: Watch,
) -> None:
    widget = embed(start_app(app_env))
    admin = AgentSession(widget.app.url, seed.email, seed.password)
    api(admin, "/profile", name=AGENT)
    api(admin, "/agents", name=AGENT_2, email=EMAIL, password="agent password", role="agent")
    api(admin, "/canned", shortcut="xss", body=CANNED)
    settings = {"name": SITE_NAME, "origins": widget.host.origin, "greeting": GREETING,
                "welcome": WELCOME, "offline_message": AWAY, "prechat_name": "optional",
                "prechat_email": "off", "color": "#2563eb"}
    site_path = f"/settings/sites/{fetch_value(database, SITE_ID, widget.site_key)}"
    api(admin, site_path, **settings)
    agent = sign_in(watch.new_context(), widget.app, seed.email, seed.password)
    page = watch.new_context(user_agent=USER_AGENT).new_page()

    # The welcome, with the site's texts; the host page's address carries a payload too.
    frame = open_widget(page, widget.host.url + "?q=" + quote(hostile("page", 300), safe="'"))
    expect(frame.locator(".greeting h2")).to_be_visible()
    watch.assert_clean()
    expect(frame.locator("h1")).to_have_text(as_name(SITE_NAME))
    expect(frame.locator(".greeting h2")).to_have_text(GREETING)
    assert frame.locator(".greeting p").text_content() == WELCOME

    # identify(): the name fills the pre-chat field; an invalid email comes back in the error.
    page.evaluate("([name, email]) => ChatWidget.identify({name, email})", [IDENTIFY, BAD_EMAIL])
    expect(frame.get_by_label("Your name")).to_have_value(IDENTIFY)
    box = frame.get_by_role("textbox", name="Message")
    box.fill("hello")
    box.press("Enter")
    expect(frame.locator(".entry.failed")).to_contain_text(f"{BAD_EMAIL!r} is not a valid email")
    watch.assert_clean()

    # The visitor types payloads: optimistic bubbles, then the stored copies, live to the agent.
    page.evaluate("name => ChatWidget.identify({name})", IDENTIFY)
    for count, text in enumerate(TYPED, 1):
        box.fill(text)
        box.press("Enter")
        expect(frame.locator(f".entry.visitor{STORED}")).to_have_count(count)
    conversation = conversation_of(frame)
    agent_row = agent.locator(f"#conversation-{conversation}")
    expect(agent_row.locator(".preview")).not_to_be_empty()
    watch.assert_clean()
    assert texts(frame.locator(f".entry.visitor{STORED} .body")) == TYPED
    expect(agent_row.locator(".visitor")).to_have_text(as_name(IDENTIFY))
    expect(agent_row.locator(".preview")).to_have_text(TYPED[-1][:120])

    # The conversation in the dashboard: the visitor's browser and page, claim, canned, notes.
    agent_row.get_by_role("link").click()
    agent.get_by_role("button", name="Claim").click()
    expect(frame.locator(".entry.activity")).to_have_count(1)  # live in the widget
    reply = agent.get_by_role("textbox", name="Reply")
    reply.fill("/xss")
    menu = agent.get_by_role("listbox", name="Canned responses")
    expect(menu.get_by_role("option")).to_contain_text(f"/xss {CANNED[:80]}")
    reply.press("Enter")
    expect(reply).to_have_value(CANNED)
    reply.press("Enter")
    agent.get_by_label("Private note").check()
    reply.fill(TYPED[0])
    reply.press("Enter")
    expect(agent.locator(f".entry.note{STORED}")).to_have_count(1)
    expect(frame.locator(".entry.agent")).to_have_count(1)
    watch.assert_clean()
    panel = agent.get_by_role("complementary", name="Visitor")
    expect(panel.locator("dd").first).to_have_text(as_name(IDENTIFY))
    expect(panel.locator("dd[title]")).to_have_attribute("title", USER_AGENT)
    expect(panel.get_by_role("link", name=page.url)).to_have_attribute("href", page.url)
    expect(agent.locator(".conversation-head h1")).to_have_text(as_name(IDENTIFY))
    expect(agent.locator(".conversation-status .state")).to_have_text(f"Active · {as_name(AGENT)}")
    expect(frame.locator(".conversation-status")).to_contain_text(f"{as_name(AGENT)} is here")
    expect(frame.locator(".entry.activity .body")).to_have_text(
        f"{as_name(AGENT)} joined the conversation")
    assert texts(frame.locator(".entry.agent .body")) == [CANNED]
    assert texts(agent.locator(".entry.note .body")) == [TYPED[0]]

    # Every payload as a reply, live in both; a visitor's message live in the dashboard.
    replies = [*corpus("reply"), long_text("reply-long")]
    for text in replies:
        admin.reply(conversation, text)
    expect(frame.locator(".entry.agent")).to_have_count(len(replies) + 1)
    expect(agent.locator(f".entry.agent{STORED}")).to_have_count(len(replies) + 1)
    box.fill(TYPED[1])
    box.press("Enter")
    expect(agent.locator(".entry.visitor")).to_have_count(len(TYPED) + 1)
    agent.get_by_label("Assign to").select_option(label=as_name(AGENT_2))
    agent.get_by_role("button", name="Assign", exact=True).click()
    expect(frame.locator(".conversation-status")).to_contain_text(f"{as_name(AGENT_2)} is here")
    watch.assert_clean()
    assert texts(frame.locator(".entry.agent .body"))[1:] == replies
    assert texts(agent.locator(".entry.agent .body"))[1:] == replies
    assert texts(agent.locator(".entry.visitor .body"))[-1] == TYPED[1]
    expect(agent.locator(".conversation-status .state")).to_have_text(
        f"Active · {as_name(AGENT_2)}")

    # Reloaded, both render the latest page, and scrolling up loads the earlier ones.
    frame = open_widget(page, widget.host.url)
    agent.reload()
    for tab, history in ((page, frame.locator("main")), (agent, agent.locator("#history"))):
        entries = history.locator(".entry.agent")
        expect(entries.first).to_be_visible()
        scroll_back(tab, history, entries, len(replies) + 1)
    watch.assert_clean()
    assert texts(frame.locator(".entry.agent .body"))[1:] == replies
    assert texts(agent.locator(".entry.agent .body"))[1:] == replies

    # Closed by someone else, then away: the dashboard's header live, a new welcome with
    # the away message, and the past conversations.
    admin.act(conversation, "close")
    expect(frame.get_by_role("button", name="Start a new conversation")).to_be_visible()  # live
    expect(agent.get_by_role("button", name="Reopen")).to_be_visible()  # live
    api(admin, site_path, **settings, offline="on")
    frame.get_by_role("button", name="Start a new conversation").click()
    expect(frame.get_by_label("Email")).to_be_visible()  # away: an email is asked for
    watch.assert_clean()
    expect(agent.locator(".conversation-status .state")).to_have_text(
        f"Closed · {as_name(AGENT_2)}")
    expect(frame.locator(".greeting p")).to_have_text(AWAY)
    frame.get_by_role("button", name="Past conversations").click()
    expect(frame.locator(".past-item")).to_have_count(1)
    watch.assert_clean()
    expect(frame.locator(".past-item .preview")).to_have_text(TYPED[1][:80])

    # Away, the pre-chat form asks for an email: one the browser accepts, quotes and all.
    frame.get_by_role("button", name="Start a new conversation").click()
    frame.get_by_label("Email").fill(PRECHAT_EMAIL)
    box.fill(TYPED[5])
    box.press("Enter")
    expect(frame.locator(f".entry.visitor{STORED}")).to_have_count(1)
    agent.locator(f"#conversation-{conversation_of(frame)}").get_by_role("link").click()
    expect(panel.get_by_role("link", name=PRECHAT_EMAIL)).to_have_attribute(
        "href", "mailto:" + PRECHAT_EMAIL)
    watch.assert_clean()

    admin.close()


def test_what_scripts_send_as_visitors_shows_as_text_in_the_inbox_and_the_visitor_panel(
    start_app: StartApp, app_env: dict[str, str], embed: Callable[[AppProcess], Widget],
    seed: Seed, watch: Watch,
) -> None:
    widget = embed(start_app(app_env))
    agent = sign_in(watch.new_context(), widget.app, seed.email, seed.password)

    # Visitors by script: one conversation for each payload as name and message, live.
    names = corpus("name", 100)
    started = {}
    for name in names:
        visitor = HttpVisitor(widget)
        started[name] = visitor.start(name, name=name)
        visitor.close()
    rows = agent.locator(".conversation-row")
    expect(rows).to_have_count(len(names))
    watch.assert_clean()
    assert set(texts(rows.locator(".visitor"))) == {as_name(n) for n in names}
    assert set(texts(rows.locator(".preview"))) == {n[:120] for n in names}

    # The visitor panel: name, email, page (a link only when it is http(s)), browser, and
    # past conversations.
    name, browser = hostile("contact", 100, 33), hostile("ua2", 500, 30, ascii=True)
    contact = HttpVisitor(widget, user_agent=browser)
    page_field = "javascript:" + hostile("page2", 1000, 13)
    earlier = contact.start(TYPED[2], name=name, email=EMAIL, page=page_field)
    latest = contact.start(TYPED[3], email=EMAIL)
    agent.goto(f"{widget.app.url}/conversations/{latest}")
    panel = agent.get_by_role("complementary", name="Visitor")
    expect(panel).to_be_visible()
    watch.assert_clean()
    field = {label: panel.locator(f"dt:text-is('{label}') + dd")
             for label in ("Name", "Page", "Browser")}
    expect(field["Name"]).to_have_text(as_name(name))
    expect(field["Page"]).to_have_text(page_field)
    expect(field["Browser"]).to_have_text(browser)  # no browser it knows: the raw string
    expect(field["Browser"]).to_have_attribute("title", browser)
    expect(panel.get_by_role("link", name=EMAIL)).to_have_attribute("href", "mailto:" + EMAIL)
    expect(panel.get_by_role("link", name=TYPED[2][:60])).to_have_attribute(
        "href", f"/conversations/{earlier}")
    expect(panel.get_by_role("link")).to_have_count(2)  # not the page: it is not http(s)
    linked = HttpVisitor(widget)
    address = "http://example.com/" + hostile("page3", 1000, 17)
    agent.goto(f"{widget.app.url}/conversations/{linked.start(TYPED[4], page=address)}")
    expect(field["Page"].get_by_role("link")).to_have_attribute("href", address)
    watch.assert_clean()
    expect(field["Page"]).to_have_text(address)

    # Search: the query shown back, and the rows the server renders for it.
    agent.goto(f"{widget.app.url}/inbox?q={quote(names[0])}")
    expect(agent.locator(f"#conversation-{started[names[0]]}")).to_be_visible()
    watch.assert_clean()
    expect(agent.get_by_role("searchbox")).to_have_value(names[0])
    expect(agent.locator(".search-note")).to_contain_text(f"Results for “{names[0]}”")
    expect(agent.locator(f"#conversation-{started[names[0]]} .visitor")).to_have_text(
        as_name(names[0]))
    contact.close()
    linked.close()


def submit(form: Locator) -> None:
    """Submit with the browser's own checks off: the server gets what any client can send."""
    form.evaluate("form => { form.noValidate = true }")
    form.locator("button[type=submit]").last.click()


ADMIN = hostile("admin", 100, 9)
RENAMED = hostile("renamed", 100, 18)
# Neither is an origin (a host is letters, digits, hyphens and dots): each is refused, echoed.
ORIGIN = "https://x\"'><xss-origin><script>__xss('origin')"  # no "/": the host ends there
BAD_ORIGIN = "javascript:<svg/data-xss/onload=__xss('bad-origin')>"
NEXT = "/\"><script data-xss>__xss('next')</script>"


def test_hostile_text_in_settings_and_accounts_shows_as_text_on_the_admin_pages(
    start_app: StartApp, app_env: dict[str, str], database: str, watch: Watch,
) -> None:
    app = start_app(app_env)  # a new installation: one site, nobody to sign in yet
    page = watch.new_context().new_page()

    # Set-up: an invalid email is echoed, the name stays in its field; then the first admin.
    page.goto(app.url + "/setup")
    form = page.locator("form")
    form.get_by_label("Your name").fill(ADMIN)
    form.get_by_label("Email").fill(BAD_EMAIL)
    form.get_by_label("Password").fill("a good password")
    submit(form)
    expect(page.get_by_role("alert")).to_be_visible()
    watch.assert_clean()
    expect(page.get_by_role("alert")).to_have_text(f"{BAD_EMAIL!r} is not a valid email address.")
    expect(form.get_by_label("Your name")).to_have_value(ADMIN)
    expect(form.get_by_label("Email")).to_have_value(BAD_EMAIL)
    form.get_by_label("Email").fill(EMAIL)
    form.get_by_label("Password").fill("a good password")
    submit(form)
    expect(page).to_have_url(re.compile("/inbox$"))

    # Sites: invalid origins are echoed; then every text of the widget, and what it shows.
    page.goto(app.url + "/settings")
    site = page.locator("form.grid-form").first
    for bad in (BAD_ORIGIN, ORIGIN):
        site.get_by_label("Allowed origins").fill(f"https://shop.example\n{bad}")
        submit(site)
        expect(page.get_by_role("alert")).to_be_visible()
        watch.assert_clean()
        expect(page.get_by_role("alert")).to_contain_text(repr(bad))
        site = page.locator("form.grid-form").first
    texts_of_site = {"Site name": SITE_NAME, "Allowed origins": "https://shop.example",
                     "Greeting": GREETING, "Welcome text": WELCOME, "Away message": AWAY}
    for label, value in texts_of_site.items():
        site.get_by_label(label).fill(value)
    submit(site)
    expect(page).to_have_url(re.compile(r"/settings\?saved=1$"))
    watch.assert_clean()
    expect(page.locator("h2").first).to_have_text(as_name(SITE_NAME))
    for label, value in texts_of_site.items():
        expect(site.get_by_label(label)).to_have_value(value if label != "Site name" else
                                                       as_name(value))

    # The widget page as the site's texts make it, and its error that echoes the origin.
    key = fetch_value(database, "SELECT public_key FROM sites")
    frame_url = f"{app.url}/widget/{key}/frame?origin="
    page.goto(frame_url + quote("https://shop.example"))
    expect(page.locator(".greeting h2")).to_be_visible()
    watch.assert_clean()
    expect(page).to_have_title(f"Chat with {as_name(SITE_NAME)}")
    expect(page.locator("h1")).to_have_text(as_name(SITE_NAME))
    expect(page.locator(".greeting h2")).to_have_text(GREETING)
    # The welcome while the team is online (the admin's inbox counts for a while after they
    # left it), the away message once it is not.
    online = page.locator("#team-presence").text_content() == "Online"
    assert page.locator(".greeting p").text_content() == (WELCOME if online else AWAY)
    page.goto(frame_url + quote("https://stranger.example"))
    expect(page.get_by_role("alert")).to_be_visible()
    watch.assert_clean()
    expect(page.get_by_role("alert")).to_contain_text(
        "https://stranger.example may not embed this chat")
    page.goto(frame_url + quote(ORIGIN))  # not an origin at all
    expect(page.get_by_role("alert")).to_be_visible()
    watch.assert_clean()

    # Team: an invalid email is echoed; then an agent with a hostile name and email.
    page.goto(app.url + "/agents")
    add = page.locator("form.grid-form")
    add.get_by_label("Name").fill(AGENT)
    add.get_by_label("Email").fill(BAD_EMAIL)
    add.get_by_label("Password").fill("agent password")
    submit(add)
    expect(page.get_by_role("alert")).to_be_visible()
    watch.assert_clean()
    expect(page.get_by_role("alert")).to_have_text(f"{BAD_EMAIL!r} is not a valid email address.")
    add.get_by_label("Name").fill(AGENT)
    add.get_by_label("Email").fill(EMAIL.replace("@", "2@"))
    add.get_by_label("Password").fill("agent password")
    submit(add)
    expect(page).to_have_url(re.compile(r"/agents\?saved=1$"))
    watch.assert_clean()
    member = page.locator("tbody tr", has_text=EMAIL.replace("@", "2@"))
    expect(member.locator("td").first).to_have_text(as_name(AGENT))
    expect(member.get_by_role("button", name=f"Deactivate {as_name(AGENT)}")).to_be_visible()

    # Canned responses: a hostile shortcut is refused; a hostile text is kept as text.
    page.goto(app.url + "/canned")
    add = page.locator("form.grid-form")
    add.get_by_label("Shortcut").fill(PAYLOADS["dq-attr"].replace(MARK, "shortcut"))
    add.get_by_label("Text").fill(CANNED)
    submit(add)
    expect(page.get_by_role("alert")).to_be_visible()
    watch.assert_clean()
    add.get_by_label("Shortcut").fill("xss")
    add.get_by_label("Text").fill(CANNED)
    submit(add)
    expect(page).to_have_url(re.compile(r"/canned\?saved=1$"))
    watch.assert_clean()
    assert page.locator("td.pre").text_content() == CANNED

    # Profile: a new name, in the form and the top bar.
    page.goto(app.url + "/profile")
    profile = page.locator("form").filter(has=page.get_by_label("Name"))
    profile.get_by_label("Name").fill(RENAMED)
    submit(profile)
    expect(page.get_by_text("Saved.", exact=True)).to_be_visible()
    watch.assert_clean()
    expect(profile.get_by_label("Name")).to_have_value(as_name(RENAMED))
    expect(page.locator(".me")).to_have_text(as_name(RENAMED))

    # Search and error pages: the query is shown back; a bad tab or id says so, echoing nothing.
    query = hostile("search", 200, 25)
    page.goto(f"{app.url}/inbox?q={quote(query)}")
    expect(page.locator(".search-note")).to_be_visible()
    for path in (f"/inbox?tab={quote(query)}", "/conversations/999999999"):
        page.goto(app.url + path)
        expect(page.get_by_role("alert")).not_to_be_empty()
        watch.assert_clean()
    page.goto(f"{app.url}/inbox?q={quote(query)}")
    expect(page.get_by_role("searchbox")).to_have_value(query)
    expect(page.locator(".search-note")).to_contain_text(f"Results for “{query}”")

    # Signing in again: next= is kept in its field; a failed attempt echoes the email.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile("/login$"))
    page.goto(f"{app.url}/login?next={quote(NEXT)}")
    login = page.locator("form")
    login.get_by_label("Email").fill(BAD_EMAIL)
    login.get_by_label("Password").fill("wrong password")
    submit(login)
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    watch.assert_clean()
    expect(login.get_by_label("Email")).to_have_value(BAD_EMAIL)
    expect(login.locator("input[name=next]")).to_have_value(NEXT)
    login.get_by_label("Email").fill(EMAIL)
    login.get_by_label("Password").fill("a good password")
    submit(login)
    expect(page.get_by_role("alert")).to_have_text("Not found.")  # next= led to no page
    watch.assert_clean()
