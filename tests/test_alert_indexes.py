"""Every query alerts make on a busy table is answered from an index (see tests/test_indexes.py
for how: sequential scans off, the plan must name the index)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from hotapp.models import AlertDelivery, Run
from runtime.alert_delivery import _due
from tests.test_indexes import plan

pytestmark = pytest.mark.django_db


def test_the_deliverer_and_the_sweeper_find_due_alerts_from_an_index_of_only_those():
    assert "alert_due_idx" in plan(_due(timezone.now()).order_by("next_attempt_at"))


def test_the_rate_limit_counts_a_channels_window_from_its_index():
    window = AlertDelivery.objects.filter(
        channel="ops", first_attempt_at__gte=timezone.now() - timedelta(seconds=60)
    )
    assert "alert_window_idx" in plan(window)


def test_the_alerts_history_reads_newest_first_from_its_index():
    assert "alert_created_idx" in plan(AlertDelivery.objects.order_by("-created_at", "-id")[:51])


def test_a_transitions_alerts_find_its_runs_by_their_stamp(make_runs):
    # Many cancelled runs, each with its own stamp, and the statistics to know it: the stamp
    # is then the selective condition, as it is on a real table.
    make_runs(500, status="cancelled")
    Run.objects.update(updated_at=F("created_at"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE hotapp_run")
    stamped = Run.objects.filter(updated_at=timezone.now(), status="cancelled", is_superseded=False)
    assert "run_updated_idx" in plan(stamped)
