/* The chat widget loader: paste
 *   <script src="https://CHAT_HOST/widget.js" data-site="PUBLIC_KEY" async></script>
 * after the snippet's stub (chat/sites.py QUEUE_STUB), which queues calls until this runs.
 * It adds a launcher button and, on demand, an iframe served by the chat app. It keeps the
 * visitor's token in this page's storage and hands it to the iframe by postMessage (exact
 * target origin, checked sender), so no third-party cookie is needed. Its only global is
 * window.ChatWidget; its markup and styles live in a shadow root. It also lends the frame
 * this page's Web Locks (a third-party frame may have none), so that one of the visitor's
 * tabs holds the chat's live stream for all of them.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  // The snippet's stub (calls queued in q) is replaced; a loader that already ran is kept.
  var stub = window.ChatWidget;
  if (!script || (stub && !stub.q)) return;
  var site = script.getAttribute("data-site");
  var app = new URL(script.src).origin;
  var storeKey = "chatwidget:" + site + ":token";
  var state = { open: false, frameReady: false, token: load(), queue: [] };

  function load() {
    try { return window.localStorage.getItem(storeKey); } catch (e) { return null; }
  }
  function save(token) {
    state.token = token;
    try { window.localStorage.setItem(storeKey, token); } catch (e) { /* private mode */ }
  }

  var host = document.createElement("div");
  host.setAttribute("data-chat-widget", site);
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial}" +
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483646;width:56px;height:56px;" +
    "border:0;border-radius:50%;background:#2563eb;color:#fff;cursor:pointer;display:grid;" +
    "place-items:center;box-shadow:0 4px 14px rgba(0,0,0,.25);font:16px system-ui,sans-serif}" +
    // A dark ring on a white gap shows on any brand colour and any host page.
    ".launcher:focus-visible{outline:3px solid #111827;outline-offset:2px;" +
    "box-shadow:0 0 0 2px #fff,0 4px 14px rgba(0,0,0,.25)}" +
    ".launcher svg{width:26px;height:26px}" +
    ".badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;" +
    "box-sizing:border-box;border-radius:10px;background:#dc2626;color:#fff;font:600 12px/20px " +
    "system-ui,sans-serif;text-align:center}" +
    ".panel{position:fixed;right:20px;bottom:88px;z-index:2147483647;width:380px;" +
    "height:min(620px,calc(100vh - 110px));border-radius:14px;overflow:hidden;background:#fff;" +
    "box-shadow:0 12px 40px rgba(0,0,0,.3)}" +
    ".panel iframe{border:0;width:100%;height:100%;display:block}" +
    "[hidden]{display:none!important}" +
    "@media (max-width:480px){.panel{inset:0;width:100vw;height:100dvh;border-radius:0}" +
    ".open .launcher{display:none}}" +
    "</style>" +
    '<div class="wrap"><div class="panel" hidden></div>' +
    '<button class="launcher" type="button" aria-label="Open chat" aria-expanded="false">' +
    '<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 ' +
    "2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z\"/></svg>" +
    '<span class="badge" hidden></span></button></div>';
  var wrap = root.querySelector(".wrap");
  var panel = root.querySelector(".panel");
  var launcher = root.querySelector(".launcher");
  var badge = root.querySelector(".badge");
  var frame = null;
  var locks = {};  // the frame's locks: id -> release (or, while waiting, give up)

  function createFrame() {
    if (frame) return;
    frame = document.createElement("iframe");
    frame.title = "Chat";
    frame.allow = "autoplay";
    frame.src = app + "/widget/" + encodeURIComponent(site) + "/frame?origin=" +
      encodeURIComponent(window.location.origin);
    panel.appendChild(frame);
  }

  function post(message) {
    if (!state.frameReady) { state.queue.push(message); return; }
    frame.contentWindow.postMessage(message, app);
  }

  function open() {
    if (state.open) return;
    createFrame();
    state.open = true;
    wrap.classList.add("open");
    panel.hidden = false;
    launcher.setAttribute("aria-label", "Close chat");
    launcher.setAttribute("aria-expanded", "true");
    setUnread(0);
    frame.focus();
    post({ type: "open" });
  }

  function close() {
    if (!state.open) return;
    state.open = false;
    wrap.classList.remove("open");
    panel.hidden = true;
    launcher.setAttribute("aria-label", "Open chat");
    launcher.setAttribute("aria-expanded", "false");
    post({ type: "close" });
    launcher.focus();
  }

  function setUnread(count) {
    badge.hidden = !count;
    badge.textContent = count > 99 ? "99+" : String(count);
    if (count) launcher.setAttribute("aria-description", count + " unread");
    else launcher.removeAttribute("aria-description");
  }

  launcher.addEventListener("click", function () { state.open ? close() : open(); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && state.open) close();
  });

  window.addEventListener("message", function (event) {
    if (!frame || event.origin !== app || event.source !== frame.contentWindow) return;
    var message = event.data || {};
    switch (message.type) {
      case "ready":
        state.frameReady = true;
        paint(message);
        frame.contentWindow.postMessage({ type: "init", token: state.token, open: state.open,
          page: window.location.href, identity: state.identity || null,
          locks: !!navigator.locks }, app);
        state.queue.splice(0).forEach(post);
        break;
      case "token":
        if (typeof message.token === "string") save(message.token);
        break;
      case "unread":
        if (!state.open) setUnread(message.count | 0);
        break;
      case "close":
        close();
        break;
      case "sound":
        if (!message.played) chime();
        window.dispatchEvent(new CustomEvent("chatwidget:sound"));
        break;
      case "lock":
        lock(message);
        break;
      case "unlock":
        if (locks[message.id]) locks[message.id]();
        delete locks[message.id];
        break;
    }
  });

  function lock(message) {
    var id = message.id;
    var wait = new AbortController();
    var options = message.ifAvailable ? { ifAvailable: true } : { signal: wait.signal };
    if (!navigator.locks || typeof message.name !== "string") return;
    if (!message.ifAvailable) locks[id] = function () { wait.abort(); };
    navigator.locks.request("chatwidget:" + message.name, options, function (held) {
      post({ type: "locked", id: id, granted: !!held });
      if (held) return new Promise(function (resolve) { locks[id] = resolve; });
    }).catch(function () { /* given up while waiting */ });
  }

  // The frame has sound only after a gesture in it, which a returning visitor's frame (after
  // a reload) never had; this page's first click or key lets the chime play from here.
  var audio = null;
  ["pointerdown", "keydown"].forEach(function (type) {
    document.addEventListener(type, function () {
      if (!audio && window.AudioContext) audio = new AudioContext();
      if (audio) audio.resume();
    }, { once: true, capture: true });
  });

  function chime() {  // as static/messages.js does
    if (!audio || audio.state !== "running") return;
    [880, 660].forEach(function (pitch, i) {
      var start = audio.currentTime + i * 0.12, tone = audio.createOscillator(),
        gain = audio.createGain();
      tone.frequency.value = pitch;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.15, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.18);
      tone.connect(gain).connect(audio.destination);
      tone.start(start);
      tone.stop(start + 0.2);
    });
  }

  // The brand colour, from the frame's "ready" or, before any frame exists, from /look.
  function paint(look) {
    if (/^#[0-9a-f]{6}$/i.test(look.color)) launcher.style.background = look.color;
    if (/^#[0-9a-f]{6}$/i.test(look.ink)) launcher.style.color = look.ink;
  }

  function fetchLook() {
    if (!window.fetch) return;
    fetch(app + "/widget/" + encodeURIComponent(site) + "/look", { credentials: "omit" })
      .then(function (response) { return response.ok ? response.json() : {}; })
      .then(function (look) { if (!state.frameReady) paint(look || {}); })
      .catch(function () { /* the default colour stays */ });
  }

  function start() {
    document.body.appendChild(host);
    // The closed launcher shows the site's colour from the start, not only once the frame is up.
    fetchLook();
    // A returning visitor's frame loads at once, so replies arrive (badge, sound) while closed.
    if (state.token) createFrame();
    replay(stub && stub.q);
  }

  // Calls the page made through the snippet's stub before this script ran, in order.
  function replay(calls) {
    (calls || []).forEach(function (call) {
      var method = window.ChatWidget[call[0]];
      if (typeof method === "function") method.apply(null, call[1]);
    });
  }

  window.ChatWidget = {
    open: open,
    close: close,
    toggle: function () { state.open ? close() : open(); },
    identify: function (identity) {
      identity = identity || {};
      state.identity = { name: identity.name, email: identity.email, hash: identity.hash };
      post({ type: "identify", identity: state.identity });
    }
  };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
