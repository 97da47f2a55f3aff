// The execution trace on a run's page: a collapsible call tree with values and a timing
// waterfall. Rows are created only when their parent is expanded, so a 5,000-call trace opens
// as fast as a 5-call one. All text goes in through textContent: values are never markup.
(function () {
  "use strict";
  const INITIAL_DEPTH = 2;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmtDuration(us) {
    if (us < 1000) return us + " µs";
    if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
    return (us / 1e6).toFixed(2) + " s";
  }

  function summary(span) {
    if (span.error) return { text: "raised " + span.error.message, err: true };
    if (span.incomplete) return { text: "did not finish", err: true };
    const args = (span.args || []).map(([k, v]) => k + "=" + v).join(", ");
    return { text: "(" + args + ") → " + (span.result === undefined ? "" : span.result), err: false };
  }

  function render(container, doc) {
    const spans = doc.spans || [];
    const kids = new Map();
    const roots = [];
    for (const span of spans) {
      if (span.parent === null || span.parent === undefined) roots.push(span);
      else (kids.get(span.parent) || kids.set(span.parent, []).get(span.parent)).push(span);
    }
    const total = Math.max(1, ...roots.map((s) => s.start_us + s.duration_us));
    container.replaceChildren();

    const tools = el("div", "trace-tools");
    tools.append(el("span", "", spans.length + " calls · " + fmtDuration(total)));
    const expandAll = el("button", "", "Expand all");
    const collapseAll = el("button", "", "Collapse all");
    expandAll.type = collapseAll.type = "button";
    tools.append(expandAll, collapseAll);
    container.append(tools);
    if (doc.is_truncated) {
      container.append(el("div", "trace-note",
        "Truncated: " + doc.dropped_spans + " more calls were made but not recorded " +
        "(limits: " + doc.limits.max_spans + " calls, " + doc.limits.max_bytes + " bytes)."));
    }
    const list = el("div", "trace");
    list.setAttribute("role", "tree");
    container.append(list);
    if (!spans.length) {
      list.append(el("div", "trace-row", "No calls into user code were recorded."));
      return;
    }

    function makeRow(span, depth) {
      const row = el("div", "trace-row");
      row.setAttribute("role", "treeitem");
      row.dataset.span = span.id;
      row.dataset.depth = depth;
      const name = el("div", "trace-name");
      name.style.paddingLeft = depth * 1.1 + "rem";
      const toggle = el("span", "trace-toggle", kids.has(span.id) ? "▸" : "");
      name.append(toggle, document.createTextNode(span.name));
      if (span.kind) name.append(el("span", "muted", " (" + span.kind + ")"));
      name.title = span.module + "." + span.name + "  " + span.file + ":" + span.line;
      const sum = summary(span);
      const value = el("div", "trace-value" + (sum.err ? " err" : ""), sum.text);
      value.title = sum.text;
      const dur = el("div", "trace-dur", fmtDuration(span.duration_us));
      const fall = el("div", "waterfall");
      const bar = el("span", sum.err ? "err" : "");
      bar.style.left = (100 * span.start_us / total).toFixed(3) + "%";
      bar.style.width = (100 * span.duration_us / total).toFixed(3) + "%";
      fall.append(bar);
      row.append(name, value, dur, fall);
      row.addEventListener("click", (e) => {
        if (e.target === toggle && kids.has(span.id)) toggleChildren(row, span);
        else toggleDetail(row, span);
      });
      return row;
    }

    function descendantsAfter(row) {
      const depth = Number(row.dataset.depth);
      const out = [];
      let next = row.nextElementSibling;
      while (next && (next.classList.contains("trace-detail") || Number(next.dataset.depth) > depth)) {
        out.push(next);
        next = next.nextElementSibling;
      }
      return out;
    }

    function expand(row, span) {
      const toggle = row.querySelector(".trace-toggle");
      if (row.dataset.open === "1") return;
      row.dataset.open = "1";
      toggle.textContent = "▾";
      let anchor = row;
      const detail = row.nextElementSibling;
      if (detail && detail.classList.contains("trace-detail")) anchor = detail;
      const depth = Number(row.dataset.depth) + 1;
      const frag = document.createDocumentFragment();
      for (const child of kids.get(span.id) || []) frag.append(makeRow(child, depth));
      anchor.after(frag);
    }

    function collapse(row) {
      row.dataset.open = "0";
      row.querySelector(".trace-toggle").textContent = "▸";
      for (const node of descendantsAfter(row)) if (!node.classList.contains("trace-detail") || node.dataset.for !== row.dataset.span) node.remove();
    }

    function toggleChildren(row, span) {
      if (row.dataset.open === "1") collapse(row); else expand(row, span);
    }

    function toggleDetail(row, span) {
      const next = row.nextElementSibling;
      if (next && next.classList.contains("trace-detail")) { next.remove(); row.classList.remove("selected"); return; }
      row.classList.add("selected");
      const box = el("div", "trace-detail");
      box.dataset.depth = row.dataset.depth;
      box.dataset.for = span.id;
      const dl = el("dl");
      const add = (k, v) => { dl.append(el("dt", "muted", k), el("dd", "", v)); };
      add("Function", span.module + "." + span.name);
      add("Where", span.file + ":" + span.line);
      for (const [k, v] of span.args || []) add("arg " + k, v);
      for (const [k, v] of span.values || []) add("value " + k, v);
      if (span.yields && span.yields.length) add("yielded", span.yields.join("\n"));
      if (span.error) add("raised", span.error.type + ": " + span.error.message);
      else if (span.result !== undefined) add("returned", span.result);
      add("Started", "+" + fmtDuration(span.start_us));
      add("Took", fmtDuration(span.duration_us));
      box.append(dl);
      row.after(box);
    }

    const frag = document.createDocumentFragment();
    for (const root of roots) frag.append(makeRow(root, 0));
    list.append(frag);
    // Open the first levels; deeper ones on demand.
    for (let depth = 0; depth < INITIAL_DEPTH; depth++) {
      for (const row of list.querySelectorAll('.trace-row[data-depth="' + depth + '"]')) {
        const span = spans[Number(row.dataset.span)];
        if (kids.has(span.id) && kids.get(span.id).length <= 200) expand(row, span);
      }
    }
    expandAll.addEventListener("click", () => {
      let opened = 0;
      for (let pass = 0; pass < 50 && opened < 3000; pass++) {
        const closed = [...list.querySelectorAll(".trace-row")].filter((r) => r.dataset.open !== "1" && kids.has(Number(r.dataset.span)));
        if (!closed.length) break;
        for (const row of closed) { expand(row, spans[Number(row.dataset.span)]); opened += kids.get(Number(row.dataset.span)).length; }
      }
    });
    collapseAll.addEventListener("click", () => {
      for (const row of list.querySelectorAll('.trace-row[data-depth="0"]')) collapse(row);
    });
  }

  function load(force) {
    const container = document.getElementById("trace");
    if (!container || container.dataset.loaded === "1") return;
    if (container.dataset.hasTrace !== "1" && !force) return;
    container.dataset.loaded = "1";
    fetch(container.dataset.url, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((doc) => render(container, doc))
      .catch((status) => {
        container.dataset.loaded = "0";
        if (status !== 404) container.replaceChildren(el("p", "error", "Could not load the trace (" + status + ")."));
      });
  }

  window.hotLoadTrace = load;
  document.addEventListener("DOMContentLoaded", () => load(false));
})();
