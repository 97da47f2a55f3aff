"""The one way run rows change state: a conditional UPDATE that stamps updated_at and, once
committed, tells the dashboards."""

from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from hotapp.models import Run, RunStatus
from runtime import alerts
from runtime.live import runs_changed


def transition(runs: QuerySet, *, now: datetime | None = None, **fields) -> int:
    """UPDATE `runs` (already filtered on the state the change requires) and return the row count.

    The filter is the guard against races: of two actors moving the same run, only the one whose
    UPDATE still matches the expected state changes it.
    """
    now = now or timezone.now()
    # A run ending failed or cancelled raises its alerts in the same transaction (an outbox).
    with alerts.recording(fields):
        changed = runs.update(updated_at=now, **fields)
        if changed:
            alerts.record_transition(now, fields)
    if changed:
        runs_changed()
    return changed


def write_claimed(runs: Sequence[Run], fields: list[str], token: str, now: datetime) -> set:
    """Write each run's own values of `fields` in one UPDATE … FROM (VALUES …), only where the
    row is still running under the claim `token`; returns the ids of the rows it changed.

    One statement for a whole batch, with no per-row ORM expressions (bulk_update builds a
    CASE per row and column). The VALUES list's columns are column1, column2, … on both
    PostgreSQL and SQLite; PostgreSQL needs each value cast to its column's type.
    """
    if not runs:
        return set()
    meta = Run._meta
    table = connection.ops.quote_name(meta.db_table)
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    cast = connection.vendor == "postgresql"
    row = "(" + ", ".join(f"%s::{c.db_type(connection)}" if cast else "%s" for c in columns) + ")"
    assignments = ", ".join(
        f"{connection.ops.quote_name(c.column)} = v.column{i}" for i, c in enumerate(columns[1:], 2)
    )
    params: list = [meta.get_field("updated_at").get_db_prep_value(now, connection)]
    for run in runs:
        params.extend(c.get_db_prep_value(getattr(run, c.attname), connection) for c in columns)
    sql = (
        f"UPDATE {table} SET {assignments}, updated_at = %s "
        f"FROM (VALUES {', '.join([row] * len(runs))}) AS v "
        f"WHERE {table}.id = v.column1 AND {table}.status = %s AND {table}.claimed_by = %s "
        f"RETURNING {table}.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, str(RunStatus.RUNNING), token])
        changed = {meta.pk.to_python(value) for (value,) in cursor.fetchall()}
    if changed:
        runs_changed()
        alerts.record_claimed(runs, changed)
    return changed
