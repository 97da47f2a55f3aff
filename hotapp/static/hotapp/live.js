// Live updates for Hot App pages over one websocket (the protocol: hotapp/consumers.py).
// The page's live region (the element with data-live) says what it follows: a list (runs, events,
// tasks) with its filters, or a run or a task. The server works out what changed for it and sends
// a list's rows already rendered, each with its key (its place in the list's order, as text that
// sorts the same way), or tells the page to fetch its region again. This script only puts rows
// where their keys say, replaces rows by id, keeps the first page to one page of rows, and holds
// new rows behind a "Paused · N new …" pill while the user is scrolled away. On a dropped
// connection it reconnects with backoff and subscribes again from the last cursor the server
// sent. Every subscription has an id the server echoes: messages for an older subscription (the
// filters just changed) are dropped.
(function () {
  "use strict";
  const TOP = 80; // px from the top that still counts as "at the top"
  let socket = null;
  let retries = 0;
  let cursor = null;
  let pageSize = 50; // the server says (hotapp/views.py PAGE_SIZE)
  const queued = new Map(); // element id -> row held back while the user is scrolled away
  let queueFull = false; // older held rows were let go: the pill says "N+"
  let lastInsert = 0;

  function setState(state) {
    const dot = document.getElementById("live-state");
    if (!dot) return;
    dot.className = "live-state " + state;
    dot.title = state === "on" ? "Live: connected" : "Live: reconnecting…";
  }

  function region() { return document.querySelector("[data-live]"); }
  function isList(el) { return !!el.dataset.noun; } // a list names its rows; a page does not

  // What this page follows. `resume`: the cursor is the server's, not the state the page was
  // rendered from, so a run or task page may have missed changes stamped before it.
  function subscription() {
    const el = region();
    if (!el) return null;
    return {
      subscribe: el.dataset.live,
      query: el.dataset.query || "",
      key: el.dataset.key || "",
      cursor: cursor || el.dataset.cursor,
      resume: cursor !== null,
    };
  }

  let subId = 0; // the current subscription's id; messages with another are for an older one
  let subscribedRegion = null; // the list region the current subscription is for
  function subscribe() {
    const sub = subscription();
    if (sub && socket && socket.readyState === WebSocket.OPEN) {
      sub.sub = ++subId;
      subscribedRegion = region();
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
    if (msg.type === "update") applyRows(msg);
    else if (msg.type === "reload") reload();
  }

  function parseRow(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function atTop() { return window.scrollY < TOP; }

  // Keys sort as the list does (newest first): the greater key is the newer row.
  function newer(a, b) { return a > b; }
  function shownRows(tbody) { return Array.from(tbody.querySelectorAll("tr[data-key]")); }

  // "Load older …" from the last row kept: its key is also a page cursor (hotapp/filters.py).
  function olderLink(el, tbody, last) {
    const params = new URLSearchParams(el.dataset.query);
    params.set("after", last.dataset.key);
    const url = location.pathname + "?" + params;
    const columns = el.querySelectorAll("thead th").length || 1;
    const tr = parseRow('<tr class="more"><td><a hx-target="closest tr" hx-swap="outerHTML"></a></td></tr>');
    tr.firstElementChild.colSpan = columns;
    const a = tr.querySelector("a");
    a.textContent = "Load older " + el.dataset.noun + "s";
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

  // Puts new rows where their keys place them and keeps the first page to pageSize rows; the
  // rows that fall off stay reachable through "Load older …". A row older than every row shown
  // belongs to a later page, unless this page already shows all there is.
  function insertNew(el, tbody, rows) {
    const empty = tbody.querySelector(".empty-row");
    if (empty && rows.length) empty.remove();
    const shown = shownRows(tbody);
    const keys = shown.map((tr) => tr.dataset.key);
    const hasOlder = hasLaterPages(tbody, shown);
    const incoming = rows
      .filter((row) => !document.getElementById(row.id))
      .sort((a, b) => (newer(a.key, b.key) ? -1 : 1));
    // Flash new rows when they come at a pace one can follow. In a stream they would only flicker,
    // and dozens of rows animating at once keep the browser busy painting.
    const flash = Date.now() - lastInsert > 500;
    let at = 0;
    for (const row of incoming) {
      while (at < shown.length && newer(keys[at], row.key)) at++;
      if (at >= pageSize || (at === shown.length && hasOlder)) break; // would not be on this page
      const tr = parseRow(row.html);
      if (flash) tr.classList.add("fresh");
      lastInsert = Date.now();
      if (at < shown.length) shown[at].before(tr);
      else if (tbody.querySelector("tr.more")) tbody.querySelector("tr.more").before(tr);
      else tbody.append(tr);
      if (window.htmx) htmx.process(tr);
      shown.splice(at, 0, tr);
      keys.splice(at, 0, row.key);
      at++;
    }
    if (shown.length > pageSize) {
      for (const tr of shown.slice(pageSize)) tr.remove();
      olderLink(el, tbody, shown[pageSize - 1]);
    }
  }

  function showPill(el) {
    const pill = el && el.querySelector(".pill");
    if (!pill) return;
    const n = queued.size;
    const noun = el.dataset.noun + (n === 1 && !queueFull ? "" : "s");
    pill.hidden = n === 0;
    pill.textContent = "Paused · " + n + (queueFull ? "+" : "") + " new " + noun + " ↑";
  }

  // Whether a row not shown would be on this page: newer than its last row, or all fit.
  function fits(tbody, key) {
    const shown = shownRows(tbody);
    if (shown.length < pageSize && !hasLaterPages(tbody, shown)) return true;
    return newer(key, shown[Math.min(shown.length, pageSize) - 1].dataset.key);
  }

  // While paused, hold only the newest pageSize rows that would be on the page: older ones
  // could not make it anyway.
  function hold(tbody, row) {
    if (!queued.has(row.id) && !fits(tbody, row.key)) return;
    queued.set(row.id, row);
    if (queued.size <= pageSize) return;
    let oldest = null;
    for (const q of queued.values()) if (!oldest || newer(oldest.key, q.key)) oldest = q;
    queued.delete(oldest.id);
    queueFull = true;
  }

  function release() {
    const el = region();
    const tbody = el && el.querySelector("tbody");
    if (tbody) insertNew(el, tbody, Array.from(queued.values()));
    queued.clear();
    queueFull = false;
    showPill(el);
  }

  function applyRows(msg) {
    const el = region();
    const tbody = el && el.querySelector("tbody");
    if (!tbody) return;
    if (msg.page_size) pageSize = msg.page_size;
    const firstPage = el.dataset.firstPage === "1";
    const fresh = [];
    for (const row of msg.rows) {
      const existing = document.getElementById(row.id);
      if (existing) {
        const tr = parseRow(row.html);
        existing.replaceWith(tr);
        if (window.htmx) htmx.process(tr);
      } else if (firstPage) {
        fresh.push(row);
      }
    }
    for (const id of msg.gone || []) {
      const existing = document.getElementById(id);
      if (existing) existing.remove();
      queued.delete(id);
    }
    if (atTop() && !queued.size) insertNew(el, tbody, fresh);
    else for (const row of fresh) hold(tbody, row);
    showPill(el);
  }

  // Fetch the live region again: a run or task page whose rows changed, or a list too far
  // behind to catch up row by row. A list's new region subscribes from its own cursor
  // (htmx:afterSettle below); a page keeps its subscription.
  const pending = new Map(); // region id -> whether a notice came while it was being fetched
  function reload() {
    const el = region();
    if (!el || !el.id) return Promise.resolve();
    const id = el.id;
    if (pending.has(id)) { pending.set(id, true); return Promise.resolve(); }
    pending.set(id, false);
    return htmx.ajax("GET", location.pathname + location.search, { target: "#" + id, swap: "outerHTML" })
      .finally(() => {
        const again = pending.get(id);
        pending.delete(id);
        // The fetch in flight may have read the page before the change that notice is about.
        if (again) return reload();
        const now = region();
        // A run that has just finished has its whole trace to show.
        if (now && now.dataset.live === "run" && window.hotLoadTrace
            && ["succeeded", "failed", "cancelled", "pending_retry"].includes(now.dataset.status)) {
          window.hotLoadTrace(true);
        }
      });
  }

  document.addEventListener("click", (e) => {
    const pill = e.target.closest && e.target.closest("[data-live] .pill");
    if (!pill) return;
    window.scrollTo({ top: 0 });
    release();
  });

  window.addEventListener("scroll", () => {
    if (atTop() && queued.size) release();
  }, { passive: true });

  // A new filter (or a reload) swaps a list's region in: follow its query from its own cursor.
  // "Load older …" swaps rows inside the region, which keeps its subscription.
  document.addEventListener("htmx:afterSettle", () => {
    const el = region();
    if (el && isList(el) && el !== subscribedRegion) {
      cursor = null;
      queued.clear();
      queueFull = false;
      showPill(el);
      subscribe();
    }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();
