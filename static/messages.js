/* What the widget and the dashboard share about sending messages: an optimistic bubble
 * that the stored message (or the stream's copy of it) replaces, a failed state with a
 * retry that reuses the same client id (so a retry can never double a message), the typing
 * signal, and the chime for new messages.
 */
window.ChatMessages = (function () {
  "use strict";

  function clientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  /* A bubble for text not yet stored, appended to ``list`` with the sender's ``kind``. */
  function pending(list, text, kind) {
    var id = clientId();
    var bubble = document.createElement("div");
    bubble.className = "entry " + kind + " pending";
    bubble.id = "pending-" + id;
    bubble.dataset.pending = id;
    bubble.dataset.text = text;
    var body = document.createElement("p");
    body.className = "body";
    body.textContent = text;
    var note = document.createElement("span");
    note.className = "state";
    bubble.append(body, note);
    list.append(bubble);
    sending(bubble);
    return bubble;
  }

  function sending(bubble) {
    bubble.classList.remove("failed");
    bubble.classList.add("pending");
    bubble.querySelector(".state").textContent = "Sending…";
  }

  /* The stored message came back: it replaces the bubble, unless the stream was first.
   * Returns the entry put in (null for none), for the page to take as it takes the
   * stream's: this is no swap of htmx's, so no swap event says it. */
  function settle(bubble, html) {
    if (!bubble.isConnected) return null;
    var holder = document.createElement("div");
    holder.innerHTML = html.trim();
    var stored = holder.firstElementChild;
    var fresh = !!stored && !!stored.id && !document.getElementById(stored.id);
    if (fresh) {
      localTimes(stored);
      bubble.replaceWith(stored);
    } else {
      bubble.remove();
    }
    marks();
    return fresh ? stored : null;
  }

  /* Show why it failed: ``response`` and its ``html`` (none for a network error). A network
   * error, a limit (429) or an outage (5xx) gets a Retry button, which waits out the
   * server's Retry-After (seconds) with a countdown. */
  function fail(bubble, response, html) {
    var why = reason(html);
    var status = response ? response.status : 0;
    var retryable = status === 0 || status === 429 || status >= 500;
    bubble.classList.remove("pending");
    bubble.classList.add("failed");
    var note = bubble.querySelector(".state");
    note.textContent = "Not sent." + (why ? " " + why : "") + " ";
    if (!retryable) return;
    var button = document.createElement("button");
    button.type = "button";
    button.dataset.action = "retry";
    note.append(button);
    var wait = Math.min(parseInt(response && response.headers.get("Retry-After"), 10) || 0, 3600);
    bubble.dataset.retryAt = Date.now() + wait * 1000;  // for retryable()
    var tick = function () {
      button.disabled = wait > 0;
      button.textContent = wait > 0 ? "Retry in " + wait + " s" : "Retry";
      if (wait-- > 0) setTimeout(tick, 1000);
    };
    tick();
  }

  /* What an error answer says: the text of its fragment (templates/partials/error.html),
   * "" for none. */
  function reason(html) {
    var holder = document.createElement("div");
    holder.innerHTML = html || "";
    return holder.textContent.trim();
  }

  /* The failed bubbles under ``root`` that may be sent again (a network error, a limit, an
   * outage: those with Retry), oldest first. */
  function failed(root) {
    return Array.from(root.querySelectorAll(".entry.failed [data-action=retry]"),
                      function (button) { return button.closest(".entry"); });
  }

  /* Resolves once ``bubble`` may be sent again: when the server's Retry-After is over. */
  function retryable(bubble) {
    var wait = Math.max(0, (+bubble.dataset.retryAt || 0) - Date.now());
    return new Promise(function (resolve) { setTimeout(resolve, wait); });
  }

  /* An entry arrived (stream or response): drop the bubble it stands for. */
  function arrived(entry) {
    var id = entry.dataset && entry.dataset.clientId;
    var bubble = id && document.getElementById("pending-" + id);
    if (bubble) bubble.remove();
  }

  /* The newest entry's sequence in ``list`` (0 for none). */
  function newestSeq(list) {
    var newest = 0;
    if (list) list.querySelectorAll(".entry[data-seq]").forEach(function (entry) {
      newest = Math.max(newest, +entry.dataset.seq);
    });
    return newest;
  }

  /* Mark this side's messages Sent, Delivered or Read, from the receipts the stream keeps
   * on the page (templates/partials/receipts.html); the words are what screen readers
   * read. Pending and failed bubbles say Sending… and Not sent themselves. */
  function marks() {
    document.querySelectorAll(".receipts[data-mine]").forEach(function (cursors) {
      var list = document.getElementById(cursors.id.replace("receipts-", "entries-"));
      if (!list) return;
      var delivered = +cursors.dataset.delivered, read = +cursors.dataset.read;
      list.querySelectorAll(".entry." + cursors.dataset.mine + "[data-seq]").forEach(
        function (entry) {
          var seq = +entry.dataset.seq;
          var word = seq <= read ? "Read" : seq <= delivered ? "Delivered" : "Sent";
          var mark = entry.querySelector(".state");
          if (!mark) {
            mark = document.createElement("span");
            mark.className = "state receipt";
            entry.append(mark);
          }
          if (mark.textContent !== word) mark.textContent = word;
        });
    });
  }

  /* Tell screen readers (the page's #announcer live region) what just arrived. */
  function announce(text) {
    var announcer = document.getElementById("announcer");
    if (announcer) announcer.textContent = text;
  }

  /* Earlier entries (an /older fragment) go above ``list``, keeping the reader's place;
   * returns their ids. */
  function prependOlder(button, html, list, scroller) {
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var older = holder.querySelector("template.older-entries").content;
    var ids = Array.from(older.querySelectorAll(".entry[id]"), function (e) { return e.id; });
    localTimes(older);
    var height = scroller.scrollHeight;
    list.prepend(older);
    var next = holder.querySelector("[data-action=older]");
    if (next) list.parentNode.insertBefore(next, list);
    button.remove();
    scroller.scrollTop += scroller.scrollHeight - height;
    return ids;
  }

  /* ---- times in the reader's own time zone ------------------------------------------ */

  // The server writes UTC (the no-JS fallback); the browser knows the reader's zone and locale.
  var clockFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var dateFormat = new Intl.DateTimeFormat(undefined, {
    day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"
  });
  var fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

  /* Show every ``<time datetime>`` under ``root`` in local time: hour and minute for today,
   * date and time before; the title has it in full. A localised one has a title, so a second
   * pass skips it; relative times (``.ago``) are the dashboard's own. */
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]:not(.ago):not([title])")
      .forEach(function (el) {
        var moment = new Date(el.getAttribute("datetime"));
        if (isNaN(moment.getTime())) return;
        var today = moment.toDateString() === new Date().toDateString();
        el.textContent = (today ? clockFormat : dateFormat).format(moment);
        el.title = fullFormat.format(moment);
      });
  }
  // Whatever htmx swaps in (stream entries, the visitor panel, responses) carries server
  // times, and may move receipts or bring messages to mark: one pass over the page for both.
  document.addEventListener("htmx:after:swap", function () { localTimes(document); marks(); });
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });

  /* ---- staying at the latest message ------------------------------------------------ */

  var END_SLACK = 40;  // px: this close to the end still counts as reading the latest

  /* Keep ``scroller`` at its end while the reader is there; ``pill`` (a "New messages" button)
   * shows when news arrives while they read further up. Whether they are at the end is judged
   * from their scrolling, i.e. before anything is added: measured after, a new entry's own
   * height would read as "scrolled up". The scroll waits for layout (a frame). */
  function follow(scroller, pill) {
    var stick = true, frame = 0;
    function atEnd() {
      return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= END_SLACK;
    }
    function toEnd() {
      stick = true;
      pill.hidden = true;
      if (frame) return;
      frame = requestAnimationFrame(function () {
        frame = 0;
        scroller.scrollTop = scroller.scrollHeight;
      });
    }
    scroller.addEventListener("scroll", function () {
      if (frame) return;  // content grew before our own scroll to the end: not the reader
      stick = atEnd();
      if (stick) pill.hidden = true;
    });
    pill.addEventListener("click", toEnd);
    /* Content was added below: follow it, or, for news, offer the pill. */
    function grew(news) {
      if (stick) toEnd();
      else if (news) pill.hidden = false;
    }
    return { toEnd: toEnd, grew: grew };
  }

  var audio = null;
  var audioWatchers = [];

  /* The audio context, made now if need be. Made before any gesture, browsers keep it
   * "suspended" (silent) until one resumes it: that state is how a page knows it cannot
   * chime yet. */
  function prepareAudio() {
    if (!audio && window.AudioContext) {
      audio = new AudioContext();
      audio.onstatechange = function () {
        audioWatchers.forEach(function (fn) { fn(audio.state); });
      };
    }
    return audio;
  }

  /* Let sound play: to be called in a user gesture (a click), which is what browsers ask. */
  function unlockAudio() {
    if (prepareAudio() && audio.state !== "running") audio.resume().catch(function () {});
  }

  /* Call ``fn(state)`` whenever the audio context's state changes (running, suspended). */
  function watchAudio(fn) { audioWatchers.push(fn); }

  // Browsers play sound only after a user gesture: the first one unlocks it, whatever it is.
  ["pointerdown", "keydown"].forEach(function (type) {
    document.addEventListener(type, unlockAudio, { once: true, capture: true });
  });

  var TYPING_REFRESH_MS = 2000;  // as chat/signals.py: a refresh at most this often...
  var TYPING_IDLE_MS = 5000;     // ...and "stopped" this long after the last key

  /* Tell the other side while ``box`` is being typed in: ``signal("typing")`` at most every
   * couple of seconds, ``signal("stopped")`` once the keys rest or the box is emptied. The
   * server forgets a typist whose page goes quiet; a sent message ends it there too, so
   * ``sent()`` only resets. */
  function typing(box, signal) {
    var last = 0, idle = null;
    function reset() { clearTimeout(idle); idle = null; last = 0; }
    function stop() { if (last) signal("stopped"); reset(); }
    box.addEventListener("input", function () {
      if (!box.value.trim()) { stop(); return; }
      if (Date.now() - last >= TYPING_REFRESH_MS) {
        var refresh = last > 0;  // the server passes on a start at once, refreshes less often
        last = Date.now();
        signal("typing", { refresh: refresh });
      }
      clearTimeout(idle);
      idle = setTimeout(stop, TYPING_IDLE_MS);
    });
    return { sent: reset, active: function () { return last > 0; } };
  }

  /* Whether a chime would be heard from this tab (it has had a gesture). */
  function canChime() { return !!audio && audio.state === "running"; }

  function chime() {
    if (!canChime()) return;
    var now = audio.currentTime;
    [880, 660].forEach(function (pitch, index) {
      var start = now + index * 0.12;
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = pitch;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.15, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.18);
      tone.connect(gain).connect(audio.destination);
      tone.start(start);
      tone.stop(start + 0.2);
    });
  }

  return { pending: pending, sending: sending, settle: settle, fail: fail, arrived: arrived,
           failed: failed, retryable: retryable, reason: reason,
           typing: typing, announce: announce, prependOlder: prependOlder, chime: chime,
           canChime: canChime, localTimes: localTimes, follow: follow, newestSeq: newestSeq,
           prepareAudio: prepareAudio, unlockAudio: unlockAudio, watchAudio: watchAudio };
})();
