"""A real PostgreSQL restart while a run is in flight: nothing is lost, nothing runs twice."""

import os
import subprocess
from pathlib import Path

import pytest
from django.db import connection

from hotapp.models import Event, Run, RunStatus
from runtime import send
from tests.conftest import wait_for

pytestmark = pytest.mark.services

CLUSTERS = Path("/etc/postgresql")


def restart_postgresql() -> None:
    """Restart the local cluster the suite runs on, as .ci/run starts it; returns once it is up."""
    version = sorted(os.listdir(CLUSTERS), key=lambda v: [int(p) for p in v.split(".")])[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def can_restart_postgresql() -> bool:
    local = connection.settings_dict["HOST"] in ("127.0.0.1", "localhost")
    return CLUSTERS.is_dir() and os.geteuid() == 0 and local


def test_a_run_in_flight_when_postgresql_restarts_is_saved_once_it_is_back(celery_worker, tmp_path):
    if not can_restart_postgresql():
        if os.environ.get("CI"):
            pytest.fail("CI must be able to restart the local PostgreSQL (root, pg_ctlcluster)")
        pytest.skip("needs root and a local PostgreSQL cluster to restart")
    log = tmp_path / "executions.log"
    send("test:batch", {"n": 1, "sleep": 1.0, "send": {"after": "restart"}, "log": str(log)})
    wait_for(log.exists, what="the handler to start")

    restart_postgresql()  # the worker's connections, and this test's, die under it
    connection.close()

    wait_for(
        lambda: Run.objects.filter(
            event_type="test:downstream", status=RunStatus.SUCCEEDED
        ).exists(),
        timeout=60,
        what="the run's downstream step",
    )
    run = Run.objects.get(event_type="test:batch")
    assert run.status == RunStatus.SUCCEEDED and run.result == 1
    assert run.recovery_count == 0  # its own worker saved it once the database was back
    assert log.read_text().split() == [str(run.id)]  # and it ran once
    assert Event.objects.filter(type="test:downstream").count() == 1
