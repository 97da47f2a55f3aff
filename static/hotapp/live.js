// Live updates for Hot App pages over one websocket (hotapp/consumers.py).
// The runs list gets changed rows in batches; a run's page re-fetches its own fragment when its
// workflow changes. On a dropped connection it reconnects with backoff and catches up from the
// last cursor the server sent.
(function () {
  "use strict";
  const TOP = 80; // px from the top that still counts as "at the top"
  let socket = null;
  let retries = 0;
  let cursor = null;
  let queued = []; // rows held back while the user is scrolled away
  let lastRegionRefresh = 0;

  function setState(state) {
    const dot = document.getElementById("live-state");
    if (!dot) return;
    dot.className = "live-state " + state;
    dot.title = state === "on" ? "Live: connected" : "Live: reconnecting…";
  }

  function subscription() {
    const runs = document.getElementById("runs-region");
    if (runs) return { subscribe: "runs", query: runs.dataset.query, cursor: cursor || runs.dataset.cursor };
    const run = document.getElementById("run-live");
    if (run) return { subscribe: "run", run: run.dataset.run, cursor: cursor || run.dataset.updated };
    const task = document.getElementById("task-live");
    if (task) return { subscribe: "task", task: task.dataset.task, cursor: cursor || task.dataset.updated };
    return null;
  }

  let subscribedTo = null;
  function subscribe() {
    const sub = subscription();
    if (sub && socket && socket.readyState === WebSocket.OPEN) {
      subscribedTo = sub.query || sub.run || sub.task;
      socket.send(JSON.stringify(sub));
    }
  }

  function connect() {
    if (!subscription()) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(scheme + "://" + location.host + "/ws/live/");
    socket.onopen = () => { retries = 0; setState("on"); subscribe(); };
    socket.onmessage = (e) => handle(JSON.parse(e.data));
    socket.onclose = (e) => {
      setState("off");
      if (e.code === 4401) { location.reload(); return; } // logged out: go to the login page
      setTimeout(connect, Math.min(15000, 400 * 2 ** retries++));
    };
  }

  function handle(msg) {
    if (msg.cursor) cursor = msg.cursor;
    if (msg.type === "runs") applyRows(msg);
    else if (msg.type === "overflow") overflow();
    else if (msg.type === "run") refreshRun();
    else if (msg.type === "task") refreshFragment("task-live");
  }

  function parseRow(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function atTop() { return window.scrollY < TOP; }

  function newestShown(tbody) {
    const first = tbody.querySelector("tr[data-created]");
    return first ? first.dataset.created : "";
  }

  function insertNew(tbody, rows) {
    const empty = tbody.querySelector(".empty-row");
    if (empty) empty.remove();
    for (const row of rows.sort((a, b) => a.created_at.localeCompare(b.created_at))) {
      if (document.getElementById("run-" + row.id)) continue;
      const tr = parseRow(row.html);
      tr.classList.add("fresh");
      tbody.prepend(tr);
      if (window.htmx) htmx.process(tr);
    }
  }

  function showPill() {
    const pill = document.getElementById("new-runs");
    if (!pill) return;
    pill.hidden = queued.length === 0;
    pill.textContent = "Paused · " + queued.length + " new run" + (queued.length === 1 ? "" : "s") + " ↑";
  }

  function applyRows(msg) {
    const region = document.getElementById("runs-region");
    const tbody = document.getElementById("run-rows");
    if (!region || !tbody) return;
    const firstPage = region.dataset.firstPage === "1";
    const newest = newestShown(tbody);
    const fresh = [];
    for (const row of msg.rows) {
      const existing = document.getElementById("run-" + row.id);
      if (existing) {
        const tr = parseRow(row.html);
        existing.replaceWith(tr);
        if (window.htmx) htmx.process(tr);
      } else if (firstPage && row.created_at >= newest) {
        fresh.push(row);
      } else {
        const held = queued.findIndex((q) => q.id === row.id);
        if (held >= 0) queued[held] = row;
      }
    }
    for (const id of msg.gone || []) {
      const existing = document.getElementById("run-" + id);
      if (existing) existing.remove();
      queued = queued.filter((q) => q.id !== id);
    }
    if (atTop() && !queued.length) insertNew(tbody, fresh);
    else {
      for (const row of fresh) if (!queued.some((q) => q.id === row.id)) queued.push(row);
    }
    showPill();
  }

  function overflow() {
    const region = document.getElementById("runs-region");
    if (!region) return;
    if (region.dataset.firstPage === "1" && atTop() && Date.now() - lastRegionRefresh > 2000) {
      lastRegionRefresh = Date.now();
      htmx.ajax("GET", location.pathname + location.search, { target: "#runs-region", swap: "outerHTML" });
    } else {
      const pill = document.getElementById("new-runs");
      if (pill) { pill.hidden = false; pill.textContent = "Many new runs · refresh ↑"; pill.dataset.refresh = "1"; }
    }
  }

  const pending = new Set();
  function refreshFragment(id) {
    if (!document.getElementById(id) || pending.has(id)) return Promise.resolve();
    pending.add(id);
    return htmx.ajax("GET", location.pathname, { target: "#" + id, swap: "outerHTML" })
      .finally(() => pending.delete(id));
  }

  function refreshRun() {
    refreshFragment("run-live").then(() => {
      const now = document.getElementById("run-live");
      if (now && ["succeeded", "failed", "cancelled", "pending_retry"].includes(now.dataset.status) && window.hotLoadTrace) {
        window.hotLoadTrace(true);
      }
    });
  }

  document.addEventListener("click", (e) => {
    const pill = e.target.closest && e.target.closest("#new-runs");
    if (!pill) return;
    window.scrollTo({ top: 0 });
    if (pill.dataset.refresh === "1") {
      delete pill.dataset.refresh;
      htmx.ajax("GET", location.pathname + location.search, { target: "#runs-region", swap: "outerHTML" });
      return;
    }
    const tbody = document.getElementById("run-rows");
    if (tbody) insertNew(tbody, queued);
    queued = [];
    showPill();
  });

  window.addEventListener("scroll", () => {
    if (atTop() && queued.length) {
      const tbody = document.getElementById("run-rows");
      if (tbody) insertNew(tbody, queued);
      queued = [];
      showPill();
    }
  }, { passive: true });

  // A new filter swaps the region in: follow the new query from the region's own cursor.
  document.addEventListener("htmx:afterSettle", () => {
    const region = document.getElementById("runs-region");
    if (region && region.dataset.query !== subscribedTo) {
      cursor = null;
      queued = [];
      showPill();
      subscribe();
    }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();
