"""Shared set-up for the benchmarks: a scratch PostgreSQL database, Redis, worker processes.

Each benchmark script runs as `python bench/<script>.py` from the project root; it re-executes
Django against the scratch database `hot_bench` (or BENCH_DATABASE_URL) and Redis db 14
(or BENCH_REDIS_URL).
"""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hot_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def configure(**extra_env: str) -> None:
    """Point this process at the scratch database and set Django up."""
    os.environ.update(
        {
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "DJANGO_SETTINGS_MODULE": "hotproject.settings",
            "HOT_HANDLER_MODULES": "bench.handlers",
            "HOT_LOG_LEVEL": "WARNING",
            **extra_env,
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def recreate_database() -> None:
    """Drop and create the scratch database, then migrate it."""
    import psycopg

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


def reset_state() -> None:
    """Empty the tables and the broker between measurements."""
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE hotapp_runtrace, hotapp_run, hotapp_event CASCADE")
    redis.Redis.from_url(REDIS_URL).flushdb()


@contextmanager
def workers(concurrency: int = 2, **env: str):
    """A `celery -A hotproject worker` (prefork) process against the scratch database."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hotproject",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(condition, timeout: float, poll: float = 0.05) -> float:
    """Poll until `condition()`; return the time it became true (time.perf_counter())."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"benchmark did not finish within {timeout}s")
        time.sleep(poll)
    return time.perf_counter()
