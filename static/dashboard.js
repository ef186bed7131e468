/* The dashboard's glue. The live stream (static/live.js: one tab holds it for all the
 * agent's tabs) keeps the page live through htmx; this adds what is the page's own business:
 * which rows a tab shows, unread counts and the title (read in one tab, read in all), sounds
 * (once per browser) and desktop notifications, the reply box (optimistic send, canned
 * responses), the connection state, and keyboard shortcuts.
 */
(function () {
  "use strict";
  var body = document.body;
  var me = body.dataset.agent;
  var tab = body.dataset.tab;
  var openId = body.dataset.conversation || null;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  /* Presence (chat/roster.py): a visible tab says so when it shows and every so often; a
   * hidden one says nothing, so the agent turns away once all their tabs stayed hidden for
   * AWAY_AFTER. Offline is the server's to decide, from the open stream: no timer here
   * decides it, so background-tab throttling cannot make anyone flap. */
  var hereEvery = Number(document.body.dataset.hereRefresh || 0) * 1000;
  function here() {
    if (document.hidden) return;
    fetch("/presence/here", { method: "POST", credentials: "same-origin",
                              headers: { "X-CSRF-Token": csrf } }).catch(function () {});
  }
  if (hereEvery) {
    here();
    setInterval(here, hereEvery);
    document.addEventListener("visibilitychange", here);
  }
  // The agent's alert preference, as the server rendered it (and as saved since, in any tab).
  var alertsForm = document.getElementById("alerts");
  var soundOff = document.getElementById("sound-off");
  var alertsOn = document.getElementById("alerts-on");
  var inbox = document.getElementById("inbox");
  var reads = inbox ? JSON.parse(inbox.dataset.reads || "{}") : {};
  var baseTitle = document.title;
  var known = new Set();
  var heard = {};  // row id -> the visitor messages it had when this tab last looked
  // What this page keeps live: its inbox rows (none on search results) and conversation.
  // Every page hears what the stream brings (a reload when signed out), but only these need
  // one: admin pages hold none.
  var inboxKind = inbox && inbox.dataset.inbox || null;
  var live = ChatLive.connect({
    name: "agent:" + me,
    url: function (watch, rows) { return "/stream?inbox=" + (rows || "") + "&watch=" + watch; },
    headers: function () { return {}; },
    credentials: "same-origin"
  });

  function post(path, data) {
    return fetch(path, { method: "POST", body: data, credentials: "same-origin",
                         headers: { "X-CSRF-Token": csrf, "HX-Request": "true" } });
  }

  /* ---- the inbox -------------------------------------------------------------------- */

  // Which tab lists which row is the server's to say (chat/tabs.py): a row names its tabs,
  // the same for every agent, and the link of a tab of the agent's own conversations names
  // the agent. Search results show every row they found.
  var tabLinks = {};
  document.querySelectorAll("[data-tab-link]").forEach(function (link) {
    tabLinks[link.dataset.tabLink] = link;
  });
  function inTab(key, row) {
    if (key === "search") return true;
    var owner = tabLinks[key].dataset.assignee;
    return row.dataset.tabs.split(" ").indexOf(key) >= 0 &&
           (!owner || owner === row.dataset.assignee);
  }

  function unreadOf(row) {
    var id = row.id.replace("conversation-", "");
    return Math.max(0, (+row.dataset.visitorMessages || 0) - (reads[id] || 0));
  }

  function refreshInbox() {
    if (!inbox) return;
    var rows = sortedRows();
    var total = 0;
    rows.forEach(function (row) {
      var unread = showRow(row);
      if (row.dataset.status !== "closed") total += unread;
      heardFrom(row);
    });
    showCounts(rows);
    var empty = document.querySelector(".empty-inbox");
    if (empty) empty.hidden = rows.some(function (row) { return !row.hidden; });
    document.title = (total ? "(" + total + ") " : "") + baseTitle;
  }

  /* The rows, newest first, moving only what is out of place. */
  function sortedRows() {
    var rows = Array.from(inbox.querySelectorAll(".conversation-row"));
    rows.sort(function (a, b) { return b.dataset.activity.localeCompare(a.dataset.activity); });
    rows.forEach(function (row, index) {
      if (inbox.children[index] !== row) inbox.insertBefore(row, inbox.children[index] || null);
    });
    return rows;
  }

  /* A row's badge, whether this page's tab lists it, whether it is the one open; returns
   * its unread count. */
  function showRow(row) {
    var id = row.id.replace("conversation-", "");
    if (id === openId && row.dataset.status !== "closed") markRead(row);
    var unread = unreadOf(row);
    var badge = row.querySelector(".unread");
    badge.hidden = !unread;
    badge.textContent = unread;
    row.hidden = !inTab(tab, row);
    row.classList.toggle("current", id === openId);
    return unread;
  }

  /* A conversation new since the page loaded, or a new visitor message in one it had. */
  function heardFrom(row) {
    if (!known.has(row.id)) {
      if (row.dataset.status === "waiting") announce(row);
      known.add(row.id);
    } else if (+row.dataset.visitorMessages > heard[row.id] && row.dataset.status !== "closed") {
      newMessage(row);
    }
    heard[row.id] = Math.max(heard[row.id] || 0, +row.dataset.visitorMessages || 0);
  }

  /* A count for each tab whose link has one (the server renders one where it is true). */
  function showCounts(rows) {
    document.querySelectorAll("[data-count]").forEach(function (el) {
      var n = rows.filter(function (row) { return inTab(el.dataset.count, row); }).length;
      el.textContent = n || "";
    });
  }

  /* The open conversation is in view: its visitor messages are read (the unread counts of
   * every tab) up to its newest entry (the visitor's read receipts). */
  var readSeq = 0;
  function markRead(row) {
    if (document.hidden || !openId) return;
    row = row || document.getElementById("conversation-" + openId);
    var count = Math.max(row ? +row.dataset.visitorMessages || 0 : 0, reads[openId] || 0);
    var seq = ChatMessages.newestSeq(entries);
    if ((reads[openId] || 0) >= count && seq <= readSeq) return;
    reads[openId] = count;
    readSeq = seq;
    var data = new FormData();
    data.append("count", count);
    data.append("seq", seq);
    post("/conversations/" + openId + "/read", data);
    live.tell("read", { conversation: openId, count: count });
  }
  document.addEventListener("visibilitychange", refreshInbox);
  live.on("read", function (data) {  // read in another tab
    reads[data.conversation] = Math.max(reads[data.conversation] || 0, data.count);
    refreshInbox();
  });

  function announce(row) {
    var said = told(row);
    ChatMessages.announce("New conversation from " + said.name + ": " + said.text);
    if (level() === "none") return;
    // Every tab shows it; one of them (one that can play sound, if any) chimes.
    ChatLive.once("new-" + row.id, function () {
      alertAgent("New conversation: " + said.name, said);
    }, ChatMessages.canChime() ? 0 : 200);
  }

  /* A new visitor message in a conversation the inbox already had (agents' replies and
   * notes never count: the row counts the visitor's messages only). */
  function newMessage(row) {
    var id = row.id.replace("conversation-", "");
    var count = +row.dataset.visitorMessages;
    var key = "message-" + row.id + "-" + count;
    if (id === openId && !document.hidden && document.hasFocus()) {
      ChatLive.once(key, function () {});  // read here, in front of the agent: no tab alerts
      return;
    }
    if (!alertsFor(row)) return;
    var said = told(row);
    // Later than a tab that shows the conversation, which takes it first.
    ChatLive.once(key, function () {
      if ((reads[id] || 0) >= count) return;  // read meanwhile, in another tab
      alertAgent(said.name + ": " + firstWords(said.text), said);
    }, ChatMessages.canChime() ? 100 : 300);
  }

  /* What a row says, taken now: the row may be replaced before a tab alerts. */
  function told(row) {
    return { name: row.querySelector(".visitor").textContent, tag: row.id,
             text: row.querySelector(".preview").textContent, href: row.querySelector("a").href };
  }

  function firstWords(text) {
    var words = text.trim().split(/\s+/);
    var start = words.slice(0, 8).join(" ");
    return start.length > 60 ? start.slice(0, 59) + "…" : start + (words.length > 8 ? "…" : "");
  }

  /* Chime (unless muted) and, in a hidden tab, a desktop notification that opens it. */
  function alertAgent(title, said) {
    if (soundWanted()) ChatMessages.chime();
    if (!window.Notification || Notification.permission !== "granted" || !document.hidden) return;
    var note = new Notification(title, { body: said.text, tag: said.tag });
    note.onclick = function () { window.focus(); location.href = said.href; };
  }

  if (inbox) {
    inbox.querySelectorAll(".conversation-row").forEach(function (row) {
      known.add(row.id);
      heard[row.id] = +row.dataset.visitorMessages || 0;
    });
    // Rows come by swap into the inbox itself (static/live.js hands every tab the stream's
    // frames through htmx): one row upserted, or the whole inbox morphed when the stream
    // opens. Swaps inside a row (its typing mark) change nothing here.
    inbox.addEventListener("htmx:after:settle", function (event) {
      if (event.target === inbox) refreshInbox();
    });
    refreshInbox();
    inbox.addEventListener("click", function (event) {  // keep the tab when opening a row
      var link = event.target.closest("a");
      if (!link || tab === "search") return;
      event.preventDefault();
      location.href = link.getAttribute("href") + "?tab=" + tab;
    });
  }

  /* ---- the open conversation -------------------------------------------------------- */

  var history = document.getElementById("history");
  var entries = openId && document.getElementById("entries-" + openId);
  var form = document.getElementById("reply");
  var box = document.getElementById("reply-box");

  // Entries already on the page, or loaded as older history, are not news.
  var seen = new Set(entries ? Array.from(entries.children, function (e) { return e.id; }) : []);
  function arrived(entry) {
    ChatMessages.arrived(entry);
    if (seen.has(entry.id)) return;
    seen.add(entry.id);
    if (entry.classList.contains("visitor") && !entry.dataset.pending) {
      markRead(null);
      var name = document.querySelector(".conversation-head h1");
      ChatMessages.announce((name ? name.textContent : "Visitor") + ": " +
                            entry.querySelector(".body").textContent);
    }
  }
  /* Entries were put in the list (by the stream, or a reply's answer): follow them, and
   * offer the ones not seen yet as news. */
  function landed(nodes) {
    var news = false;
    nodes.forEach(function (n) {
      if (n.nodeType !== 1) return;
      if (!seen.has(n.id)) news = true;
      arrived(n);
    });
    follower.grew(news);
  }
  if (history) {
    var follower = ChatMessages.follow(history, document.getElementById("new-messages"));
    follower.toEnd();
    markRead(null);
    document.addEventListener("visibilitychange", function () { markRead(null); });
    // The stream's entries come by swap into the list: new ones, and re-delivered ones
    // that replace themselves.
    entries.addEventListener("htmx:after:settle", function (event) {
      if (event.target === entries) landed(event.detail.newContent);
    });
    history.addEventListener("scroll", function () {
      var older = history.querySelector("[data-action=older]:not(:disabled)");
      if (older && history.scrollTop < 40) loadOlder(older);
    });
  }

  function loadOlder(button) {
    button.disabled = true;
    fetch("/conversations/" + openId + "/older?before=" + button.dataset.before, {
      headers: { "HX-Request": "true" }, credentials: "same-origin"
    }).then(function (r) { return r.text(); }).then(function (html) {
      ChatMessages.prependOlder(button, html, entries, history).forEach(function (id) {
        seen.add(id);
      });
    });
  }

  function send() {
    var text = box.value.trim();
    var error = document.getElementById("reply-error");
    if (!text) { error.textContent = "Type a reply first."; error.hidden = false; return; }
    error.hidden = true;
    var note = form.elements.note.checked;
    var bubble = ChatMessages.pending(entries, text, note ? "note" : "agent");
    bubble.dataset.note = note ? "1" : "";
    // A note is one message, not a mode: the next reply goes to the visitor unless ticked again.
    form.elements.note.checked = false;
    follower.toEnd();
    box.value = "";
    typist.sent();
    deliver(bubble);
  }

  /* Tell the other agents (and, for a reply, the visitor) what this agent is doing here:
   * viewing, typing, stopped or left (see chat/signals.py). */
  function signal(kind, options) {
    options = options || {};
    var data = new FormData();
    data.append("kind", kind);
    if (form.elements.note.checked) data.append("note", "1");
    if (options.refresh) data.append("refresh", "1");
    fetch("/conversations/" + openId + "/signal", {
      method: "POST", body: data, credentials: "same-origin", keepalive: !!options.leaving,
      headers: { "X-CSRF-Token": csrf }
    }).catch(function () {});  // a lost signal costs nothing: the next one repeats it
  }
  var typist = form && ChatMessages.typing(box, signal);

  function viewing() {
    if (!document.hidden) signal(typist.active() ? "typing" : "viewing", { refresh: true });
  }

  function deliver(bubble) {
    var data = new FormData();
    data.append("body", bubble.dataset.text);
    data.append("client_id", bubble.dataset.pending);
    if (bubble.dataset.note) data.append("note", "1");
    ChatMessages.sending(bubble);
    post("/conversations/" + openId + "/messages", data).then(function (response) {
      return response.text().then(function (html) {
        if (!response.ok) ChatMessages.fail(bubble, response, html);
        else landed([ChatMessages.settle(bubble, html)].filter(Boolean));
      });
    }).catch(function () { ChatMessages.fail(bubble, null, ""); });
  }

  /* The server renders a closed conversation's reply box disabled and the Assign list on its
   * owner; when the status changes here (this agent's action or another's, live), both follow
   * the new status element. */
  function followStatus() {
    var status = document.getElementById("status-" + openId);
    if (!status) return;
    var closed = status.dataset.status === "closed";
    form.querySelector(".reply-fields").disabled = closed;
    document.getElementById("reply-closed").hidden = !closed;
    // Only an owner change moves the list, so a choice being made survives other updates.
    var assignee = document.querySelector(".assign select");
    if (assignee && status.dataset.assignee !== shownAssignee) {
      shownAssignee = status.dataset.assignee;
      assignee.value = shownAssignee;
    }
  }
  var shownAssignee;  // as the server rendered it, set below

  if (form) {
    shownAssignee = document.getElementById("status-" + openId).dataset.assignee;
    // A new status comes by swap: the stream's, or a Claim, Close or Reopen answered.
    document.addEventListener("htmx:after:swap", followStatus);
    form.addEventListener("submit", function (event) { event.preventDefault(); send(); });
    box.addEventListener("keydown", function (event) {
      if (cannedKeys(event)) return;
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
    box.addEventListener("input", cannedFilter);
    // A reply turned into a note (or back) while typing: the visitor stops seeing it at once.
    form.elements.note.addEventListener("change", function () {
      if (typist.active()) signal("typing");
    });
    viewing();
    setInterval(viewing, 20000);  // VIEWING_REFRESH in chat/signals.py
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) signal("left"); else viewing();
    });
    window.addEventListener("pagehide", function () { signal("left", { leaving: true }); });
    document.getElementById("canned-button").addEventListener("click", function () {
      box.value = "/";
      box.focus();
      cannedFilter();
    });
  }
  document.addEventListener("click", function (event) {
    var retry = event.target.closest("[data-action=retry]");
    if (retry) deliver(retry.closest(".entry"));
  });

  /* ---- canned responses: "/" then a shortcut ---------------------------------------- */

  var menu = document.getElementById("canned-menu");
  var choice = -1;

  function options() {
    return Array.from(menu.querySelectorAll("[role=option]")).filter(function (o) {
      return !o.hidden;
    });
  }

  function cannedFilter() {
    var match = /^\/(\S*)$/.exec(box.value);
    if (!match || !menu.children.length) { menu.hidden = true; return; }
    menu.querySelectorAll("[role=option]").forEach(function (option) {
      option.hidden = option.dataset.shortcut.indexOf(match[1]) !== 0;
    });
    menu.hidden = !options().length;
    highlight(0);
  }

  function highlight(index) {
    var list = options();
    choice = list.length ? (index + list.length) % list.length : -1;
    list.forEach(function (option, i) { option.setAttribute("aria-selected", i === choice); });
    if (choice >= 0) box.setAttribute("aria-activedescendant", list[choice].id);
  }

  function cannedKeys(event) {
    if (menu.hidden) return false;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      highlight(choice + (event.key === "ArrowDown" ? 1 : -1));
    } else if ((event.key === "Enter" || event.key === "Tab") && choice >= 0) {
      insertCanned(options()[choice]);
    } else if (event.key === "Escape") {
      menu.hidden = true;
    } else {
      return false;
    }
    event.preventDefault();
    return true;
  }

  function insertCanned(option) {
    box.value = option.dataset.body;
    menu.hidden = true;
    box.removeAttribute("aria-activedescendant");
    box.focus();
  }
  if (menu) {
    menu.addEventListener("mousedown", function (event) {
      var option = event.target.closest("[role=option]");
      if (option) { event.preventDefault(); insertCanned(option); }
    });
  }

  /* ---- connection state, errors, reloads -------------------------------------------- */

  var connection = document.getElementById("connection");
  function setConnection(text) { connection.textContent = text; }
  // Told by the tab that holds the stream, whichever it is.
  document.addEventListener("live:connected", function () { setConnection(""); });
  document.addEventListener("live:reconnecting", function () { setConnection("Reconnecting…"); });
  // Everything (signed out, deactivated), or this page's conversation, must be shown anew;
  // unless the page is already leaving (this tab's own sign-out, whose redirect must win).
  var leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });
  document.addEventListener("reload", function (event) {
    if (!leaving && ChatLive.reloads(event, openId)) location.reload();
  });

  var toast = document.getElementById("toast");
  document.addEventListener("htmx:response:error", function (event) {
    var ctx = event.detail.ctx;
    if (ctx.response.status === 409) return;  // the swapped-in state says what happened
    toast.textContent = ChatMessages.reason(ctx.text) || "Something went wrong.";
    toast.hidden = false;
    setTimeout(function () { toast.hidden = true; }, 6000);
  });

  /* ---- small things ----------------------------------------------------------------- */

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var input = document.querySelector(button.dataset.copy);
    navigator.clipboard.writeText(input.value).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    });
  });

  if (inboxKind || openId) {
    live.need({ conversation: openId, seq: body.dataset.seq, inbox: inboxKind });
  }

  /* ---- alerts: what chimes and notifies, and whether the browser lets it ------------ */

  // What the agent chose: the form's data attributes (alertsForm, at the top).
  function level() { return alertsForm ? alertsForm.dataset.alerts : "none"; }
  function soundWanted() { return !!alertsForm && alertsForm.dataset.sound === "on"; }

  function alertsFor(row) {
    var assignee = row.dataset.assignee;
    return level() === "all" || (level() === "mine" && (!assignee || assignee === me));
  }

  /* "Sound off" while the agent wants sound and the browser still holds it back (no gesture
   * yet since the page loaded), and "Turn on alerts" while sound or notifications wait for
   * the click that allows them. */
  function showAlertState() {
    if (!alertsForm) return;
    var audio = soundWanted() && level() !== "none" ? ChatMessages.prepareAudio() : null;
    var blocked = !!audio && audio.state !== "running";
    var ask = !!window.Notification && Notification.permission === "default" && level() !== "none";
    soundOff.hidden = !blocked;
    alertsOn.hidden = !blocked && !ask;
  }

  function applyAlerts(chosen) {
    alertsForm.dataset.alerts = alertsForm.elements.alerts.value = chosen.alerts;
    alertsForm.dataset.sound = chosen.sound;
    alertsForm.elements.sound.checked = chosen.sound === "on";
    showAlertState();
  }

  if (alertsForm) {
    ChatMessages.watchAudio(showAlertState);
    alertsOn.addEventListener("click", function () {
      // Both in this click: browsers allow neither without one.
      ChatMessages.unlockAudio();
      if (window.Notification && Notification.permission === "default") {
        Notification.requestPermission().then(showAlertState, showAlertState);
      }
      showAlertState();
    });
    alertsForm.addEventListener("change", function () {
      if (alertsForm.elements.sound.checked) ChatMessages.unlockAudio();  // a click: allowed
    });
    // Saved: this tab and the agent's others go by the new choice.
    alertsForm.addEventListener("htmx:after:request", function (event) {
      var response = event.detail.ctx.response;  // htmx's own: its status, not fetch's ok
      if (!response || response.status < 200 || response.status >= 300) return;
      var chosen = { alerts: alertsForm.elements.alerts.value,
                     sound: alertsForm.elements.sound.checked ? "on" : "off" };
      applyAlerts(chosen);
      live.tell("alerts", chosen);
    });
    live.on("alerts", applyAlerts);
    showAlertState();
  }

  function ago(time) {
    var minutes = Math.round((Date.now() - Date.parse(time.getAttribute("datetime"))) / 60000);
    if (minutes < 1) return "now";
    if (minutes < 60) return minutes + "m";
    if (minutes < 1440) return Math.round(minutes / 60) + "h";
    return Math.round(minutes / 1440) + "d";
  }
  function tick() {
    document.querySelectorAll("time.ago").forEach(function (t) { t.textContent = ago(t); });
  }
  tick();
  setInterval(tick, 30000);
  if (inbox) document.addEventListener("htmx:after:swap", tick);  // rows came or changed

  // j / k: next and previous conversation; r: reply. Not while typing.
  document.addEventListener("keydown", function (event) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName);
    if (typing || event.ctrlKey || event.metaKey || event.altKey || !inbox) return;
    if (event.key === "r" && box) { event.preventDefault(); box.focus(); return; }
    if (event.key !== "j" && event.key !== "k") return;
    var rows = Array.from(inbox.querySelectorAll(".conversation-row:not([hidden])"));
    var at = rows.findIndex(function (row) { return row.classList.contains("current"); });
    var next = rows[at + (event.key === "j" ? 1 : -1)] || rows[event.key === "j" ? 0 : rows.length - 1];
    if (next) next.querySelector("a").click();
  });
})();
