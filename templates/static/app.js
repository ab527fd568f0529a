/* CloudRunr dashboard: progressive enhancement only. Every page works without this file;
 * each feature below looks for its elements and does nothing when they are absent.
 *
 *  - <time datetime> elements show relative times ("3 min ago"), the absolute one in `title`.
 *  - The environment-variable editor gains add / remove row buttons.
 *  - Delete forms (form[data-confirm-slug]) keep submit disabled until the slug is typed.
 *  - The deployment page (main[data-page="deployment"]) follows the build log and state live.
 */
(function () {
  "use strict";

  var doc = document;
  doc.documentElement.classList.add("js");

  function $all(selector, scope) {
    return Array.prototype.slice.call((scope || doc).querySelectorAll(selector));
  }

  /* ---------------------------------------------------------------- relative times */

  var absoluteFormat =
    typeof Intl !== "undefined" && Intl.DateTimeFormat
      ? new Intl.DateTimeFormat(undefined, {
          year: "numeric", month: "short", day: "numeric",
          hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
        })
      : null;

  function formatAbsolute(date) {
    return absoluteFormat ? absoluteFormat.format(date) : date.toString();
  }

  function plural(n, unit) {
    return n + " " + unit + (n === 1 ? "" : "s");
  }

  // null when the time is too far away for a relative phrase to help.
  function relative(date, now) {
    var seconds = Math.round((now - date.getTime()) / 1000);
    var future = seconds < 0;
    var s = Math.abs(seconds);
    if (s < 45) return future ? "in a few seconds" : "just now";
    var minutes = Math.max(1, Math.round(s / 60));
    var hours = Math.round(s / 3600);
    var days = Math.round(s / 86400);
    var phrase;
    if (minutes < 60) phrase = minutes + " min";
    else if (hours < 24) phrase = plural(hours, "hour");
    else if (days === 1 && !future) return "yesterday";
    else if (days < 30) phrase = plural(days, "day");
    else return null;
    return future ? "in " + phrase : phrase + " ago";
  }

  function renderTime(el, now) {
    if (el.getAttribute("data-format") === "absolute") return;
    var value = el.getAttribute("datetime");
    if (!value) return;
    var date = new Date(value);
    if (isNaN(date.getTime())) return;
    if (!el.hasAttribute("data-absolute")) {
      el.setAttribute("data-absolute", el.textContent.trim() || formatAbsolute(date));
    }
    var absolute = el.getAttribute("data-absolute");
    if (!el.title) el.title = absolute;
    var text = relative(date, now === undefined ? Date.now() : now);
    el.textContent = text === null ? absolute : text;
  }

  // Points a <time> at a new instant (used by live updates).
  function setTime(el, value) {
    var date = new Date(value);
    if (isNaN(date.getTime())) return;
    el.setAttribute("datetime", value);
    el.setAttribute("data-absolute", formatAbsolute(date));
    el.title = formatAbsolute(date);
    if (el.getAttribute("data-format") === "absolute") el.textContent = formatAbsolute(date);
    else renderTime(el);
  }

  function initTimes() {
    var update = function () {
      var now = Date.now();
      $all("time[datetime]").forEach(function (el) {
        renderTime(el, now);
      });
    };
    update();
    setInterval(function () {
      if (!doc.hidden) update();
    }, 30000);
    doc.addEventListener("visibilitychange", function () {
      if (!doc.hidden) update();
    });
  }

  /* ---------------------------------------------------------------- env editor */

  var envRowCounter = 0;

  function envScope(el) {
    return el.closest("form") || el.closest(".card") || doc;
  }

  function envBody(scope) {
    return scope.querySelector(".env-table tbody") || doc.querySelector(".env-table tbody");
  }

  function addEnvRow(button) {
    var scope = envScope(button);
    var template = scope.querySelector("template#env-row-template") || doc.getElementById("env-row-template");
    var tbody = envBody(scope);
    if (!template || !template.content || !tbody) return;
    var fragment = template.content.cloneNode(true);
    // Templates may number their fields with __INDEX__ (e.g. name="env[__INDEX__][key]").
    var index = String(tbody.querySelectorAll("tr").length + envRowCounter++);
    $all("[name], [id], [for], [aria-describedby], [aria-labelledby]", fragment).forEach(function (el) {
      ["name", "id", "for", "aria-describedby", "aria-labelledby"].forEach(function (attr) {
        var v = el.getAttribute(attr);
        if (v && v.indexOf("__INDEX__") !== -1) el.setAttribute(attr, v.split("__INDEX__").join(index));
      });
    });
    var rows = $all("tr", fragment);
    tbody.appendChild(fragment);
    var first = rows.length ? rows[0].querySelector("input, select, textarea") : null;
    if (first) first.focus();
  }

  function removeEnvRow(button) {
    var row = button.closest("tr");
    if (!row || !row.parentNode) return;
    var tbody = row.parentNode;
    var rows = $all("tr", tbody);
    if (rows.length <= 1) {
      // Keep one (empty) row so the editor never disappears.
      $all("input, textarea", row).forEach(function (input) {
        input.value = "";
      });
      var input = row.querySelector("input, textarea");
      if (input) input.focus();
      return;
    }
    var i = rows.indexOf(row);
    var next = rows[i + 1] || rows[i - 1];
    row.parentNode.removeChild(row);
    var focus = next && (next.querySelector('[data-action="remove-env-row"]') || next.querySelector("input"));
    if (focus) focus.focus();
  }

  function initEnvEditor() {
    doc.addEventListener("click", function (event) {
      var target = event.target instanceof Element ? event.target : null;
      var button = target && target.closest('[data-action="add-env-row"], [data-action="remove-env-row"]');
      if (!button) return;
      event.preventDefault();
      if (button.getAttribute("data-action") === "add-env-row") addEnvRow(button);
      else removeEnvRow(button);
    });
  }

  /* ---------------------------------------------------------------- delete confirmation */

  function initConfirmForms() {
    $all("form[data-confirm-slug]").forEach(function (form) {
      var slug = form.getAttribute("data-confirm-slug");
      var input = form.querySelector('[name="confirm"]');
      var submits = $all('button:not([type]), button[type="submit"], input[type="submit"]', form);
      if (!input || !submits.length) return;
      var sync = function () {
        var ok = input.value === slug;
        submits.forEach(function (b) {
          b.disabled = !ok;
        });
        return ok;
      };
      input.addEventListener("input", sync);
      form.addEventListener("submit", function (event) {
        if (!sync()) {
          event.preventDefault();
          input.focus();
        }
      });
      sync();
    });
  }

  /* ---------------------------------------------------------------- deployment page */

  var FINAL = { ready: true, failed: true, canceled: true, timed_out: true };
  var STATE_LABELS = {
    queued: "Queued", cloning: "Cloning", installing: "Installing", building: "Building",
    uploading: "Uploading", ready: "Ready", failed: "Failed", canceled: "Canceled", timed_out: "Timed out"
  };
  var PHASE_ORDER = ["cloning", "installing", "building", "uploading"];
  var STREAMS = { stdout: true, stderr: true, system: true };
  var MAX_LINES = 20000;
  var FOLLOW_SLACK = 40; // px from the bottom that still counts as "at the bottom"

  function formatDuration(ms) {
    if (!(ms >= 0)) return "";
    if (ms < 1000) return Math.round(ms) + "ms";
    var s = ms / 1000;
    if (s < 10) return (Math.round(s * 10) / 10).toFixed(1) + "s";
    if (s < 60) return Math.round(s) + "s";
    var total = Math.round(s);
    if (total < 3600) return Math.floor(total / 60) + "m " + (total % 60) + "s";
    return Math.floor(total / 3600) + "h " + Math.floor((total % 3600) / 60) + "m";
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function updateFields(main, d) {
    if (!d || typeof d !== "object") return;
    var state = d.state;
    var final = FINAL[state] === true;
    main.setAttribute("data-final", final ? "true" : "false");

    $all("[data-field]").forEach(function (el) {
      var field = el.getAttribute("data-field");
      var value = d[field];
      switch (field) {
        case "state":
          if (!STATE_LABELS[state]) return;
          setText(el, STATE_LABELS[state]);
          Array.prototype.slice.call(el.classList).forEach(function (c) {
            if (c.indexOf("state-") === 0) el.classList.remove(c);
          });
          el.classList.add("state-" + state);
          el.setAttribute("data-state", state);
          return;
        case "duration": {
          var start = d.started_at || d.created_at;
          if (!start || !d.finished_at) return;
          setText(el, formatDuration(new Date(d.finished_at) - new Date(start)));
          return;
        }
        case "error":
          setText(el, value || "");
          el.hidden = !value;
          return;
        case "commit_sha":
          if (!value) return;
          setText(el, el.getAttribute("data-format") === "full" ? value : value.slice(0, 7));
          el.title = value;
          return;
        case "commit_message":
          if (typeof value !== "string") return;
          setText(el, el.getAttribute("data-format") === "full" ? value : value.split("\n")[0]);
          if (value.indexOf("\n") !== -1) el.title = value;
          return;
        case "phases":
          renderPhases(el, value || {});
          return;
      }
      // Any other field that the deployment carries as text or a number.
      if (typeof value !== "string" && typeof value !== "number") return;
      if (el.tagName === "TIME") {
        if (el.getAttribute("datetime") !== value) setTime(el, String(value));
        return;
      }
      if (el.tagName === "A") {
        // A link keeps its own label unless it shows the address itself.
        var label = el.textContent.trim();
        var showsAddress = label === "" || label === el.getAttribute("href");
        if (typeof value === "string" && /^(https?:\/\/|\/)/.test(value)) el.href = value;
        if (showsAddress) setText(el, String(value));
        return;
      }
      setText(el, String(value));
    });

    $all("[data-show-when], [data-hide-when]").forEach(function (el) {
      var show = el.getAttribute("data-show-when");
      var hide = el.getAttribute("data-hide-when");
      if (show !== null) el.hidden = !matchesWhen(show, state, final);
      if (hide !== null) el.hidden = matchesWhen(hide, state, final);
    });
  }

  // "final", "active" (not final) or a space-separated list of states.
  function matchesWhen(spec, state, final) {
    return spec.split(/\s+/).some(function (word) {
      return word === "final" ? final : word === "active" ? !final : word === state;
    });
  }

  function renderPhases(list, phases) {
    var names = Object.keys(phases).sort(function (a, b) {
      var ia = PHASE_ORDER.indexOf(a);
      var ib = PHASE_ORDER.indexOf(b);
      if (ia === -1) ia = PHASE_ORDER.length;
      if (ib === -1) ib = PHASE_ORDER.length;
      return ia - ib || (a < b ? -1 : a > b ? 1 : 0);
    });
    var fragment = doc.createDocumentFragment();
    names.forEach(function (name) {
      var li = doc.createElement("li");
      li.textContent = name + ": " + formatDuration(phases[name]);
      fragment.appendChild(li);
    });
    while (list.firstChild) list.removeChild(list.firstChild);
    list.appendChild(fragment);
  }

  function toNodes(text) {
    var ansi = window.CloudRunr && window.CloudRunr.ansi;
    if (ansi) return ansi.ansiToNodes(text);
    // ansi.js missing: strip escapes crudely, still as text.
    return doc.createTextNode(
      String(text).replace(/\x1b\[[0-9;:?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f]/g, "")
    );
  }

  function LiveLog(main, log) {
    this.main = main;
    this.log = log;
    this.url = main.getAttribute("data-stream-url");
    this.follow = doc.getElementById("log-follow");
    this.status = doc.getElementById("log-status");
    this.source = null;
    this.lastSeq = 0; // highest seq queued or rendered: anything at or below is a duplicate
    this.pending = [];
    this.dropped = 0; // lines removed from the DOM (or never added) because of MAX_LINES
    this.rendered = 0;
    this.notice = null;
    this.cleared = false;
    this.frame = 0;
    this.sticky = true;
    this.ended = false;
  }

  LiveLog.prototype.start = function () {
    var self = this;
    this.log.addEventListener("scroll", function () {
      self.setSticky(self.atBottom());
    }, { passive: true });
    if (this.follow) {
      this.follow.addEventListener("click", function () {
        self.setSticky(true);
        self.scrollToEnd();
        self.log.focus({ preventScroll: true });
      });
    }
    // Leaving the page (or entering the back-forward cache) closes the stream; coming back
    // resumes it after the last line seen.
    window.addEventListener("pagehide", function () {
      self.close();
    });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted && !self.ended) self.connect();
    });
    this.connect();
    this.scrollToEnd();
  };

  LiveLog.prototype.connect = function () {
    var self = this;
    this.close();
    var url = new URL(this.url, window.location.href);
    if (this.lastSeq > 0) url.searchParams.set("after", String(this.lastSeq));
    var source = new EventSource(url.toString());
    this.source = source;
    this.setStatus("connecting", "Connecting…");

    source.onopen = function () {
      self.setStatus("live", self.isFinal() ? "Loading…" : "Live");
    };
    source.onerror = function () {
      if (self.ended || self.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // The server refused (signed out, deployment gone…): the browser will not retry.
        self.source = null;
        self.setStatus("error", "Disconnected — reload the page to retry");
      } else {
        self.setStatus("reconnecting", "Reconnecting…");
      }
    };
    source.onmessage = function (event) {
      var line = parse(event.data);
      if (line) self.push(line);
    };
    source.addEventListener("state", function (event) {
      var data = parse(event.data);
      if (data) updateFields(self.main, data.deployment);
    });
    source.addEventListener("end", function (event) {
      var data = parse(event.data);
      if (data) updateFields(self.main, data.deployment);
      self.ended = true;
      self.close();
      self.setStatus("finished", "Finished");
      self.log.removeAttribute("aria-busy");
      self.schedule();
    });
  };

  LiveLog.prototype.close = function () {
    if (this.source) this.source.close();
    this.source = null;
  };

  LiveLog.prototype.isFinal = function () {
    return this.main.getAttribute("data-final") === "true";
  };

  LiveLog.prototype.setStatus = function (key, text) {
    if (!this.status) return;
    this.status.setAttribute("data-status", key);
    setText(this.status, text);
  };

  function parse(data) {
    try {
      return JSON.parse(data);
    } catch (e) {
      return null;
    }
  }

  LiveLog.prototype.push = function (line) {
    var seq = Number(line.seq);
    if (!(seq > this.lastSeq)) return; // a replay after a reconnect: already have it
    this.lastSeq = seq;
    this.pending.push(line);
    // A hidden tab gets no animation frames: keep the backlog bounded meanwhile.
    if (this.pending.length > 2 * MAX_LINES) {
      var extra = this.pending.length - MAX_LINES;
      this.pending.splice(0, extra);
      this.dropped += extra;
    }
    this.schedule();
  };

  LiveLog.prototype.schedule = function () {
    var self = this;
    if (this.frame) return;
    this.frame = window.requestAnimationFrame(function () {
      self.frame = 0;
      self.flush();
    });
  };

  LiveLog.prototype.flush = function () {
    var batch = this.pending;
    this.pending = [];
    if (!batch.length) return;
    if (!this.cleared) {
      // The first lines from the stream replace the server's uncoloured copy of the log.
      this.cleared = true;
      this.log.setAttribute("aria-busy", "true");
      while (this.log.firstChild) this.log.removeChild(this.log.firstChild);
      var self = this;
      setTimeout(function () {
        self.log.removeAttribute("aria-busy");
      }, 2000);
    }
    if (batch.length > MAX_LINES) {
      this.dropped += batch.length - MAX_LINES;
      batch = batch.slice(batch.length - MAX_LINES);
    }
    var stick = this.sticky;
    var fragment = doc.createDocumentFragment();
    for (var i = 0; i < batch.length; i++) fragment.appendChild(this.renderLine(batch[i]));
    this.log.appendChild(fragment);
    this.rendered += batch.length;
    this.trim(stick);
    if (stick) this.scrollToEnd();
  };

  LiveLog.prototype.renderLine = function (line) {
    var div = doc.createElement("div");
    var stream = STREAMS[line.stream] ? line.stream : "stdout";
    div.className = "line stream-" + stream;
    div.setAttribute("data-seq", String(line.seq));
    var seq = doc.createElement("span");
    seq.className = "seq";
    seq.textContent = String(line.seq);
    var text = doc.createElement("span");
    text.className = "text";
    text.appendChild(toNodes(line.text == null ? "" : line.text));
    div.appendChild(seq);
    div.appendChild(text);
    return div;
  };

  // Drops the oldest lines beyond MAX_LINES, keeping the view steady when not following.
  LiveLog.prototype.trim = function (stick) {
    var excess = this.rendered - MAX_LINES;
    if (excess > 0) {
      var before = this.log.scrollHeight;
      var first = this.notice ? this.notice.nextSibling : this.log.firstChild;
      var last = first;
      for (var i = 1; i < excess && last; i++) last = last.nextSibling;
      if (first && last) {
        var range = doc.createRange();
        range.setStartBefore(first);
        range.setEndAfter(last);
        range.deleteContents();
      }
      this.rendered -= excess;
      this.dropped += excess;
      if (!stick) this.log.scrollTop -= before - this.log.scrollHeight;
    }
    if (this.dropped > 0) this.showNotice();
  };

  LiveLog.prototype.showNotice = function () {
    if (!this.notice) {
      this.notice = doc.createElement("div");
      this.notice.className = "line stream-system log-truncated";
      this.log.insertBefore(this.notice, this.log.firstChild);
    }
    var n = this.dropped;
    var text =
      n.toLocaleString() + " earlier line" + (n === 1 ? " is" : "s are") +
      " not shown here; they are in the downloadable log.";
    var href = this.main.getAttribute("data-log-url");
    while (this.notice.firstChild) this.notice.removeChild(this.notice.firstChild);
    var span = doc.createElement("span");
    span.className = "text";
    span.textContent = text + (href ? " " : "");
    if (href) {
      var a = doc.createElement("a");
      a.href = href;
      a.textContent = "Download the full log";
      span.appendChild(a);
    }
    this.notice.appendChild(span);
  };

  LiveLog.prototype.atBottom = function () {
    var log = this.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight <= FOLLOW_SLACK;
  };

  LiveLog.prototype.setSticky = function (sticky) {
    this.sticky = sticky;
    if (this.follow) this.follow.hidden = sticky;
  };

  LiveLog.prototype.scrollToEnd = function () {
    this.log.scrollTop = this.log.scrollHeight;
  };

  function initDeployment() {
    var main = doc.querySelector('[data-page="deployment"][data-stream-url]');
    var log = doc.getElementById("log");
    if (!main || !log || typeof window.EventSource !== "function") return;
    if (typeof window.requestAnimationFrame !== "function" || typeof URL !== "function") return;
    new LiveLog(main, log).start();
  }

  /* ---------------------------------------------------------------- start */

  function init() {
    var features = [initTimes, initEnvEditor, initConfirmForms, initDeployment];
    features.forEach(function (feature) {
      try {
        feature();
      } catch (e) {
        // One broken feature must not take the others down.
        if (window.console) window.console.error(e);
      }
    });
  }

  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", init);
  else init();

  window.CloudRunr = window.CloudRunr || {};
  window.CloudRunr.formatDuration = formatDuration;
  window.CloudRunr.relativeTime = relative;
})();
