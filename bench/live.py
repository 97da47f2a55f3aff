"""Live updates: commit -> browser latency on the runs list while runs flow at a steady rate.

    python bench/live.py [--rate 1000] [--seconds 20]

Goal: p95 <= 250 ms at 1,000 run transitions a second.

What runs: the dashboard as a real `daphne hotproject.asgi:application` process (Redis channel
layer, PostgreSQL), and headless Chromium (Playwright) logged in and showing the runs list (/),
scrolled to the top. A MutationObserver in the page stamps Date.now() for every run row
(`tr#run-<id>`) it sees inserted and still in the page when the observer runs, whether one by one
from a live `update` message or as part of a whole region re-fetched (after a `reload` message,
which a page current enough never gets; an older version re-fetched after an `overflow` notice).

The load is NOT executed by workers: two cores cannot run 1,000 real runs a second. A load
generator in this process writes the rows directly, the way the runtime's transitions do: every
10 ms, in one transaction, it inserts a small batch of runs that are already succeeded (all
timestamps = now) and calls runtime.live.runs_changed(), which rings the dashboards' doorbell on
commit. It notes time.time() right after each commit.

Latency of a row = the browser's Date.now() when the row appeared - its batch's commit time
(same machine, same clock). Only rows the page actually shows count, so the script also prints
how many rows that is, how many `reload` notices came instead of rows, and a second figure that
does not favour the few rows a re-fetch happens to show: for each commit, the time until the page
showed a row from that commit or a newer one. It also checks that the table ends showing the
newest runs, newest first. The goal line says "met" only if both p95s are within the goal and
every commit was shown (or passed by a newer one) by the end. Asserts nothing.

Its own scratch database `hot_bench_live` (dropped and re-created; BENCH_LIVE_DATABASE_URL) and
Redis db 13 (BENCH_LIVE_REDIS_URL).
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "BENCH_LIVE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hot_bench_live"
)
REDIS_URL = os.environ.get("BENCH_LIVE_REDIS_URL", "redis://127.0.0.1:6379/13")
CHROMIUM = "/usr/bin/chromium"
TICK = 0.01  # seconds between two committed batches
GOAL_P95_MS = 250
USER, PASSWORD = "bench", "bench-pass"

# Installed before the page's own scripts. Rows are recorded at most once per run id (the first
# time they appear); socket messages are recorded too, to tell where time goes.
RECORDER = """
window.__rows = [];      // [run id, status shown, Date.now(), "row" | "refresh"]
window.__messages = [];  // [type, Date.now(), run ids carried, more changed than carried]
window.__refreshes = 0;  // #runs-region swapped in whole (after a reload notice)
const seen = new Set();
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      const ids = (msg.rows || []).map((r) => r.id.replace(/^run-/, ""));
      window.__messages.push([msg.type, Date.now(), ids, !!msg.more]);
    });
  }
};
new MutationObserver((mutations) => {
  const now = Date.now();
  for (const m of mutations) {
    for (const node of m.addedNodes) {
      if (node.nodeType !== 1) continue;
      const how = node.id === "runs-region" || node.querySelector("#runs-region")
        ? "refresh" : "row";
      if (how === "refresh") window.__refreshes++;
      const rows = node.matches("tr[id^='run-']")
        ? [node] : node.querySelectorAll("tr[id^='run-']");
      for (const tr of rows) {
        const id = tr.id.slice(4);
        if (seen.has(id) || !tr.isConnected) continue; // added and taken out again: never shown
        seen.add(id);
        const status = (tr.className.match(/row-(\\w+)/) || [])[1] || "";
        window.__rows.push([id, status, now, how]);
      }
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 50):7.1f} ms  p95 {percentile(values, 95):7.1f} ms  "
        f"p99 {percentile(values, 99):7.1f} ms  max {max(values):7.1f} ms  (n={len(values)})"
    )


def recreate_database() -> None:
    """Drop and create the scratch database, then migrate it (as bench/harness.py does)."""
    name = DATABASE_URL.rsplit("/", 1)[1]
    admin_url = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, env=os.environ
    )


