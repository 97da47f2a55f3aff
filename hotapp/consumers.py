"""Live updates for Hot App over a websocket.

The channel-layer message (`runs.changed`, from runtime/live.py) is a doorbell without data. On
each ring a connection reads the runs that changed since its cursor (Run.updated_at) from the
database, at most once per THROTTLE seconds, and sends:

- on the runs list: the newest changed rows that match the page's filters, at most MAX_ROWS,
  rendered with the list's own row template, and the ids of changed rows that no longer match.
  Rows it already sent (unchanged since) are not sent again. When more changed than one batch
  holds, the message says `more` and the connection checks again THROTTLE seconds later without
  waiting for a ring, newest first, until the backlog is sent or older than the OVERLAP window;
  so at any rate a browser gets at most MAX_ROWS rows per THROTTLE seconds and still ends up
  with the newest state once a burst is over;
- on a run's page: a `run` notice when anything in the run's workflow changed, and on a task's
  page a `task` notice when the task, its attempts, checkpoints or messages changed; the page
  then fetches its own fragment (with its session's permissions and CSRF token).

A reconnecting page subscribes again with its last cursor and gets everything it missed.
"""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import TextField
from django.db.models.functions import Cast
from django.http import QueryDict
from django.template.loader import render_to_string
from django.utils import timezone

from hotapp.filters import RunFilterForm
from hotapp.models import Run, Task
from hotapp.views import PAGE_SIZE
from runtime.live import GROUP

THROTTLE = 0.1
# Transactions commit out of updated_at order; re-reading a little behind the cursor catches a
# row stamped just before the cursor but committed just after it.
OVERLAP = timedelta(seconds=2)
# A batch is at most one page: the first page keeps no more rows than that.
MAX_ROWS = PAGE_SIZE


def _stamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def _parse_time(text: object) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(text))
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    except ValueError:
        return timezone.now()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.subscription: dict | None = None
        self.cursor = timezone.now()
        self.sent: dict[str, datetime] = {}  # run id (or "page") -> updated_at last sent
        self.last_flush = 0.0
        self.is_check_due = False
        self.flush_task: asyncio.Task | None = None
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "flush_task", None):
            self.flush_task.cancel()
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        kind = content.get("subscribe")
        if kind == "runs":
            self.subscription = {"kind": "runs", "query": str(content.get("query", ""))}
        elif kind in ("run", "task"):
            watched = await self.watched_rows(kind, content.get(kind))
            if watched is None:
                await self.send_json({"type": "error", "message": f"Unknown {kind}."})
                return
            self.subscription = {"kind": kind, "watched": watched}
        else:
            await self.send_json({"type": "error", "message": "Unknown subscription."})
            return
        self.cursor = _parse_time(content.get("cursor")) if content.get("cursor") else self.cursor
        self.sent.clear()
        if kind in ("run", "task"):
            # The page was rendered from this state: a change is news only if it is newer.
            self.sent["page"] = self.cursor
        await self.flush()  # catch up on anything missed before (re)connecting

    async def runs_changed(self, message) -> None:
        """The doorbell: coalesce rings into at most one check per THROTTLE seconds."""
        self.check_soon()

    def check_soon(self) -> None:
        if self.subscription is None or self.is_check_due:
            return
        self.is_check_due = True
        delay = max(0.0, self.last_flush + THROTTLE - time.monotonic())
        self.flush_task = asyncio.ensure_future(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        # A ring from now on may be for a commit this check's read does not see: it gets a check
        # of its own rather than being dropped.
        self.is_check_due = False
        await self.flush()

    async def flush(self) -> None:
        self.last_flush = time.monotonic()
        if self.subscription is None:
            return
        if self.subscription["kind"] == "runs":
            payload = await self.runs_changes()
        else:
            payload = await self.page_changes()
        if payload:
            await self.send_json(payload)
            if payload.get("more"):
                self.check_soon()  # no ring may come after the end of a burst

    @database_sync_to_async
    def watched_rows(self, kind: str, key: object) -> list[tuple[str, dict]] | None:
        """The rows whose changes a run or task page shows: (model name, filter) pairs."""
        try:
            pk = uuid.UUID(str(key))
        except ValueError:
            return None
        if kind == "run":
            stream = Run.objects.filter(id=pk).values_list("stream_id", flat=True).first()
            return None if stream is None else [("run", {"stream_id": stream})]
        if not Task.objects.filter(id=pk).exists():
            return None
        return [("task", {"id": pk}), ("run", {"task_id": pk})]

    @database_sync_to_async
    def page_changes(self) -> dict | None:
        """A notice when anything a run's or task's page shows changed past the cursor."""
        assert self.subscription is not None
        since = self.cursor - OVERLAP
        models = {"run": Run, "task": Task}
        stamps = [
            models[name]
            .objects.filter(updated_at__gte=since, **where)
            .order_by("-updated_at")
            .values_list("updated_at", flat=True)
            .first()
            for name, where in self.subscription["watched"]
        ]
        latest = max((s for s in stamps if s is not None), default=None)
        if latest is None or latest == self.sent.get("page"):
            return None
        self.sent["page"] = latest
        self.cursor = max(self.cursor, latest)
        return {"type": self.subscription["kind"], "cursor": self.cursor.isoformat()}

    def unsent(self, changed) -> tuple[list[tuple[str, datetime]], bool]:
        """The newest of `changed` not sent yet as they are now, at most MAX_ROWS, and whether
        more are waiting. The LIMIT leaves room for every row already sent, so re-reading the
        OVERLAP window never takes a place in the batch."""
        # As text: the database driver's timestamptz loader costs several times what parsing
        # the ISO text does, and this reads every row changed in the window.
        stamps = changed.order_by("-updated_at").values_list("id", Cast("updated_at", TextField()))[
            : MAX_ROWS + 1 + len(self.sent)
        ]
        fetched = [(str(i), _stamp(u)) for i, u in stamps]
        fresh = [(i, u) for i, u in fetched if self.sent.get(i) != u]
        if fetched:
            self.cursor = max(self.cursor, fetched[0][1])
        return fresh[:MAX_ROWS], len(fresh) > MAX_ROWS

    @database_sync_to_async
    def runs_changes(self) -> dict | None:
        assert self.subscription is not None
        form = RunFilterForm(QueryDict(self.subscription["query"]))
        if not form.is_valid():
            return None
        filters = {**form.cleaned_data, "after": None}
        since = self.cursor - OVERLAP
        self.sent = {i: u for i, u in self.sent.items() if u >= since}  # the rest is not re-read
        changed = Run.objects.filter(updated_at__gte=since)
        matching = Run.objects.filtered(filters).filter(updated_at__gte=since)
        fresh, more = self.unsent(matching)
        gone: list[tuple[str, datetime]] = []
        if any(filters.values()):
            gone, more_gone = self.unsent(changed.exclude(pk__in=matching.values("pk")))
            more = more or more_gone
        if not fresh and not gone:
            return None
        self.sent.update(fresh)
        self.sent.update(gone)
        runs = (
            Run.objects.for_list().filter(id__in=[i for i, _ in fresh]).order_by("created_at", "id")
        )
        rows = [
            {
                "id": str(run.id),
                "created_at": run.created_at.isoformat(),
                "html": render_to_string("hotapp/runs.html#run-row", {"run": run}),
            }
            for run in runs
        ]
        return {
            "type": "runs",
            "rows": rows,
            "gone": sorted(i for i, _ in gone),
            "more": more,
            # The first page keeps as many rows as its view renders.
            "page_size": PAGE_SIZE,
            "cursor": self.cursor.isoformat(),
        }
