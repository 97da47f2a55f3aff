"""Query building for the dashboard: filters, search and keyset pagination on (created_at, id)."""

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models
from django.db.models import (
    BooleanField,
    Count,
    F,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Sum,
    TextField,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce, Left, TruncMinute

from hotapp.search import EVENT_TEXT_SQL, RUN_TEXT_SQL, Search, like_pattern

# A free-text word PostgreSQL expects many rows to hold is looked for newest first along the
# (created_at, id) index. The planner takes the other filters to be independent of the word, so
# when they exclude every row that holds it ("card network", which only failed runs hold, under
# status=succeeded) that walk reads the whole table: 2 s at a million runs. Such a search reads
# at most SEARCH_WINDOW rows per page and links on from where it stopped. A rare word keeps the
# trigram index, which finds every match at once.
SEARCH_WINDOW = 20_000
BROAD_MATCHES = 5_000  # the planner's estimate for the rarest word above which we bound it

# What a list row shows (runs.html#run-row, events.html#event-row). Payloads, results and
# tracebacks may be a megabyte each: a row's own page reads them, a list of 50 does not.
RUN_LIST_FIELDS = (
    "id",
    "function",
    "trigger",
    "event_type",
    "status",
    "attempt",
    "is_superseded",
    "rerun_of_id",
    "cancel_requested_at",
    "wait_reason",
    "available_at",
    "created_at",
    "started_at",
    "finished_at",
)
EVENT_LIST_FIELDS = ("id", "type", "source_run_id", "stream_id", "is_handled", "created_at")
PREVIEW_CHARS = 200  # of an event's payload, as JSON text, in the events list

Cursor = tuple[datetime, Any]

# The status filter's values are the run statuses, where "failed" means the chains that need
# attention (their latest attempt failed, no retry pending), plus this one: every failed
# attempt, retried or not.
ALL_FAILED_ATTEMPTS = "failed_attempt"
# status_counts()' key for the failed attempts a later attempt of their chain made good.
RECOVERED = "recovered"


class KeysetQuerySet(models.QuerySet):
    search_fields: tuple[str, ...] = ()
    search_sql = ""

    def in_period_matching(self, filters: dict, with_words: bool = True) -> "KeysetQuerySet":
        """The since/until range and the search box, common to runs and events. List pages
        leave the free-text words to page(), which decides how to look for them."""
        qs = self
        if filters.get("since"):
            qs = qs.filter(created_at__gte=filters["since"])
        if filters.get("until"):
            qs = qs.filter(created_at__lt=filters["until"])
        search: Search | None = filters.get("q")
        if search:
            if not with_words:
                search = Search(pairs=search.pairs)
            qs = search.apply(qs, self.search_fields, self.search_sql)
        return qs

    def newest_first(self):
        return self.order_by("-created_at", "-id")

    def older_than(self, cursor: Cursor) -> "KeysetQuerySet":
        """The rows after `cursor` in newest-first order: a row comparison the (created_at, id)
        index seeks straight to."""
        meta = self.model._meta
        table = meta.db_table
        created_at = meta.get_field("created_at").get_db_prep_value(cursor[0], connection)
        row_id = meta.pk.get_db_prep_value(cursor[1], connection)
        return self.filter(
            RawSQL(
                f'("{table}"."created_at", "{table}"."id") < (%s, %s)',
                [created_at, row_id],
                BooleanField(),
            )
        )

    def page(
        self, after: Cursor | None, size: int, words: tuple[str, ...] = ()
    ) -> tuple[list, Cursor | None]:
        """Up to `size` rows newest first, older than the `after` cursor, holding every word;
        and the next page's cursor (None: no more). A bounded search may return a short page
        with a cursor: no more matches in its window, older rows not searched yet.

        A row comparison, not OFFSET: the (created_at, id) index seeks straight to the cursor.
        """
        qs = self.newest_first()
        if after is not None:
            qs = qs.older_than(after)
        if words and connection.vendor == "postgresql" and self._is_broad(words):
            rows = self._window_matches(qs, words, size + 1)
            if len(rows) <= size:  # the window is spent: go on from its oldest row
                return rows, self._window_edge(qs)
        else:
            if words:
                qs = Search(words=words).apply(qs, self.search_fields, self.search_sql)
            rows = list(qs[: size + 1])
        if len(rows) > size:
            return rows[:size], (rows[size - 1].created_at, rows[size - 1].id)
        return rows, None

    def _is_broad(self, words: tuple[str, ...]) -> bool:
        """Whether the planner expects even the rarest word in many rows (its estimate for all
        words together multiplies their shares as if independent, so use the rarest alone)."""
        estimates = []
        for word in words:
            alone = self.model.objects.filter(
                RawSQL(f"{self.search_sql} ILIKE %s", [like_pattern(word)], BooleanField())
            )
            estimates.append(json.loads(alone.explain(format="json"))[0]["Plan"]["Plan Rows"])
        return min(estimates) > BROAD_MATCHES

    def _window_matches(self, qs, words: tuple[str, ...], limit: int) -> list:
        """The newest rows holding every word among the first SEARCH_WINDOW rows of `qs`. The
        LIMIT inside the derived table makes PostgreSQL walk the index in order and stop."""
        table = self.model._meta.db_table
        # The words are matched on the payloads, so the window has every column; only the
        # columns `qs` loads (and its annotations) leave the database.
        inner, params = qs.defer(None)[:SEARCH_WINDOW].query.sql_with_params()
        deferred, is_defer = qs.query.deferred_loading
        columns = [
            f'"{table}"."{f.column}"'
            for f in self.model._meta.concrete_fields
            if f.primary_key or (f.attname not in deferred if is_defer else f.attname in deferred)
        ]
        columns += [f'"{table}"."{name}"' for name in qs.query.annotation_select]
        where = " AND ".join(f"{self.search_sql} ILIKE %s" for _ in words)
        rows = self.model.objects.raw(
            f'SELECT {", ".join(columns)} FROM ({inner}) AS "{table}" WHERE {where} '
            f'ORDER BY "{table}"."created_at" DESC, "{table}"."id" DESC LIMIT %s',
            [*params, *(like_pattern(w) for w in words), limit],
        )
        return list(rows.prefetch_related(*qs._prefetch_related_lookups))

    def _window_edge(self, qs) -> Cursor | None:
        """The oldest of the first SEARCH_WINDOW rows of `qs`, where the next window starts;
        None when no row is older. Not OFFSET: the window's keys come from an index-only scan
        that stops at the LIMIT, and the oldest of them is kept as they stream by (a top-1
        sort); whether anything is older is one index seek."""
        inner, params = qs.values_list("created_at", "id")[:SEARCH_WINDOW].query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT "created_at", "id" FROM ({inner}) AS "window" '
                'ORDER BY "created_at", "id" LIMIT 1',
                params,
            )
            edge = cursor.fetchone()
        # In the list's order, so the probe seeks along the index from the edge (exists() would
        # drop the ORDER BY, and with it the seek, when no older row matches).
        if edge is None or not qs.older_than(edge).values_list("id", flat=True)[:1]:
            return None
        return edge[0], edge[1]


