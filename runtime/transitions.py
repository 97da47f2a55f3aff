"""The one way run rows change state: a conditional UPDATE that stamps updated_at and, once
committed, tells the dashboards."""

from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

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
