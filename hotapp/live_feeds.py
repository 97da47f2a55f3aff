"""What each kind of live subscription follows (the protocol is in hotapp/consumers.py).

A feed reads the versions ("stamps") of the rows a page shows that changed since a moment, newest
first, in one query per watched table, from the index on the table's change stamp; a list's feed
also renders rows with the list's own row partial, the one its page renders them with. A row's
version is its `updated_at`; an event, which never changes, takes the newest `updated_at` of its
runs, so that its "runs" cell follows them.
"""

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, Model, QuerySet, TextField, Value
from django.db.models.functions import Cast, Coalesce
from django.http import QueryDict
from django.template.loader import render_to_string
from django.utils import timezone

from hotapp.filters import EventFilterForm, RunFilterForm, row_key
from hotapp.models import Event, Run, Task, TaskStatus
from hotapp.querysets import PAGE_SIZE

# (row id, version, whether the row matches the list's filters). Lists: the id is the row's
# element id ("run-<uuid>"); pages: "<model>:<uuid>".
Stamp = tuple[str, datetime, bool]


def parse_stamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def changed_rows(changed: QuerySet, matching: QuerySet | None, limit: int) -> QuerySet:
    """(id, updated_at, matches) of `changed`, newest first, at most `limit`; with a filtered
    list (`matching`: the list's query), the rows that match first, so that rows that stopped
    matching never crowd out rows to show."""
    if matching is None:
        rows = changed.annotate(is_match=Value(True)).order_by("-updated_at")
    else:
        # The list's own conditions as a column, read in the same pass over the changed rows
        # (no subquery: a search's raw SQL names the table, which a subquery would alias).
        condition = ExpressionWrapper(matching.query.where, output_field=BooleanField())
        rows = changed.annotate(is_match=Coalesce(condition, Value(False))).order_by(
            "-is_match", "-updated_at"
        )
    # As text: the database driver's timestamptz loader costs several times what parsing the
    # ISO text does, and this reads every row changed in the window.
    return rows.values_list("id", Cast("updated_at", TextField()), "is_match")[:limit]


class ListFeed:
    """A list page: newest first by (created_at, id), filtered by its query string."""

    kind = ""
    noun = ""  # the row's element id is "<noun>-<id>"
    template = ""
    page_size = PAGE_SIZE

    def prepare(self, content: dict) -> Any:
        """The filters of `content["query"]`; None when they are invalid (the page says why,
        and shows no rows to update)."""
        return self.filters(QueryDict(str(content.get("query", ""))))

    def filters(self, query: QueryDict) -> dict | None:
        raise NotImplementedError

    def stamps(self, filters: dict, since: datetime, limit: int) -> list[Stamp]:
        raise NotImplementedError

    def rows(self, ids: list[str]) -> Iterable[Model]:
        raise NotImplementedError

    def element(self, pk: uuid.UUID) -> str:
        return f"{self.noun}-{pk}"

    def render(self, elements: list[str]) -> dict[str, dict]:
        """Row fragments by element id: the HTML and the row's place in the list's order."""
        ids = [e.removeprefix(f"{self.noun}-") for e in elements]
        return {
            self.element(row.pk): {
                "id": self.element(row.pk),
                "key": row_key(row.created_at, row.pk),
                "html": render_to_string(self.template, {self.noun: row}),
            }
            for row in self.rows(ids)
        }

    def _stamps(self, rows: Iterable[tuple]) -> list[Stamp]:
        return [(self.element(i), parse_stamp(u), bool(m)) for i, u, m in rows]


class RunsFeed(ListFeed):
    kind, noun, template = "runs", "run", "hotapp/runs.html#run-row"

    def filters(self, query: QueryDict) -> dict | None:
        form = RunFilterForm(query)
        return {**form.cleaned_data, "after": None} if form.is_valid() else None

    def stamps(self, filters: dict, since: datetime, limit: int) -> list[Stamp]:
        return self._stamps(self.changed(filters, since, limit))

    def changed(self, filters: dict, since: datetime, limit: int) -> QuerySet:
        matching = Run.objects.filtered(filters) if any(filters.values()) else None
        return changed_rows(Run.objects.filter(updated_at__gte=since), matching, limit)

    def rows(self, ids: list[str]) -> Iterable[Model]:
        return Run.objects.for_list().filter(id__in=ids)