class RunQuerySet(KeysetQuerySet):
    search_fields = ("input", "result")
    search_sql = RUN_TEXT_SQL

    def filtered(self, filters: dict, with_words: bool = True) -> "RunQuerySet":
        """Apply a RunFilterForm's cleaned data."""
        qs = self
        if filters.get("status"):
            qs = qs.with_status(filters["status"])
        if filters.get("function"):
            qs = qs.filter(function=filters["function"])
        if filters.get("event_type"):
            qs = qs.filter(event_type=filters["event_type"])
        if filters.get("trigger"):
            qs = qs.filter(trigger=filters["trigger"])
        return qs.in_period_matching(filters, with_words)

    def with_status(self, statuses: list[str]) -> "RunQuerySet":
        """The status filter: any of `statuses`, "failed" meaning needs attention and
        ALL_FAILED_ATTEMPTS every failed attempt."""
        wanted = set(statuses)
        if ALL_FAILED_ATTEMPTS in wanted:
            return self.filter(status__in=sorted((wanted - {ALL_FAILED_ATTEMPTS}) | {"failed"}))
        if "failed" in wanted:
            # Only failed attempts are ever superseded (run_superseded_only_if_failed), so this
            # drops the retried ones and no other status; alone it is run_attention_idx's query.
            return self.filter(status__in=sorted(wanted), is_superseded=False)
        return self.filter(status__in=sorted(wanted))

    def needs_attention(self) -> "RunQuerySet":
        """The latest attempts of chains that ended failed: failed, and not retried."""
        return self.filter(status="failed", is_superseded=False)

    def status_counts(self, since: datetime) -> dict[str, int]:
        """Runs created since `since` by status, "failed" counting the chains that need
        attention; ALL_FAILED_ATTEMPTS every failed attempt, and RECOVERED the failed attempts
        before each retry that succeeded (attempt n succeeded: n - 1 failed before it). One read
        of the window, as before the chain outcome was kept."""
        counts: dict[str, int] = {ALL_FAILED_ATTEMPTS: 0, RECOVERED: 0}
        rows = (
            self.filter(created_at__gte=since)
            .values_list("status", "is_superseded")
            .annotate(n=Count("id"), earlier=Sum(F("attempt") - 1))
            .order_by()
        )
        for status, is_superseded, n, earlier in rows:
            if status == "failed":
                counts[ALL_FAILED_ATTEMPTS] += n
                if is_superseded:
                    continue
            counts[status] = n
            if status == "succeeded":
                counts[RECOVERED] = earlier
        return counts

    def per_function_minute(self, since: datetime) -> list[dict]:
        """Runs, chains that need attention ("failed") and retried attempts ("superseded") per
        function and minute since `since` (created_at): the overview's charts, overall and per
        function, from one read of the window (run_created_idx)."""
        return list(
            self.filter(created_at__gte=since)
            .annotate(minute=TruncMinute("created_at"))
            .values("function", "minute")
            .annotate(
                total=Count("id"),
                failed=Count("id", filter=Q(status="failed", is_superseded=False)),
                superseded=Count("id", filter=Q(is_superseded=True)),
            )
            .order_by()
        )

    def recent_failures(self, limit: int = 10):
        """The newest chains that need attention (run_attention_idx)."""
        fields = (*RUN_LIST_FIELDS, "error_type", "error_message")
        return self.needs_attention().only(*fields).newest_first()[:limit]

    def for_list(self) -> "RunQuerySet":
        """Only the columns a list row shows."""
        return self.only(*RUN_LIST_FIELDS)

    def retryable(self) -> "RunQuerySet":
        """Failed runs a manual retry accepts: not a task's attempt, and not retried already
        (superseded by a later attempt of its chain)."""
        return self.filter(status="failed", is_superseded=False, task__isnull=True)

    def cancellable(self) -> "RunQuerySet":
        """Unfinished runs a cancel would change: not yet started, or running with no cancel
        request yet."""
        return self.filter(
            Q(status__in=["queued", "pending_retry"])
            | Q(status="running", cancel_requested_at__isnull=True)
        )


