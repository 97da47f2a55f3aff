"""Hot added to a Django project of its own, as the README's "Add Hot to your Django project"
says: the wheel built from this checkout, installed by pip into a fresh virtualenv, in the shop
of tests/example_project (its own settings, URLs, ASGI app, Celery app, user model, and handlers
that write to its own models), run on PostgreSQL, Redis, a Celery worker and Daphne, with the
dashboard under /hot/ in a browser."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
from django.conf import settings

from tests import test_browser
from tests.conftest import ROOT, wait_for

# Building the wheel and installing it with its dependencies takes a minute or so.
pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]
browser = test_browser.browser

EXAMPLE = ROOT / "tests" / "example_project"
# What the wheel is not built from: the checkout's virtualenv, git data, build leftovers (a stale
# build/ would put deleted files in the wheel), tests and benchmarks.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", ".hot", "__pycache__", ".*_cache", "tests"
)
PASSWORD = "shop-admin-pass"


def timed(what: str, timings: dict, *command, **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    timings[what] = round(time.monotonic() - started, 1)
    print(f"{what}: {timings[what]} s")  # shown with -s, or with a failure
    assert result.returncode == 0, f"{what} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def shop_database():
    """A database of the shop's own beside the test database, dropped afterwards."""
    server = urlparse(os.environ["DATABASE_URL"])
    name = server.path.lstrip("/") + "_shop"
    admin = server._replace(path="/postgres").geturl()

    def recreate(create: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                conn.execute(f'CREATE DATABASE "{name}"')

    recreate(True)
    yield server._replace(path=f"/{name}").geturl()
    recreate(False)


@pytest.fixture
def processes(tmp_path):
    """Start long-running processes with their output in a log; kill them at the end."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(name: str, *command, **kwargs) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        started.append((proc, log))
        return proc, log

    yield start
    for proc, _ in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points at the checkout or the suite's settings."""
    dropped = ("DJANGO_", "HOT_", "PYTHON", "VIRTUAL_ENV", "TEST_", "DATABASE_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_django_project_installs_the_wheel_runs_a_workflow_and_shows_it_under_hot(
    tmp_path, shop_database, redis_client, processes, browser
):
    timings: dict[str, float] = {}

    # The wheel, from a copy of the checkout; then a fresh virtualenv where pip resolves Hot's
    # dependencies from the index as it would for any project.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp_path / "dist"
    pip = (sys.executable, "-m", "pip")
    # An absolute path: a bare name would be looked up on the index as a package.
    timed("wheel build", timings, *pip, "wheel", "-q", "--no-deps", "-w", dist, source)
    (wheel,) = dist.glob("hot_for_python-*.whl")
    venv = tmp_path / "venv"
    timed("venv", timings, sys.executable, "-m", "venv", venv)
    # --no-compile: byte-compiling every dependency up front would double pip's CPU time here.
    install = ("install", "-q", "--no-compile", wheel)
    timed("pip install", timings, venv / "bin/python", "-m", "pip", *install)

    # The shop, away from the checkout: nothing of it is importable from there.
    shop = tmp_path / "shop"
    shutil.copytree(EXAMPLE, shop, ignore=shutil.ignore_patterns("__pycache__"))
    env = clean_env(DATABASE_URL=shop_database, REDIS_URL=settings.REDIS_URL)
    python = str(venv / "bin/python")

    def manage(*args: str, what: str | None = None) -> str:
        what = what or f"manage.py {args[0]}"
        return timed(what, timings, python, "manage.py", *args, cwd=shop, env=env).stdout

    where = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "import importlib.util, hotapp, runtime.celery_app as c;"
        "print(hotapp.__file__); print(c.celery_app().main);"
        "print(importlib.util.find_spec('hotproject'))",
    ).split()
    assert where[0].startswith(str(venv / "lib")) and "site-packages" in where[0], where
    assert where[1:] == ["shop", "None"]  # Hot publishes through the shop's Celery app

    manage("migrate", "-v", "0")
    superuser = {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    command = ("createsuperuser", "--noinput", "--username", "admin", "--email", "a@shop.test")
    timed("createsuperuser", timings, python, "manage.py", *command, cwd=shop, env=superuser)

    worker, worker_log = processes(
        "worker",
        venv / "bin/celery",
        "-A",
        "shop",
        "worker",
        "--loglevel=INFO",
        "--concurrency=2",
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
        cwd=shop,
        env=env,
    )
    port = free_port()
    daphne, daphne_log = processes(
        "daphne",
        venv / "bin/daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "shop.asgi:application",
        cwd=shop,
        env=env,
    )

    def alive() -> None:
        for proc, log in ((worker, worker_log), (daphne, daphne_log)):
            assert proc.poll() is None, log.read_text()

    def query(sql: str) -> list[tuple]:
        alive()
        with psycopg.connect(shop_database) as conn:
            return conn.execute(sql).fetchall()

    manage("hot", "send", "shop:order-placed", '{"number": "A-1001", "total": "42.50"}')

    # The shop's handlers ran on the shop's worker (a retry included) and wrote its orders.
    expected_runs = [
        ("orders.handlers.charge", "failed", 1),
        ("orders.handlers.charge", "succeeded", 2),
        ("orders.handlers.ship", "succeeded", 1),
    ]
    runs_sql = "SELECT function, status, attempt FROM hotapp_run ORDER BY function, attempt"
    wait_for(lambda: query(runs_sql) == expected_runs, timeout=60, what="the order workflow")
    ((status, tracking, charge_key),) = query(
        "SELECT status, tracking, charge_key FROM orders_order WHERE number = 'A-1001'"
    )
    first_charge = query("SELECT id FROM hotapp_run WHERE attempt = 1 AND function LIKE '%charge'")
    assert (status, tracking) == ("shipped", "TRK-A-1001")
    assert charge_key == f"hot:{first_charge[0][0]}"
    worker_tasks = worker_log.read_text()
    assert "hot.execute_run" in worker_tasks and "hot.promote_retry" in worker_tasks

    def listening() -> bool:
        alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(listening, what="daphne to listen")
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, base_url=f"http://127.0.0.1:{port}"
    )
    page = context.new_page()
    statuses: dict[str, int] = {}
    page.on("response", lambda r: statuses.setdefault(urlparse(r.url).path, r.status))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The shop's own login page guards Hot's pages; its custom user model logs in.
    page.goto("/hot/")
    assert urlparse(page.url).path == "/accounts/login/"
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#runs-region")
    assert urlparse(page.url).path == "/hot/"
    test_browser.live_dot_is_on(page)
    assert page.locator("#run-rows tr[id^=run-]").count() == 3
    assert page.get_attribute("header a.brand", "href") == "/hot/overview/"
    test_browser.shot(page, "install-runs")

    # A second order, sent while the page is open, shows up live over the Redis layer.
    manage("hot", "send", "shop:order-placed", '{"number": "B-2002", "total": "7.00"}', what="send")
    page.wait_for_function(
        "document.querySelectorAll('#run-rows tr[id^=run-] .badge.status-succeeded').length === 4",
        timeout=30_000,
    )

    ((ship_id,),) = query(
        "SELECT r.id FROM hotapp_run r JOIN hotapp_event e ON e.id = r.event_id "
        "WHERE r.function = 'orders.handlers.ship' AND e.data->>'number' = 'A-1001'"
    )
    page.click(f"#run-{ship_id} td.fn a")
    page.wait_for_selector("#run-live[data-status=succeeded]")
    assert urlparse(page.url).path == f"/hot/runs/{ship_id}/"
    test_browser.live_dot_is_on(page)
    assert page.locator("svg.lineage .node.run").count() == 3
    page.wait_for_selector(".trace-row")  # trace.js fetched the trace under /hot/ too
    # The stylesheet came from the installed package and applies.
    assert statuses["/static/hotapp/hot.css"] == 200
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "flex"
    test_browser.shot(page, "install-run")
    context.close()

    assert not errors, errors
    served = daphne_log.read_text()
    assert served.count('"WSCONNECT /hot/ws/live/"') == 2, served
    assert "Traceback" not in served, served
    print("timings (s):", timings)
