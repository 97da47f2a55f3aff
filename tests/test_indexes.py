"""Every dashboard filter and sweeper query can be answered from an index.

The test tables are tiny, so PostgreSQL would rather scan them: sequential scans are switched off
for the transaction, and the plan must then name the index (a query no index can serve still
gets a sequential scan, whatever the setting)."""

import pytest
from django.db import connection
from django.http import QueryDict

from hotapp.filters import EventFilterForm, RunFilterForm
from hotapp.models import TASK_TERMINAL_STATUSES, Event, Run, Task

pytestmark = pytest.mark.django_db


def plan(queryset) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def first_page(queryset, form) -> object:
    assert form.is_valid(), form.errors
    return queryset.filtered(form.cleaned_data, with_words=False).newest_first()[:51]


@pytest.mark.parametrize(
    "query, index",
    [
        ("", "run_created_idx"),
        # Needs attention: failed and not retried, from an index of only those rows.
        ("status=failed", "run_attention_idx"),
        ("status=failed_attempt", "run_status_idx"),
        ("status=failed&status=queued", "run_status_idx"),
        ("status=failed_attempt&status=succeeded", "run_status_idx"),
        ("function=app.handlers.charge", "run_function_idx"),
        ("event_type=order:paid", "run_event_type_idx"),
        ("trigger=schedule", "run_trigger_idx"),
    ],
)
def test_each_runs_list_filter_reads_its_index(query, index):
    assert index in plan(first_page(Run.objects, RunFilterForm(QueryDict(query))))


@pytest.mark.parametrize(
    "query, index",
    [
        ("", "event_created_idx"),
        ("type=order:paid", "event_type_idx"),
        ("handled=no", "event_unhandled_idx"),
    ],
)
def test_each_events_list_filter_reads_its_index(query, index):
    assert index in plan(first_page(Event.objects, EventFilterForm(QueryDict(query))))


def test_the_sweeper_finds_unfinished_tasks_from_an_index_of_only_those():
    # runtime.tasks.settle_orphans: the unfinished tasks, whichever order the set's values take.
    for order in (sorted(TASK_TERMINAL_STATUSES), sorted(TASK_TERMINAL_STATUSES, reverse=True)):
        assert "task_unfinished_idx" in plan(Task.objects.exclude(status__in=order)[:500])
