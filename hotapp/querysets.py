"""Query building for the dashboard: filters, search and keyset pagination on (created_at, id)."""

from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models
from django.db.models import BooleanField, Count, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncMinute

from hotapp.search import EVENT_TEXT_SQL, RUN_TEXT_SQL, Search


class KeysetQuerySet(models.QuerySet):
    def in_period_matching(
        self, filters: dict, json_fields: tuple[str, ...], text_sql: str
    ) -> "KeysetQuerySet":
        """The since/until range and the search box, common to runs and events."""
        qs = self
        if filters.get("since"):
            qs = qs.filter(created_at__gte=filters["since"])
        if filters.get("until"):
            qs = qs.filter(created_at__lt=filters["until"])
        search: Search | None = filters.get("q")
        if search:
            qs = search.apply(qs, json_fields, text_sql)
        return qs

    def newest_first(self):
        return self.order_by("-created_at", "-id")

    def page(self, after: tuple[datetime, Any] | None, size: int) -> tuple[list, Any]:
        """Up to `size` rows newest first, older than the `after` cursor; and whether more exist.

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
        rows = list(qs[: size + 1])
        return rows[:size], len(rows) > size


class RunQuerySet(KeysetQuerySet):
    def filtered(self, filters: dict) -> "RunQuerySet":
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
        return qs.in_period_matching(filters, ("input", "result"), RUN_TEXT_SQL)

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
    def filtered(self, filters: dict) -> "EventQuerySet":
        qs = self
        if filters.get("type"):
            qs = qs.filter(type=filters["type"])
        if filters.get("handled"):
            qs = qs.filter(is_handled=filters["handled"] == "yes")
        return qs.in_period_matching(filters, ("data",), EVENT_TEXT_SQL)


def minutes_back(now: datetime, minutes: int) -> datetime:
    return (now - timedelta(minutes=minutes - 1)).replace(second=0, microsecond=0)
