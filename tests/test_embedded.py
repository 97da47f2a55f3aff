"""The embedded default: `hot dev` on SQLite with its in-process worker, as a user starts it."""

import http.cookiejar
import os
import re
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def logged_in_get(url: str, username: str, password: str) -> str:
    """Log in through the login form, as a browser would, and fetch `url`."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = url + "login/"
    form = opener.open(login, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/"}
    ).encode()
    opener.open(urllib.request.Request(login, data=data, headers={"Referer": login}), timeout=10)
    with opener.open(url, timeout=10) as response:
        assert response.url == url, "login failed"
        return response.read().decode()


def test_hot_dev_runs_the_demo_workflow_to_completion_on_sqlite(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "HOT_HANDLER_MODULES")
    }
    env.update(DJANGO_SETTINGS_MODULE="hotproject.settings", HOT_DATA_DIR=str(tmp_path))
    port = free_port()
    out = (tmp_path / "hot-dev.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "hot", "dev", "--port", str(port), "--demo-orders", "2"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        log = tmp_path / "hot-dev.log"
        wait_for(lambda: url in log.read_text(), timeout=60, what="hot dev to print its URL")
        db = tmp_path / "hot.sqlite3"

        def finished_runs():
            with sqlite3.connect(db) as conn:
                rows = conn.execute(
                    "SELECT function, status, attempt FROM hotapp_run WHERE function LIKE ?",
                    ["%on_order_%"],
                ).fetchall()
            done = [r for r in rows if r[1] in ("succeeded", "failed")]
            return rows if len(rows) == 8 and len(done) == 8 else None

        rows = wait_for(finished_runs, timeout=60, what="2 orders through 3 steps with a retry")
        by_function = sorted((f.rsplit(".", 1)[1], s, a) for f, s, a in rows)
        assert by_function == sorted(
            [
                ("on_order_created", "failed", 1),
                ("on_order_created", "succeeded", 2),
                ("on_order_paid", "succeeded", 1),
                ("on_order_shipped", "succeeded", 1),
            ]
            * 2
        )
        password = re.search(r"log in as: admin / (\S+)", log.read_text()).group(1)
        page = logged_in_get(url, "admin", password)
        assert "on_order_shipped" in page and "↻1" in page

        # The demo task runs on the in-process worker and checkpoints; the schedule fires.
        def checkpoints():
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT count(*) FROM hotapp_taskcheckpoint").fetchone()[0]

        wait_for(checkpoints, timeout=30, what="the demo task's first checkpoint")
        with sqlite3.connect(db) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM hotapp_schedule")]
            # Due at once rather than at its next 30-second tick.
            conn.execute("UPDATE hotapp_schedule SET last_tick_at = '2000-01-01 00:00:00'")
        assert names == ["hotapp.demo.handlers.tidy_abandoned_carts"]

        def schedule_run():
            with sqlite3.connect(db) as conn:
                return conn.execute(
                    "SELECT status FROM hotapp_run WHERE trigger = 'schedule' AND function = ?",
                    [names[0]],
                ).fetchall()

        wait_for(lambda: ("succeeded",) in schedule_run(), timeout=30, what="a demo schedule run")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        out.close()
