/* One live stream per browser and audience, however many tabs are open.
 *
 * Browsers allow six HTTP/1.1 connections per host, shared by every tab, and a stream holds
 * one for its whole life: with a stream per tab, a seventh tab could not reach the chat at
 * all. So the tabs of one audience elect a leader with the Web Locks API; the leader alone
 * opens the stream (fetch, parsing SSE itself) and hands every message to the other tabs
 * over a BroadcastChannel. Every tab, the leader too, applies a message the same way:
 * unnamed ones are swapped into its page by htmx (<hx-partial>/<hx-upsert>), named ones
 * become DOM events on <body> (reload, ping, hello), as htmx's SSE extension did.
 *
 * The stream carries every tab's conversation (?watch=C-S,...), so each tab tells the others
 * what it needs: its conversation, the sequence its page was rendered at, and its inbox.
 * Every tab tracks how far the stream has got in each conversation (the `id: C-S` lines), so
 * a new leader resumes exactly where the old one stopped: nothing lost, nothing sent twice.
 * A tab that closes releases the lock and a waiting tab takes over at once. Without Web Locks
 * or BroadcastChannel each tab streams alone.
 *
 * The widget's frame is a third-party document, which browsers may deny Web Locks (as they
 * deny it storage); it borrows the host page's through the loader instead (setLocks).
 */