class EventQuerySet(KeysetQuerySet):
    search_fields = ("data",)
    search_sql = EVENT_TEXT_SQL

    def filtered(self, filters: dict, with_words: bool = True) -> "EventQuerySet":
        qs = self
        if filters.get("type"):
            qs = qs.filter(type=filters["type"])
        if filters.get("handled"):
            qs = qs.filter(is_handled=filters["handled"] == "yes")
        return qs.in_period_matching(filters, with_words)

    def for_list(self) -> "EventQuerySet":
        """Only what a list row shows: the start of the payload's text (`data_preview`), and
        for each run it triggered a badge's worth of columns."""
        from hotapp.models import Run  # hotapp.models builds its managers from this module

        runs = Run.objects.only("id", "event_id", "function", "status", "attempt")
        return (
            self.only(*EVENT_LIST_FIELDS)
            .annotate(data_preview=Left(Cast("data", TextField()), PREVIEW_CHARS))
            .prefetch_related(Prefetch("runs", queryset=runs.order_by("created_at", "id")))
        )


class TaskQuerySet(KeysetQuerySet):
    def filtered(self, filters: dict) -> "TaskQuerySet":
        """The tasks list's one filter, a status (checked by the caller)."""
        return self.filter(status=filters["status"]) if filters.get("status") else self

    def for_list(self) -> "TaskQuerySet":
        """With each row's attempts and checkpoints counted, per row shown, after the LIMIT (a
        GROUP BY over both joins would count every task's checkpoints times its runs before
        paging)."""
        from hotapp.models import Run, TaskCheckpoint

        def count(model) -> Coalesce:
            rows = model.objects.filter(task=OuterRef("pk")).order_by().values("task")
            return Coalesce(Subquery(rows.annotate(n=Count("*")).values("n")), 0)

        return self.annotate(checkpoint_count=count(TaskCheckpoint), attempt_count=count(Run))


def minutes_back(now: datetime, minutes: int) -> datetime:
    return (now - timedelta(minutes=minutes - 1)).replace(second=0, microsecond=0)


# Rows in one page of every dashboard list, and most rows a live update sends a page at once.
PAGE_SIZE = 50


def filtered_page(queryset: KeysetQuerySet, filters: dict, size: int) -> tuple[list, Cursor | None]:
    """One page of a list for a filter form's cleaned data: the pages' and the API's query."""
    return queryset.filtered(filters, with_words=False).page(
        filters["after"], size, filters["q"].words
    )
