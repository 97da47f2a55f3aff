// Live updates for Hot App pages over one websocket (hotapp/consumers.py).
// The runs list gets changed rows in batches: the first page places new rows in the list's order
// (newest first) and keeps to one page of rows; every page updates the rows it shows in place.
// A run's page re-fetches its own fragment when its workflow changes, a task's page when the task
// does, the tasks list when any task does. On a dropped connection it
// reconnects with backoff and catches up from the last cursor the server sent; a page too far
// behind is told to reload its list or fragment instead. Every subscription has an id that the
// server echoes: messages for an older subscription (the filters just changed) are dropped.
(function () {
  "use strict";
  const TOP = 80; // px from the top that still counts as "at the top"
  let socket = null;
  let retries = 0;
  let cursor = null;
  let pageSize = 50; // the server says (hotapp/views.py PAGE_SIZE)
  const queued = new Map(); // id -> {row, key} held back while the user is scrolled away
  let queueFull = false; // older held rows were let go: the pill says "N+"
  let lastInsert = 0;

  function setState(state) {
    const dot = document.getElementById("live-state");
    if (!dot) return;
    dot.className = "live-state " + state;
    dot.title = state === "on" ? "Live: connected" : "Live: reconnecting…";
  }

  // What this page follows. `resume`: the cursor is the server's, not the state the page was
  // rendered from, so a run or task page may have missed changes stamped before it.
  function subscription() {
    const resume = cursor !== null;
    const runs = document.getElementById("runs-region");
    if (runs) return { subscribe: "runs", query: runs.dataset.query, cursor: cursor || runs.dataset.cursor };
    const run = document.getElementById("run-live");
    if (run) return { subscribe: "run", run: run.dataset.run, cursor: cursor || run.dataset.updated, resume: resume };
    const task = document.getElementById("task-live");
    if (task) return { subscribe: "task", task: task.dataset.task, cursor: cursor || task.dataset.updated, resume: resume };
    const tasks = document.getElementById("tasks-region");
    if (tasks && tasks.dataset.live) return { subscribe: "tasks", cursor: cursor || tasks.dataset.updated, resume: resume };
    return null;
  }

  let subId = 0; // the current subscription's id; messages with another are for an older one
  let subscribedRegion = null; // the runs region element the current subscription is for
  function subscribe() {
    const sub = subscription();
    if (sub && socket && socket.readyState === WebSocket.OPEN) {
      sub.sub = ++subId;
      subscribedRegion = document.getElementById("runs-region");
      socket.send(JSON.stringify(sub));
    }
  }

  function connect() {
    if (!subscription()) {
      // Nothing on this page is live (the overview refreshes itself): no dot that says otherwise.
      const dot = document.getElementById("live-state");
      if (dot) dot.hidden = true;
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // The socket lives beside the dashboard, under whatever prefix the project mounted it.
    socket = new WebSocket(scheme + "://" + location.host + document.body.dataset.liveUrl);
    socket.onopen = () => { retries = 0; setState("on"); subscribe(); };
    socket.onmessage = (e) => handle(JSON.parse(e.data));
    socket.onclose = (e) => {
      setState("off");
      // Logged out (4401) or no longer allowed to look (4403): the reload shows why.
      if (e.code === 4401 || e.code === 4403) { location.reload(); return; }
      setTimeout(connect, Math.min(15000, 400 * 2 ** retries++));
    };
  }

  function handle(msg) {
    if (msg.sub !== subId) return; // a check made for the filters before the current ones
    if (msg.cursor) cursor = msg.cursor;
    if (msg.type === "runs") applyRows(msg);
    else if (msg.type === "reload") reloadRuns();
    else if (msg.type === "run") refreshRun();
    else if (msg.type === "task") refreshFragment("task-live");
    else if (msg.type === "tasks") refreshFragment("tasks-region");
  }

  // Too far behind to catch up row by row: fetch the list's region again. The new region
  // subscribes from its own cursor (htmx:afterSettle below).
  function reloadRuns() {
    if (!document.getElementById("runs-region")) return;
    htmx.ajax("GET", location.pathname + location.search, { target: "#runs-region", swap: "outerHTML" });
  }

  function parseRow(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function atTop() { return window.scrollY < TOP; }

  // The list's order, newest first: created_at, then id (hotapp/querysets.py newest_first). The
  // key keeps microseconds, which Date.parse drops; ids compare as PostgreSQL compares uuids.
  function sortKey(created, id) {
    const micros = ((created.match(/\.(\d+)/) || [])[1] || "").padEnd(6, "0").slice(3, 6);
    return { t: Date.parse(created) * 1000 + Number(micros), id: id };
  }
  function newer(a, b) { return a.t !== b.t ? a.t > b.t : a.id > b.id; }
  function rowKey(tr) { return sortKey(tr.dataset.created, tr.id.slice(4)); }

  // hotapp/filters.py encode_cursor: the page after this row.
  function cursorAfter(tr) {
    return btoa(tr.dataset.created + "|" + tr.id.slice(4)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function olderLink(region, tbody, last) {
    const params = new URLSearchParams(region.dataset.query);
    params.set("after", cursorAfter(last));
    const url = location.pathname + "?" + params;
    const tr = parseRow('<tr class="more"><td colspan="6"><a hx-target="closest tr" hx-swap="outerHTML">Load older runs</a></td></tr>');
    const a = tr.querySelector("a");
    a.href = url;
    a.setAttribute("hx-get", url);
    const old = tbody.querySelector("tr.more");
    if (old) old.replaceWith(tr);
    else tbody.append(tr);
    if (window.htmx) htmx.process(tr);
  }

  // Whether rows older than the last one shown are on later pages. A spent search window can
  // show no rows and still link on; a new row is newer than that window, so it goes on this page.
  function hasLaterPages(tbody, shown) {
    return shown.length > 0 && !!tbody.querySelector("tr.more");
  }

  // Puts new rows where the list's order has them and keeps the first page to pageSize rows; the
  // rows that fall off stay reachable through "Load older runs". A row older than every row shown
  // belongs to a later page, unless this page already shows all there is.
  function insertNew(region, tbody, rows) {
    const empty = tbody.querySelector(".empty-row");
    if (empty && rows.length) empty.remove();
    const shown = Array.from(tbody.querySelectorAll("tr[data-created]"));
    const keys = shown.map(rowKey);
    const hasOlder = hasLaterPages(tbody, shown);
    const incoming = rows
      .filter((row) => !document.getElementById("run-" + row.id))
      .map((row) => ({ row: row, key: sortKey(row.created_at, row.id) }))
      .sort((a, b) => (newer(a.key, b.key) ? -1 : 1));
    // Flash new rows when they come at a pace one can follow. In a stream they would only flicker,
    // and dozens of rows animating at once keep the browser busy painting.
    const flash = Date.now() - lastInsert > 500;
    let at = 0;
    for (const item of incoming) {
      while (at < shown.length && newer(keys[at], item.key)) at++;
      if (at >= pageSize || (at === shown.length && hasOlder)) break; // would not be on this page
      const tr = parseRow(item.row.html);
      if (flash) tr.classList.add("fresh");
      lastInsert = Date.now();
      if (at < shown.length) shown[at].before(tr);
      else if (tbody.querySelector("tr.more")) tbody.querySelector("tr.more").before(tr);
      else tbody.append(tr);
      if (window.htmx) htmx.process(tr);
      shown.splice(at, 0, tr);
      keys.splice(at, 0, item.key);
      at++;
    }
    if (shown.length > pageSize) {
      for (const tr of shown.slice(pageSize)) tr.remove();
      olderLink(region, tbody, shown[pageSize - 1]);
    }
  }

  function showPill() {
    const pill = document.getElementById("new-runs");
    if (!pill) return;
    const n = queued.size;
    pill.hidden = n === 0;
    pill.textContent = "Paused · " + n + (queueFull ? "+" : "") + " new run" + (n === 1 && !queueFull ? "" : "s") + " ↑";
  }

  // Whether a row not shown would be on this page: newer than its last row, or all fit.
  function fits(tbody, key) {
    const shown = tbody.querySelectorAll("tr[data-created]");
    if (shown.length < pageSize && !hasLaterPages(tbody, shown)) return true;
    return newer(key, rowKey(shown[Math.min(shown.length, pageSize) - 1]));
  }

  // While paused, hold only the newest pageSize rows that would be on the page: older ones
  // could not make it anyway.
  function hold(tbody, row) {
    const key = sortKey(row.created_at, row.id);
    if (!queued.has(row.id) && !fits(tbody, key)) return;
    queued.set(row.id, { row: row, key: key });
    if (queued.size <= pageSize) return;
    let oldest = null;
    for (const q of queued.values()) if (!oldest || newer(oldest.key, q.key)) oldest = q;
    queued.delete(oldest.row.id);
    queueFull = true;
  }

  function release() {
    const region = document.getElementById("runs-region");
    const tbody = document.getElementById("run-rows");
    if (region && tbody) insertNew(region, tbody, Array.from(queued.values(), (q) => q.row));
    queued.clear();
    queueFull = false;
    showPill();
  }

  function applyRows(msg) {
    const region = document.getElementById("runs-region");
    const tbody = document.getElementById("run-rows");
    if (!region || !tbody) return;
    if (msg.page_size) pageSize = msg.page_size;
    const firstPage = region.dataset.firstPage === "1";
    const fresh = [];
    for (const row of msg.rows) {
      const existing = document.getElementById("run-" + row.id);
      if (existing) {
        const tr = parseRow(row.html);
        existing.replaceWith(tr);
        if (window.htmx) htmx.process(tr);
      } else if (firstPage) {
        fresh.push(row);
      }
    }
    for (const id of msg.gone || []) {
      const existing = document.getElementById("run-" + id);
      if (existing) existing.remove();
      queued.delete(id);
    }
    if (atTop() && !queued.size) insertNew(region, tbody, fresh);
    else for (const row of fresh) hold(tbody, row);
    showPill();
  }

  const pending = new Map(); // fragment id -> whether a notice came while it was being fetched
  function refreshFragment(id) {
    if (!document.getElementById(id)) return Promise.resolve();
    if (pending.has(id)) { pending.set(id, true); return Promise.resolve(); }
    pending.set(id, false);
    return htmx.ajax("GET", location.pathname + location.search, { target: "#" + id, swap: "outerHTML" })
      .finally(() => {
        const again = pending.get(id);
        pending.delete(id);
        // The fetch in flight may have read the page before the change that notice is about.
        if (again) return refreshFragment(id);
      });
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
    release();
  });

  window.addEventListener("scroll", () => {
    if (atTop() && queued.size) release();
  }, { passive: true });

  // A new filter (or a reload) swaps the region in: follow its query from its own cursor.
  // "Load older runs" swaps rows inside the region, which keeps its subscription.
  document.addEventListener("htmx:afterSettle", () => {
    const region = document.getElementById("runs-region");
    if (region && region !== subscribedRegion) {
      cursor = null;
      queued.clear();
      queueFull = false;
      showPill();
      subscribe();
    }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();
