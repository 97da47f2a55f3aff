"""The one way run rows change state: a conditional UPDATE that stamps updated_at and, once
committed, tells the dashboards."""

from collections.abc import Sequence
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from hotapp.models import Run
from runtime.live import runs_changed


def transition(runs: QuerySet, *, now: datetime | None = None, **fields) -> int:
    """UPDATE `runs` (already filtered on the state the change requires) and return the row count.

    The filter is the guard against races: of two actors moving the same run, only the one whose
    UPDATE still matches the expected state changes it.
    """
    changed = runs.update(updated_at=now or timezone.now(), **fields)
    if changed:
        runs_changed()
    return changed


def write_claimed(runs: Sequence[Run], fields: list[str], now: datetime) -> None:
    """Write the changed `fields` of several runs in one UPDATE (CASE per column).

    For rows the caller has locked (SELECT … FOR UPDATE) and checked to be in the expected
    state inside the same transaction: the lock, not the UPDATE's filter, is the guard here.
    """
    for run in runs:
        run.updated_at = now
    Run.objects.bulk_update(runs, [*fields, "updated_at"])
    runs_changed()