window.ChatLive = (function () {
  "use strict";

  var HEARTBEAT_MS = 30000;     // tabs re-announce what they need this often...
  var STALE_MS = 180000;        // ...and one not heard of for this long is gone (throttled timers)
  var DEBOUNCE_MS = 100;        // tabs opening together cost one reconnect
  var SILENCE_MS = 45000;       // three missed heartbeats: the connection is dead
  var MAX_DELAY_MS = 10000;
  var MAX_WATCHED = 50;         // as the server allows
  var locks = null, shared = false;
  setLocks(navigator.locks);

  /* The Web Locks to elect with (navigator.locks' request() is all it needs), or none. */
  function setLocks(replacement) {
    locks = replacement || null;
    shared = !!(window.BroadcastChannel && locks);
  }

  /* Run ``fn`` in one tab of this browser only, for ``key`` (a sound for one message). */
  function once(key, fn, delay) {
    if (!shared) { fn(); return; }
    var ran = false;
    setTimeout(function () {
      locks.request("chat-once:" + key, { ifAvailable: true }, function (lock) {
        if (!lock) return;
        ran = true;
        fn();
        // Held a while, so that tabs that see the same message later find it taken.
        return new Promise(function (resolve) { setTimeout(resolve, 60000); });
      }).catch(function () { if (!ran) fn(); });  // locks refused: as if alone
    }, delay || 0);
  }

  /* Join the tabs of ``options.name``: url(watch, inbox) builds the stream's URL, headers()
   * its headers, credentials is fetch's. */
  function connect(options) {
    var me = Math.random().toString(36).slice(2) + Date.now().toString(36);
    var sharing = shared;
    var channel = sharing ? new BroadcastChannel("chat-live:" + options.name) : null;
    var needs = {};       // tab -> {need: {conversation, seq, inbox}, at}
    var positions = {};   // conversation -> sequence the stream has delivered up to
    var pending = {};     // conversation -> lowest sequence a tab joined with, not yet streamed
    var handlers = {};    // app message type -> [fn]
    var applying = Promise.resolve();
    var mine = null, joined = false, leader = false, stopped = false, state = "";
    var release = null, lockRequest = null, heartbeat = null;
    var controller = null, restarting = false, regrowTimer = null, wakeUp = null;
    var aim = null;  // what the leader streams, or is connecting or waiting to: {watch, inbox}

    function post(message) { if (channel) channel.postMessage(message); }

    /* ---- what every tab does -------------------------------------------------------- */

    function receive(message) {
      if (message.hasId && message.id) advance(message.id);
      if (message.event === "reload") forget(message.data);
      applying = applying.then(function () { return apply(message); }).catch(function (error) {
        console.error("chat: applying a live message failed", error);
      });
    }

    function apply(message) {
      if (message.event) {
        htmx.trigger(document.body, message.event, { data: message.data, id: message.id });
        return null;
      }
      // Everything the stream sends is out of band (partials and upserts), so nothing is
      // swapped into the body itself.
      return htmx.swap({ text: message.data, sourceElement: document.body,
                         swap: "none swapEmpty:false" });
    }

    function advance(id) {
      var match = /^(\d+)-(\d+)$/.exec(id);
      if (!match) return;
      positions[match[1]] = Math.max(positions[match[1]] || 0, +match[2]);
    }

    /* A reload naming conversations: their tabs reload and tell again what they need. */
    function forget(data) {
      (data ? data.split(",") : Object.keys(positions)).forEach(function (conversation) {
        delete positions[conversation];
        delete pending[conversation];
        Object.keys(needs).forEach(function (tab) {
          if (String(needs[tab].need.conversation) === conversation) delete needs[tab];
        });
      });
    }

    /* A tab's need, heard (or this tab's own). ``join``: its page was just rendered, at
     * ``need.seq``: anything later it may have missed. */
    function note(tab, need, join) {
      needs[tab] = { need: need, at: Date.now() };
      var c = need.conversation;
      // Behind the stream (or not on it yet): the entries in between must be sent again.
      var behind = join && c && !(positions[c] <= need.seq);
      if (behind && !(pending[c] <= need.seq)) pending[c] = need.seq;
      if (!leader) return;
      // A dashboard page also needs the inbox as it is now, which only a new stream renders.
      if (!covers(need) || behind || (join && need.inbox)) regrow();
      else shrunk();
    }

    function covers(need) {
      if (!aim) return !need.conversation && !need.inbox;
      var rows = !need.inbox || aim.inbox === "closed" || aim.inbox === need.inbox;
      var c = need.conversation;
      var full = Object.keys(aim.watch).length >= MAX_WATCHED;
      return rows && (!c || c in aim.watch || full);
    }

    /* Nothing is live any more: let go of the stream (checked lazily, as tabs tell). */
    function shrunk() {
      if (leader && controller && !wanted()) regrow();
    }

    function setState(next) {
      if (next === state) return;
      state = next;
      document.dispatchEvent(new CustomEvent("live:" + next));
    }

    if (channel) {
      channel.onmessage = function (event) {
        var message = event.data || {};
        switch (message.t) {
          case "msg":
            receive(message.m);
            break;
          case "need":
            if (!(message.tab in needs) && mine) remind(false);  // so the newcomer knows us
            note(message.tab, message.need, message.join);
            if (leader && message.join) {
              post({ t: "sync", positions: positions, pending: pending, state: state });
            }
            break;
          case "bye":
            delete needs[message.tab];
            shrunk();
            break;
          case "leader":
            if (mine) remind(false);
            break;
          case "open":  // the leader (re)connected from these positions
            positions = message.watch;
            covered(message.watch);
            break;
          case "sync":  // how far the stream is: what a newcomer could not know
            Object.keys(message.positions).forEach(function (c) {
              positions[c] = Math.max(positions[c] || 0, message.positions[c]);
            });
            pending = message.pending;
            if (message.state) setState(message.state);
            break;
          case "state":
            setState(message.state);
            break;
          case "app":
            (handlers[message.type] || []).forEach(function (fn) { fn(message.data); });
            break;
        }
      };
    }

    function covered(watch) {
      Object.keys(watch).forEach(function (c) {
        if (pending[c] >= watch[c]) delete pending[c];
      });
    }

    function announce(join, need) {
      note(me, need, join);
      post({ t: "need", tab: me, need: need, join: join });
    }

    /* Tell again what this tab needs, from where it is now (what it has received). */
    function remind(join) {
      var c = mine.conversation;
      announce(join, c && positions[c] > mine.seq
        ? { conversation: c, seq: positions[c], inbox: mine.inbox } : mine);
    }

    /* ---- the leader ------------------------------------------------------------------ */

    function elect() {
      if (!sharing) { lead(); return; }
      var abort = new AbortController();
      lockRequest = abort;
      locks.request("chat-live:" + options.name, { signal: abort.signal }, function () {
        if (stopped) return null;
        lead();
        post({ t: "leader", tab: me });
        return new Promise(function (resolve) { release = resolve; });
      }).catch(function (error) {
        if (stopped || error.name === "AbortError") return;  // stopped while waiting
        // Locks refused (a third-party frame may be denied them): this tab streams alone.
        sharing = false;
        channel.close();
        channel = null;
        lead();
      });
    }

    function lead() {
      leader = true;
      run().catch(function (error) { console.error("chat: the live stream stopped", error); });
    }

    function wanted() {
      var now = Date.now(), watch = {}, inbox = null, count = 0;
      var tabs = Object.keys(needs).sort(function (a, b) { return needs[b].at - needs[a].at; });
      tabs.forEach(function (tab) {
        if (tab !== me && now - needs[tab].at > STALE_MS) { delete needs[tab]; return; }
        var need = needs[tab].need;
        if (need.inbox === "closed" || (need.inbox && !inbox)) inbox = need.inbox;  // closed: all
        var c = need.conversation;
        if (!c || (c in watch) || count >= MAX_WATCHED) {
          if (c in watch) watch[c] = Math.min(watch[c], start(c, need.seq));
          return;
        }
        watch[c] = start(c, need.seq);
        count += 1;
      });
      if (!count && !inbox) return null;
      var list = Object.keys(watch).map(function (c) { return c + "-" + watch[c]; }).join(",");
      return { url: options.url(list, inbox), watch: watch, inbox: inbox };
    }

    function start(conversation, seq) {
      var from = conversation in positions ? positions[conversation] : seq;
      return conversation in pending ? Math.min(from, pending[conversation]) : from;
    }

    function regrow() {
      clearTimeout(regrowTimer);
      regrowTimer = setTimeout(function () {
        restarting = true;
        if (controller) controller.abort();
        if (wakeUp) wakeUp();
      }, DEBOUNCE_MS);
    }

    function nap(ms) {
      return new Promise(function (resolve) {
        wakeUp = resolve;
        if (ms != null) setTimeout(resolve, ms);
      }).then(function () { wakeUp = null; });
    }

    async function run() {
      var attempt = 0, retry = 1000;
      while (leader && !stopped) {
        var target = aim = wanted();
        restarting = false;
        if (!target) { await nap(null); continue; }  // nothing is live: hold nothing
        var result = await stream(target, function (ms) { retry = ms; });
        if (stopped || restarting) continue;
        attempt = result.connected ? 0 : attempt + 1;
        setState("reconnecting");
        post({ t: "state", state: "reconnecting" });
        var delay = Math.min(retry * Math.pow(2, attempt), MAX_DELAY_MS);
        await nap(delay * (0.7 + Math.random() * 0.6));  // jitter: not every browser at once
      }
    }

    /* One stream: resolves when it ends, whichever way. */
    async function stream(target, setRetry) {
      controller = new AbortController();
      var abort = controller;
      var silence = null;
      function alive() {
        clearTimeout(silence);
        silence = setTimeout(function () { abort.abort(); }, SILENCE_MS);
      }
      alive();
      var opened = false;
      try {
        var headers = Object.assign({ Accept: "text/event-stream" }, options.headers());
        var response = await fetch(target.url, { headers: headers, cache: "no-store",
          credentials: options.credentials, signal: abort.signal });
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok || type.indexOf("text/event-stream") !== 0) {
          response.body.cancel().catch(function () {});
          return { connected: false };
        }
        opened = true;
        positions = Object.assign({}, target.watch);
        covered(target.watch);
        post({ t: "open", watch: target.watch });
        setState("connected");
        post({ t: "state", state: "connected" });
        await read(response.body, function (message) {
          alive();
          if (message.retry != null) setRetry(message.retry);
          if (!message.hasData && !message.event) return;
          post({ t: "msg", m: message });  // others first: this tab's own work may take a while
          receive(message);
        });
      } catch (error) {
        // Aborted (by this tab, or for silence) or cut: the loop decides what comes next.
      } finally {
        clearTimeout(silence);
        abort.abort();
        if (controller === abort) controller = null;
      }
      return { connected: opened };
    }

    /* ---- joining and leaving --------------------------------------------------------- */

    /* What this tab needs now: {conversation, seq, inbox}; null for nothing. */
    function need(what) {
      var next = what && (what.conversation || what.inbox) ? {
        conversation: what.conversation ? String(what.conversation) : null,
        seq: +what.seq || 0, inbox: what.inbox || null
      } : { conversation: null, seq: 0, inbox: null };
      mine = next;
      announce(true, mine);  // from where the page was rendered: it may have missed later ones
      if (!joined && (next.conversation || next.inbox)) {
        joined = true;  // a tab that never needs anything never holds or awaits the stream
        heartbeat = setInterval(function () { remind(false); }, HEARTBEAT_MS);
        elect();
      }
    }

    function stop() {
      if (stopped) return;
      stopped = true;
      leader = false;
      clearInterval(heartbeat);
      clearTimeout(regrowTimer);
      if (controller) controller.abort();
      if (wakeUp) wakeUp();
      if (lockRequest) lockRequest.abort();
      if (release) release();
      post({ t: "bye", tab: me });
      if (channel) channel.close();
    }

    window.addEventListener("pagehide", stop);
    window.addEventListener("pageshow", function (event) {
      // Back from the back/forward cache, out of date and without its stream: load it anew.
      if (event.persisted && joined) location.reload();
    });
    // A frozen tab may have been forgotten meanwhile: it joins again from where it is.
    document.addEventListener("resume", function () { if (mine && !stopped) remind(true); });

    return {
      need: need,
      stop: stop,
      /* Tell the other tabs (not this one) something: on(type, fn) hears it. */
      tell: function (type, data) { post({ t: "app", type: type, data: data }); },
      on: function (type, fn) { (handlers[type] = handlers[type] || []).push(fn); }
    };
  }

  /* Server-sent events from a fetch body: calls ``onMessage`` with each message. */
  async function read(body, onMessage) {
    var reader = body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var message = blank();
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      var lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop();
      for (var i = 0; i < lines.length; i++) {
        var line = lines[i];
        if (!line) {
          onMessage(message);
          message = blank();
          continue;
        }
        var colon = line.indexOf(":");
        if (colon === 0) continue;  // a comment
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") {
          message.data += (message.hasData ? "\n" : "") + value;
          message.hasData = true;
        } else if (field === "event") {
          message.event = value;
        } else if (field === "id" && value.indexOf("\0") < 0) {
          message.id = value;
          message.hasId = true;
        } else if (field === "retry" && /^\d+$/.test(value)) {
          message.retry = +value;
        }
      }
    }
  }

  function blank() {
    return { data: "", event: "", id: "", hasId: false, hasData: false, retry: null };
  }

  /* Whether a ``reload`` event concerns ``conversation``: it names it, or names none
   * (everything: signed out, deactivated). */
  function reloads(event, conversation) {
    var named = event.detail && event.detail.data;
    return !named || named.split(",").indexOf(String(conversation)) >= 0;
  }

  return { connect: connect, once: once, setLocks: setLocks, reloads: reloads };
})();
