/* The widget iframe's glue: talks to the loader on the host page, sends messages with an
 * optimistic bubble, and reacts to entries that the live stream inserts (dedupe, scroll,
 * unread count, sound, announcements). One tab of the visitor's holds the stream for all
 * their tabs (static/live.js), and the tabs keep unread counts and sounds in step: a reply
 * read in one tab is read in all, and it chimes once, not once per tab. No build step, no
 * dependencies beyond htmx.
 */
(function () {
  "use strict";
  var body = document.body;
  var site = body.dataset.site;
  var hostOrigin = body.dataset.origin;
  var base = "/widget/" + encodeURIComponent(site);
  var chat = document.getElementById("chat");
  var form = document.getElementById("composer");
  var box = document.getElementById("message");
  var errorLine = document.getElementById("composer-error");
  var pill = document.getElementById("new-messages");
  var muteButton = document.getElementById("mute");
  var pastLink = document.getElementById("past-link");
  var connection = document.getElementById("connection");
  var endButton = document.getElementById("end-chat");
  var endConfirm = document.getElementById("end-confirm");
  var state = {
    token: null, open: false, page: null, unread: 0, conversation: null, status: null,
    muted: readMuted(), identity: null, seen: new Set(), readSeq: {}
  };
  window.chatFrame = { sounds: 0, state: state };  // a hook for tests and embedders
  var live = null;  // the visitor's share of the stream, once they have a conversation

  function toHost(message) {
    if (window.parent !== window) window.parent.postMessage(message, hostOrigin);
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== hostOrigin || event.source !== window.parent) return;
    var message = event.data || {};
    if (message.type === "init") {
      // The host's tabs elect among themselves (this frame's own locks may be refused).
      if (window.parent !== window) ChatLive.setLocks(message.locks ? hostLocks : navigator.locks);
      state.token = typeof message.token === "string" ? message.token : null;
      state.page = message.page || null;
      state.open = !!message.open;
      applyIdentity(message.identity);
      tellIdentity(message.identity);
      load(null);
    } else if (message.type === "open") {
      state.open = true;
      read();
      box.focus();
      scrollToEnd();  // laid out only now if the frame loaded while closed
    } else if (message.type === "close") {
      state.open = false;
      askToEnd(false);
    } else if (message.type === "identify") {
      applyIdentity(message.identity);
      tellIdentity(message.identity);
    } else if (message.type === "locked" && lockCalls[message.id]) {
      lockCalls[message.id](message.granted);
    }
  });

  /* The host page's Web Locks, lent by the loader, in the shape of navigator.locks: this
   * third-party frame may be denied its own, and the host's tabs are the ones to elect among. */
  var lockCalls = {}, lockCount = 0;
  var hostLocks = {
    request: function (name, options, callback) {
      var id = ++lockCount;
      return new Promise(function (resolve, reject) {
        lockCalls[id] = function (granted) {
          delete lockCalls[id];
          Promise.resolve(callback(granted ? { name: name } : null)).then(function (value) {
            if (granted) toHost({ type: "unlock", id: id });
            resolve(value);
          }, reject);
        };
        if (options.signal) {
          options.signal.addEventListener("abort", function () {
            if (!lockCalls[id]) return;  // granted already: the callback's promise releases it
            delete lockCalls[id];
            toHost({ type: "unlock", id: id });
            reject(new DOMException("Gave up waiting for the lock", "AbortError"));
          });
        }
        toHost({ type: "lock", id: id, name: name, ifAvailable: !!options.ifAvailable });
      });
    }
  };

  function applyIdentity(identity) {
    state.identity = identity || state.identity;
    if (!state.identity) return;
    ["name", "email"].forEach(function (field) {
      var input = form.elements[field];
      if (input && state.identity[field] && !input.value) input.value = state.identity[field];
    });
  }

  /* A visitor who already chats gets the identity now, so agents see who they are in the
   * conversation under way; a new one sends it with their first message instead. */
  function tellIdentity(identity) {
    if (!identity || !state.token || !(identity.name || identity.email)) return;
    var data = new FormData();
    ["name", "email"].forEach(function (field) {
      if (identity[field]) data.append(field, String(identity[field]));
    });
    if (identity.hash) data.append("identity_hash", String(identity.hash));
    request("POST", "/identity", data).catch(function () { /* the next page load repeats it */ });
  }

  /* ---- views ---------------------------------------------------------------------- */

  function request(method, path, data) {
    var headers = { "HX-Request": "true" };
    if (state.token) headers["X-Visitor-Token"] = state.token;
    var options = { method: method, headers: headers, credentials: "omit" };
    if (data) options.body = data;
    return fetch(base + path, options);
  }

  function show(html) {
    var typed = typedContact();
    chat.innerHTML = html;
    ChatMessages.localTimes(chat);
    restoreContact(typed);
    chat.querySelectorAll(".entry[id]").forEach(function (e) { state.seen.add(e.id); });
    htmx.process(chat);
    var view = chat.querySelector("[data-view]");
    state.conversation = view && view.dataset.conversation ? view.dataset.conversation : null;
    var status = chat.querySelector(".conversation-status");
    setStatus(status ? status.dataset.status : null);
    applyIdentity(null);
    reportPage();
    pastLink.hidden = !state.token;
    showConnection();
    scrollToEnd();  // a conversation opens at its latest message
    follow(view);
    if (watching()) read();
  }

  /* What the visitor typed in the pre-chat fields, and which one has focus: the page's own
   * welcome is usable before the fetched view replaces it, and the replacement must neither
   * wipe their name and email nor drop the caret out of the field they are in. */
  function typedContact() {
    var typed = { values: {}, focused: null };
    ["name", "email"].forEach(function (field) {
      var input = form.elements[field];
      if (!input) return;
      if (input.value) typed.values[field] = input.value;
      if (document.activeElement === input) typed.focused = field;
    });
    return typed;
  }

  function restoreContact(typed) {
    Object.keys(typed.values).forEach(function (field) {
      var input = form.elements[field];
      if (input && !input.value) input.value = typed.values[field];
    });
    var focused = typed.focused && form.elements[typed.focused];
    if (focused) focused.focus();
  }

  /* Tell the agent which page the visitor is on: once per page load and conversation (the
   * server, not a timer here, keeps them "online" while the stream is open). */
  var reportedPage = null;
  function reportPage() {
    if (!state.conversation || !state.page || reportedPage === state.conversation) return;
    reportedPage = state.conversation;
    var data = new FormData();
    data.append("page", state.page);
    request("POST", "/conversations/" + state.conversation + "/page", data)
      .catch(function () {});  // the panel keeps the page it had
  }

  /* Keep the conversation on view live; a view without one needs nothing. */
  function follow(view) {
    var conversation = view && view.dataset.conversation;
    if (!conversation || !state.token) {
      if (live) live.need(null);
      return;
    }
    if (!live || live.token !== state.token) {  // the tabs of one visitor share a stream
      if (live) live.stop();
      live = join(state.token);
    }
    live.need({ conversation: conversation, seq: view.dataset.seq });
  }

  function join(token) {
    var joined = ChatLive.connect({
      name: "visitor:" + site + ":" + hostOrigin + ":" + token,  // as the host's locks are
      url: function (watch) { return base + "/stream?watch=" + watch; },
      headers: function () { return { "X-Visitor-Token": token }; },
      credentials: "omit"
    });
    joined.token = token;
    joined.on("read", function (data) {  // read in another tab
      saw(data.conversation, data.seq || 0);
      if (data.conversation === state.conversation) setUnread(0);
    });
    return joined;
  }

  function load(id) {
    var path = "/conversation" + (id ? "?id=" + encodeURIComponent(id) : "");
    return request("GET", path).then(function (response) {
      if (response.status === 401) { state.token = null; return load(null); }
      return response.text().then(show);
    }).catch(function () { showError("Can't reach the chat right now. Retrying…"); });
  }

  function startNew() {
    // The welcome view, without the stream of the closed conversation.
    return request("GET", "/conversation?new=1").then(function (r) { return r.text(); })
      .then(show).then(function () { box.focus(); });
  }

  function setStatus(status) {
    state.status = status;
    var closed = status === "closed";
    box.disabled = closed;
    form.querySelector(".send").disabled = closed;
    box.placeholder = closed ? "This conversation is closed" : "Write a message…";
    // Only an open conversation can be ended (closed by an agent meanwhile: nothing to ask).
    endButton.hidden = closed || !state.conversation;
    if (endButton.hidden) askToEnd(false);
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-action]");
    if (!target) return;
    var action = target.dataset.action;
    if (action === "new") startNew();
    else if (action === "older") loadOlder(target);
    else if (action === "open") load(target.dataset.id);
    else if (action === "retry") deliver(target.closest(".entry"));
  });
  pastLink.addEventListener("click", function () {
    request("GET", "/conversations").then(function (r) { return r.text(); }).then(show);
  });
  document.getElementById("minimize").addEventListener("click", function () {
    toHost({ type: "close" });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    if (!endConfirm.hidden) { askToEnd(false); endButton.focus(); return; }  // Escape: not now
    toHost({ type: "close" });
  });

  function loadOlder(button) {
    var path = "/conversations/" + state.conversation + "/older?before=" + button.dataset.before;
    button.disabled = true;
    request("GET", path).then(function (r) { return r.text(); }).then(function (html) {
      // Old entries are history, not news: no sound, no unread count.
      ChatMessages.prependOlder(button, html, chat.querySelector(".entries"), main())
        .forEach(function (id) { state.seen.add(id); });
    });
  }

  /* ---- sending ---------------------------------------------------------------------- */

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    send();
  });
  box.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  box.addEventListener("input", function () {
    box.style.height = "auto";
    box.style.height = Math.min(box.scrollHeight, 140) + "px";
    if (!errorLine.hidden && box.value.trim()) errorLine.hidden = true;
  });

  var typist = ChatMessages.typing(box, function (kind, options) {
    if (!state.token || !state.conversation || state.status === "closed") return;
    var data = new FormData();
    data.append("typing", kind === "typing" ? "1" : "0");
    if (options && options.refresh) data.append("refresh", "1");
    request("POST", "/conversations/" + state.conversation + "/typing", data)
      .catch(function () {});  // a lost signal costs nothing: the next one repeats it
  });

  function send() {
    var text = box.value.trim();
    if (!text) return showError("Type a message first.");
    if (text.length > 5000) return showError("A message can be at most 5,000 characters.");
    for (var field of ["name", "email"]) {
      var input = form.elements[field];
      if (input && !input.checkValidity()) { input.focus(); return showError(messageFor(input)); }
    }
    errorLine.hidden = true;
    var bubble = ChatMessages.pending(chat.querySelector(".entries"), text, "visitor");
    scrollToEnd();
    box.value = "";
    box.style.height = "";
    typist.sent();
    deliver(bubble);
  }

  function messageFor(input) {
    if (input.validity.valueMissing) {
      return input.name === "email" ? "Please leave your email so that we can answer."
                                    : "Please tell us your name.";
    }
    return "That email address doesn't look right.";
  }

  /* Send ``bubble`` (again); resolves once the server answered or the request failed. */
  function deliver(bubble) {
    var data = new FormData();
    data.append("body", bubble.dataset.text);
    data.append("client_id", bubble.dataset.pending);
    var starting = !state.conversation || state.status === "closed";
    if (starting) {
      var identity = state.identity || {};
      ["name", "email"].forEach(function (field) {
        var input = form.elements[field];
        var value = input ? input.value.trim() : String(identity[field] || "");
        if (value) data.append(field, value);
      });
      // The site's signature holds only for the email it signed, not one typed over it.
      var email = data.get("email");
      if (identity.hash && email && email.toLowerCase() === String(identity.email).toLowerCase()) {
        data.append("identity_hash", identity.hash);
      }
      if (state.page) data.append("page", state.page);
    }
    var path = starting ? "/conversations" : "/conversations/" + state.conversation + "/messages";
    ChatMessages.sending(bubble);
    return request("POST", path, data).then(function (response) {
      return response.text().then(function (html) {
        if (!response.ok) {
          notSent(bubble, response, html);
          if (response.status === 409) load(state.conversation);  // it was closed meanwhile
          return;
        }
        var token = response.headers.get("X-Visitor-Token");
        if (token) { state.token = token; toHost({ type: "token", token: token }); }
        if (starting) show(html);
        else landed([ChatMessages.settle(bubble, html)].filter(Boolean));
      });
    }).catch(function () { notSent(bubble, null, ""); });
  }

  /* The bubble says why it was not sent, which may take it a line more: a reader at the end
   * stays there. */
  function notSent(bubble, response, html) {
    ChatMessages.fail(bubble, response, html);
    follower.grew(false);
  }

  /* The connection is back (the stream reconnected, or the browser is online again): what
   * could not be sent goes again by itself, with the client id it had, so that nothing is
   * stored twice; one at a time, oldest first, so that it is stored in the order it was
   * written. Retry stays, for those who would rather not wait. */
  var resending = Promise.resolve();
  function resendFailed() {
    resending = resending.then(function () {
      return ChatMessages.failed(chat).reduce(function (previous, bubble) {
        return previous.then(function () { return resend(bubble); });
      }, Promise.resolve());
    });
  }

  function resend(bubble) {
    return ChatMessages.retryable(bubble).then(function () {
      // Sent meanwhile (Retry), or gone with the view (the conversation was closed).
      if (bubble.isConnected && bubble.classList.contains("failed")) return deliver(bubble);
      return null;
    });
  }
  window.addEventListener("online", resendFailed);

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = false;
  }

  /* ---- what the stream brings ------------------------------------------------------- */

  function main() { return chat; }

  var follower = ChatMessages.follow(main(), pill);
  // Only ever asked for by the visitor (opening, sending): news follows the follower's rule.
  function scrollToEnd() { follower.toEnd(); }

  main().addEventListener("scroll", function () {
    var older = chat.querySelector("[data-action=older]:not(:disabled)");
    if (older && main().scrollTop < 40) loadOlder(older);  // reached the top: fetch earlier
  });

  // What the stream brings comes by swap (static/live.js hands every tab its frames through
  // htmx): entries, the status, the typing line, receipts. A view the widget fetched itself
  // (show) and older history come without one, and are no news.
  chat.addEventListener("htmx:after:settle", function (event) {
    landed(event.detail.newContent);
  });

  /* Content was put in the view: entries not seen yet are news (a replaced copy is not),
   * a status is the conversation's now; a typing line that comes and goes keeps the view at
   * the end, but is no news. */
  function landed(nodes) {
    var news = false;
    nodes.forEach(function (node) {
      if (node.nodeType !== 1) return;
      if (node.classList.contains("conversation-status")) setStatus(node.dataset.status);
      if (!node.classList.contains("entry")) return;
      ChatMessages.arrived(node);
      if (!state.seen.has(node.id)) news = true;
      if (node.classList.contains("agent")) arrived(node);
      state.seen.add(node.id);
    });
    follower.grew(news);
  }

  function arrived(entry) {
    if (state.seen.has(entry.id)) return;  // a re-rendered view, or a replaced copy
    state.seen.add(entry.id);
    var author = entry.querySelector(".author");
    var text = entry.querySelector(".body");
    ChatMessages.announce((author ? author.textContent + ": " : "") +
                          (text ? text.textContent : ""));
    if (watching()) {
      read();
      ChatLive.once(entry.id, function () {});  // seen here: no other tab chimes for it
    } else {
      setUnread(state.unread + 1);
      chime(entry.id);
    }
  }

  function watching() { return state.open && !document.hidden; }

  /* The visitor has the conversation in front of them: nothing is unread, in any tab. */
  function read() {
    setUnread(0);
    if (!state.conversation) return;
    var seq = ChatMessages.newestSeq(chat.querySelector(".entries"));
    if (live) live.tell("read", { conversation: state.conversation, seq: seq });
    if (!saw(state.conversation, seq)) return;
    var data = new FormData();
    data.append("seq", seq);
    // The agents' read receipts; a lost one is made good by the next read.
    request("POST", "/conversations/" + state.conversation + "/read", data)
      .catch(function () {});
  }

  /* Whether ``seq`` is further than the visitor had read of ``conversation``. */
  function saw(conversation, seq) {
    if (seq <= (state.readSeq[conversation] || 0)) return false;
    state.readSeq[conversation] = seq;
    return true;
  }

  /* A stream's receipts say how far the visitor had read when it (re)connected
   * (chat/receipts.py), this browser's tabs how far since: what a returning visitor has
   * not yet seen counts as unread while the chat is closed. */
  document.addEventListener("htmx:after:swap", function () {
    var cursors = state.conversation && document.getElementById("receipts-" + state.conversation);
    if (!cursors || !cursors.dataset.seen || watching()) return;
    saw(state.conversation, +cursors.dataset.seen);
    var upTo = state.readSeq[state.conversation];
    var unseen = Array.from(chat.querySelectorAll(".entry.agent[data-seq]")).filter(
      function (entry) { return +entry.dataset.seq > upTo; }).length;
    if (unseen > state.unread) setUnread(unseen);
  });
  document.addEventListener("visibilitychange", function () { if (watching()) read(); });

  function setUnread(count) {
    state.unread = count;
    toHost({ type: "unread", count: count });
  }

  /* ---- sound ------------------------------------------------------------------------ */

  function readMuted() {
    try { return localStorage.getItem("chatwidget:muted") === "1"; } catch (e) { return false; }
  }
  function showMuted() { muteButton.setAttribute("aria-pressed", String(state.muted)); }
  showMuted();
  muteButton.addEventListener("click", function () {
    state.muted = !state.muted;
    showMuted();
    try { localStorage.setItem("chatwidget:muted", state.muted ? "1" : "0"); } catch (e) {}
  });
  window.addEventListener("storage", function (event) {  // muted in another tab
    if (event.key === "chatwidget:muted") { state.muted = readMuted(); showMuted(); }
  });

  /* Once per browser for ``key``, preferably by a tab that can play sound (one the visitor
   * has interacted with). */
  function chime(key) {
    if (state.muted) return;
    ChatLive.once(key, function () {
      window.chatFrame.sounds += 1;
      // A frame the visitor never touched (a returning visitor, after a reload) cannot play
      // sound: the host page, which usually had a click or a key, plays it instead.
      toHost({ type: "sound", played: ChatMessages.canChime() });
      ChatMessages.chime();
    }, ChatMessages.canChime() ? 100 : 300);
  }

  /* ---- the connection --------------------------------------------------------------- */

  // Told by the tab that holds the stream, whichever it is (static/live.js), so every tab
  // shows it; only a conversation's view has a stream that can be down.
  var reconnecting = false;
  function showConnection() {
    var text = reconnecting && state.conversation ? "Reconnecting…" : "";
    if (connection.textContent !== text) connection.textContent = text;
  }
  document.addEventListener("live:reconnecting", function () {
    reconnecting = true;
    showConnection();
  });
  document.addEventListener("live:connected", function () {
    reconnecting = false;
    showConnection();
    resendFailed();
  });

  /* ---- ending the chat -------------------------------------------------------------- */

  /* End chat asks first, inside the widget: show or hide the question. */
  function askToEnd(asking) {
    endConfirm.hidden = !asking;
    endButton.setAttribute("aria-expanded", String(asking));
  }
  endButton.addEventListener("click", function () {
    askToEnd(endConfirm.hidden);
    // The safe answer has focus: an Enter too many keeps the chat going.
    if (!endConfirm.hidden) document.getElementById("end-cancel").focus();
  });
  document.getElementById("end-cancel").addEventListener("click", function () {
    askToEnd(false);
    endButton.focus();
  });
  document.getElementById("end-yes").addEventListener("click", function (event) {
    endChat(event.currentTarget);
  });

  /* Close the conversation for both sides; the answer is the closed view (its offer of a
   * new conversation), shown at once even while the stream is down. */
  function endChat(button) {
    button.disabled = true;
    request("POST", "/conversations/" + state.conversation + "/close").then(function (response) {
      return response.text().then(function (html) {
        if (!response.ok) {  // a limit, an outage
          showError(ChatMessages.reason(html) || "Couldn't end the chat. Please try again.");
          return;
        }
        askToEnd(false);
        show(html);
        var again = chat.querySelector("[data-action=new]");
        if (again) again.focus();  // the button that had focus is gone with the open chat
      });
    }).catch(function () {
      showError("Can't reach the chat right now. Please try again.");
    }).finally(function () { button.disabled = false; });
  }

  // The stream cannot serve this conversation (or anything): show it anew from the server.
  document.body.addEventListener("reload", function (event) {
    if (ChatLive.reloads(event, state.conversation)) load(state.conversation);
  });

  toHost({ type: "ready", color: body.dataset.color, ink: body.dataset.ink });
})();
