"""Query building for the dashboard: filters, search and keyset pagination on (created_at, id)."""

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models
from django.db.models import BooleanField, Count, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncMinute

from hotapp.search import EVENT_TEXT_SQL, RUN_TEXT_SQL, Search, like_pattern

# A free-text word PostgreSQL expects many rows to hold is looked for newest first along the
# (created_at, id) index. The planner takes the other filters to be independent of the word, so
# when they exclude every row that holds it ("card network", which only failed runs hold, under
# status=succeeded) that walk reads the whole table: 2 s at a million runs. Such a search reads
# at most SEARCH_WINDOW rows per page and links on from where it stopped. A rare word keeps the
# trigram index, which finds every match at once.
SEARCH_WINDOW = 20_000
BROAD_MATCHES = 5_000  # the planner's estimate for the rarest word above which we bound it

Cursor = tuple[datetime, Any]


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
            meta = self.model._meta
            table = meta.db_table
            created_at = meta.get_field("created_at").get_db_prep_value(after[0], connection)
            row_id = meta.pk.get_db_prep_value(after[1], connection)
            qs = qs.filter(
                RawSQL(
                    f'("{table}"."created_at", "{table}"."id") < (%s, %s)',
                    [created_at, row_id],
                    BooleanField(),
                )
            )
        if words and connection.vendor == "postgresql" and self._is_broad(words):
            rows = self._window_matches(qs, words, size + 1)
            if len(rows) <= size:  # the window is spent: go on from its oldest row
                edge = list(qs.values_list("created_at", "id")[SEARCH_WINDOW - 1 : SEARCH_WINDOW])
                return rows, (edge[0] if edge else None)
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
        inner, params = qs[:SEARCH_WINDOW].query.sql_with_params()
        where = " AND ".join(f"{self.search_sql} ILIKE %s" for _ in words)
        rows = self.model.objects.raw(
            f'SELECT * FROM ({inner}) AS "{table}" WHERE {where} '
            f'ORDER BY "{table}"."created_at" DESC, "{table}"."id" DESC LIMIT %s',
            [*params, *(like_pattern(w) for w in words), limit],
        )
        return list(rows.prefetch_related(*qs._prefetch_related_lookups))


class RunQuerySet(KeysetQuerySet):
    search_fields = ("input", "result")
    search_sql = RUN_TEXT_SQL

    def filtered(self, filters: dict, with_words: bool = True) -> "RunQuerySet":
        """Apply a RunFilterForm's cleaned data."""
        qs = self
        if filters.get("status"):
            qs = qs.filter(status__in=filters["status"])
        if filters.get("function"):
            qs = qs.filter(function=filters["function"])
        if filters.get("event_type"):
            qs = qs.filter(event_type=filters["event_type"])
        if filters.get("trigger"):
            qs = qs.filter(trigger=filters["trigger"])
        return qs.in_period_matching(filters, with_words)

    def status_counts(self, since: datetime) -> dict[str, int]:
        rows = self.filter(created_at__gte=since).values_list("status").annotate(n=Count("id"))
        return dict(rows)

    def per_minute(self, since: datetime) -> list[dict]:
        """Runs and failures per minute since `since` (created_at), oldest first."""
        return list(
            self.filter(created_at__gte=since)
            .annotate(minute=TruncMinute("created_at"))
            .values("minute")
            .annotate(total=Count("id"), failed=Count("id", filter=Q(status="failed")))
            .order_by("minute")
        )

    def per_function(self, since: datetime) -> list[dict]:
        rows = (
            self.filter(created_at__gte=since)
            .values("function")
            .annotate(total=Count("id"), failed=Count("id", filter=Q(status="failed")))
            .order_by("-total")
        )
        return [dict(row, failure_rate=row["failed"] / row["total"]) for row in rows]

    def recent_failures(self, limit: int = 10):
        return self.filter(status="failed").newest_first()[:limit]


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


def minutes_back(now: datetime, minutes: int) -> datetime:
    return (now - timedelta(minutes=minutes - 1)).replace(second=0, microsecond=0)


def filtered_page(queryset: KeysetQuerySet, filters: dict, size: int) -> tuple[list, Cursor | None]:
    """One page of a list for a filter form's cleaned data: the pages' and the API's query."""
    return queryset.filtered(filters, with_words=False).page(
        filters["after"], size, filters["q"].words
    )