def start_daphne(log) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        + ["hotproject.asgi:application"],
        cwd=ROOT,
        env=os.environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"daphne did not start; see {log.name}") from None
            time.sleep(0.1)


def write_batch(n: int) -> tuple[list[str], float]:
    """Insert n succeeded runs in one transaction that rings the doorbell on commit."""
    from django.db import transaction
    from django.utils import timezone

    from hotapp.models import Run, RunStatus, Trigger
    from runtime.live import runs_changed

    with transaction.atomic():
        now = timezone.now()
        runs = Run.objects.bulk_create(
            Run(
                function="bench.live.load",
                trigger=Trigger.MANUAL,
                stream_id=uuid.uuid4(),
                status=RunStatus.SUCCEEDED,
                created_at=now,
                updated_at=now,
                queued_at=now,
                started_at=now,
                finished_at=now,
            )
            for _ in range(n)
        )
        runs_changed()  # as runtime.transitions.transition() does: rings once this commits
    return [str(r.id) for r in runs], time.time()


def generate(rate: float, seconds: float, commits: dict[str, float], out: dict) -> None:
    """Open loop: batch i is due at start + i * TICK whatever happened before; sizes add up to
    rate * seconds rows even when rate * TICK is not a whole number."""
    from django.db import connection

    batches = int(seconds / TICK)
    written = 0
    start = time.perf_counter()
    first_wall = time.time()
    for i in range(batches):
        time.sleep(max(0.0, start + i * TICK - time.perf_counter()))
        n = int(rate * (i + 1) * TICK) - written
        if n <= 0:
            continue
        ids, committed = write_batch(n)
        written += n
        for run_id in ids:
            commits[run_id] = committed
        out.setdefault("batch_times", []).append(committed)
    out["behind"] = time.perf_counter() - (start + (batches - 1) * TICK)
    out["elapsed"] = time.time() - first_wall
    out["written"] = written
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000, help="runs written per second")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    os.environ.update(
        {
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "DJANGO_SETTINGS_MODULE": "hotproject.settings",
            "HOT_LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(ROOT))
    recreate_database()
    import django
    import redis

    django.setup()
    from django.contrib.auth import get_user_model

    redis.Redis.from_url(REDIS_URL).flushdb()
    # A superuser: the dashboard needs the view permission (hotapp.view_run).
    get_user_model().objects.create_superuser(USER, password=PASSWORD)

    log_path = Path(tempfile.gettempdir()) / "bench-live-daphne.log"
    with log_path.open("w") as log:
        daphne, url = start_daphne(log)
        try:
            result = measure(args, url)
        finally:
            daphne.terminate()
            try:
                daphne.wait(10)
            except subprocess.TimeoutExpired:
                daphne.kill()
                daphne.wait()
    report(args, **result)
    print(f"daphne log: {log_path}")


def measure(args, url: str) -> dict:
    """Log in, open the runs list, run the load, and collect what the page recorded."""
    from playwright.sync_api import sync_playwright

    from hotapp.models import Run
    from hotapp.views import PAGE_SIZE

    # Playwright's sync API keeps an event loop in this thread; the warm-up's ORM calls here are
    # still plain synchronous calls. Set only now, so that daphne does not inherit it.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
        )
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.add_init_script(RECORDER)
            page.goto(f"{url}/login/")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#runs-region")
            page.wait_for_selector("#live-state.on", timeout=10_000)

            # Warm-up: one row end to end (daphne's database connection, templates).
            warm_ids, _ = write_batch(1)
            page.wait_for_function(
                f"window.__rows.some((r) => r[0] === {warm_ids[0]!r})", timeout=15_000
            )
            time.sleep(2.5)  # past the consumer's 2 s re-read overlap of the warm-up row
            page.evaluate("window.__rows = []; window.__messages = []; window.__refreshes = 0")

            commits: dict[str, float] = {}
            out: dict = {}
            # The load runs in its own thread: no event loop there, and the browser records on
            # its own meanwhile (Playwright is only asked for the records afterwards).
            load = threading.Thread(target=generate, args=(args.rate, args.seconds, commits, out))
            load.start()
            load.join()
            time.sleep(3)  # let the last commits reach the page
            return {
                "commits": commits,
                "out": out,
                "rows": page.evaluate("window.__rows"),
                "messages": page.evaluate("window.__messages"),
                "refreshes": page.evaluate("window.__refreshes"),
                "pill": page.evaluate(
                    "(p) => (p && !p.hidden ? p.textContent : '')",
                    page.query_selector("#new-runs"),
                ),
                "shown": page.eval_on_selector_all(
                    "#run-rows tr[id^=run-]", "(rows) => rows.map((r) => r.id.slice(4))"
                ),
                "newest": [
                    str(i)
                    for i in Run.objects.newest_first().values_list("id", flat=True)[:PAGE_SIZE]
                ],
            }
        finally:
            browser.close()


def report(args, commits, out, rows, messages, refreshes, shown, newest, pill) -> None:
    rows = [r for r in rows if r[0] in commits]  # only this run's load, not the warm-up row
    written = out["written"]
    print(
        f"load: {written} succeeded runs written directly by a load generator (not executed by "
        f"workers) in {len(out['batch_times'])} commits, target {args.rate:.0f}/s for "
        f"{args.seconds:.0f} s"
    )
    print(
        f"achieved write rate: {written / out['elapsed']:.0f} runs/s "
        f"(generator finished {out['behind'] * 1000:.0f} ms behind its timetable)"
    )
    via = Counter(r[3] for r in rows)
    kinds = Counter(m[0] for m in messages)
    print(
        f"rows seen in the browser: {len(rows)} of {written} ({via['row']} inserted from live "
        f"`update` messages, {via['refresh']} in {refreshes} whole-list re-fetches); "
        f"statuses shown {dict(Counter(r[1] for r in rows))}"
    )
    print(
        f"socket messages: {len(messages)} {dict(kinds)}; "
        f"{sum(1 for m in messages if m[3])} said more changed than they carried"
    )
    print(f"reload notices: {kinds['reload']}")
    print(
        f"at the end: {len(shown)} rows in the table, "
        f"{'the' if shown == newest else 'NOT the'} {len(newest)} newest runs newest first; "
        f"pill: {pill or 'hidden'}"
    )

    def ms(run_id: str, seen_ms: float) -> float:
        return seen_ms - commits[run_id] * 1000

    latency = [ms(r[0], r[2]) for r in rows]
    print(f"commit -> row in browser          {summary(latency)}")
    for how, label in (
        ("row", "rows from live `update` messages"),
        ("refresh", "rows from re-fetches"),
    ):
        print(f"  {label:32s}{summary([ms(r[0], r[2]) for r in rows if r[3] == how])}")
    carried = [
        ms(i, t) for kind, t, ids, _ in messages if kind == "update" for i in ids if i in commits
    ]
    print(f"commit -> row in socket message   {summary(carried)}")

    # The figure above only samples rows the page chose to show. This one asks, for every
    # commit, how long until the page showed a row from it or from a later commit: how stale
    # the list looked to someone watching it.
    first_seen: dict[float, float] = {}
    for run_id, _, seen_ms, _ in rows:
        c = commits[run_id]
        first_seen[c] = min(first_seen.get(c, seen_ms), seen_ms)
    stale, best, never = [], None, 0
    for c in reversed(out["batch_times"]):
        if c in first_seen:
            best = first_seen[c] if best is None else min(best, first_seen[c])
        if best is None:
            never += 1
        else:
            stale.append(best - c * 1000)
    print(f"commit -> page shows it or newer  {summary(stale)}")
    if never:
        print(f"  {never} of the last commits never shown, nor anything newer, 3 s after the load")

    p95 = percentile(latency, 95) if latency else float("inf")
    p95_stale = percentile(stale, 95) if stale else float("inf")
    met = p95 <= GOAL_P95_MS and p95_stale <= GOAL_P95_MS and not never and shown == newest
    print(
        f"goal: p95 <= {GOAL_P95_MS} ms: {'met' if met else 'not met'} (rows shown p95 "
        f"{p95:.0f} ms; page shows a commit or newer p95 {p95_stale:.0f} ms; "
        f"{written - len(rows)} of {written} rows never appeared)"
    )


if __name__ == "__main__":
    main()