class TasksFeed(ListFeed):
    kind, noun, template = "tasks", "task", "hotapp/tasks.html#task-row"

    def filters(self, query: QueryDict) -> dict | None:
        status = query.get("status", "")
        return {"status": status} if not status or status in TaskStatus.values else None

    def stamps(self, filters: dict, since: datetime, limit: int) -> list[Stamp]:
        return self._stamps(self.changed(filters, since, limit))

    def changed(self, filters: dict, since: datetime, limit: int) -> QuerySet:
        # Every change of a task stamps its row (runtime.tasks), its attempts' included.
        matching = Task.objects.filtered(filters) if filters["status"] else None
        return changed_rows(Task.objects.filter(updated_at__gte=since), matching, limit)

    def rows(self, ids: list[str]) -> Iterable[Model]:
        return Task.objects.for_list().filter(id__in=ids)


class EventsFeed(ListFeed):
    kind, noun, template = "events", "event", "hotapp/events.html#event-row"

    def filters(self, query: QueryDict) -> dict | None:
        form = EventFilterForm(query)
        return {**form.cleaned_data, "after": None} if form.is_valid() else None

    def stamps(self, filters: dict, since: datetime, limit: int) -> list[Stamp]:
        """New events, and events whose runs changed, that match the filters; in one statement.
        An event never changes, so it never stops matching: no row is ever gone."""
        with connection.cursor() as cursor:
            cursor.execute(*self.changed(filters, since, limit))
            # SQLite returns the ids as 32 hex digits: the element ids have the dashes.
            rows = cursor.fetchall()
            return self._stamps(
                [(i if isinstance(i, uuid.UUID) else uuid.UUID(i), u, True) for i, u in rows]
            )

    def changed(self, filters: dict, since: datetime, limit: int) -> tuple[str, list]:
        """The statement: (id, newest stamp) per event."""
        events = Event.objects.filtered(filters)
        new = events.filter(created_at__gte=since).values_list("id", "created_at")
        # From the events' side, so that the filters (a search's raw SQL included) apply to
        # the event as on the page; the planner starts from the few runs changed (run_updated_idx)
        # and looks their events up by key.
        touched = events.filter(runs__updated_at__gte=since).values_list("id", "runs__updated_at")
        sql, params = new.union(touched, all=True).query.sql_with_params()
        return (
            f'SELECT "id", CAST(MAX("created_at") AS TEXT) FROM ({sql}) AS "changed" '
            'GROUP BY "id" ORDER BY MAX("created_at") DESC LIMIT %s',
            [*params, limit],
        )

    def rows(self, ids: list[str]) -> Iterable[Model]:
        return Event.objects.for_list().filter(id__in=ids)


class PageFeed:
    """A run's or a task's page: told to fetch its own fragment again when any row it shows
    changed (the fragment holds the session's CSRF token and permissions)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def prepare(self, content: dict) -> list[tuple[type[Model], dict]]:
        """The rows the page shows, as (model, filter) pairs; LookupError for an unknown one."""
        try:
            pk = uuid.UUID(str(content.get("key")))
        except ValueError:
            raise LookupError(f"Unknown {self.kind}.") from None
        if self.kind == "run":
            stream = Run.objects.filter(id=pk).values_list("stream_id", flat=True).first()
            if stream is None:
                raise LookupError("Unknown run.")
            return [(Run, {"stream_id": stream})]  # the lineage graph: its whole workflow
        if not Task.objects.filter(id=pk).exists():
            raise LookupError("Unknown task.")
        return [(Task, {"id": pk}), (Run, {"task_id": pk})]

    def stamps(self, watched: list, since: datetime, limit: int) -> list[Stamp]:
        stamps = []
        for model, where in watched:
            changed = model.objects.filter(updated_at__gte=since, **where)
            name = model._meta.model_name
            stamps += [
                (f"{name}:{i}", parse_stamp(u), True)
                for i, u, _ in changed_rows(changed, None, limit)
            ]
        return sorted(stamps, key=lambda s: s[1], reverse=True)


FEEDS: dict[str, ListFeed | PageFeed] = {
    feed.kind: feed
    for feed in (RunsFeed(), EventsFeed(), TasksFeed(), PageFeed("run"), PageFeed("task"))
}
