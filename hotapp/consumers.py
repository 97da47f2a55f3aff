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
- on a run's page: a `run` notice when anything in the run's workflow changed, on a task's
  page a `task` notice when the task, its attempts, checkpoints or messages changed, and on the
  tasks list a `tasks` notice when any task changed; the page then fetches its own fragment
  (with its session's permissions and CSRF token).

Each subscription carries the page's id for it (`sub`), echoed in every message: a check made
for an older subscription (a filter the user just changed) is dropped, by the consumer and by
the page. A reconnecting page subscribes again with its last cursor and gets everything it
missed, as long as that is at most MAX_CATCH_UP ago; a page further behind is told to reload
(the runs list reloads its region, a run or task page its fragment), so that no cursor, stale
or crafted, makes a check read more than that much of the table.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import TextField
from django.db.models.functions import Cast
from django.http import QueryDict
from django.template.loader import render_to_string
from django.utils import timezone

from hotapp.auth import VIEW
from hotapp.filters import RunFilterForm
from hotapp.models import Run, Task
from hotapp.views import PAGE_SIZE
from runtime.live import GROUP, serving_websockets

THROTTLE = 0.1
# Transactions commit out of updated_at order; re-reading a little behind the cursor catches a
# row stamped just before the cursor but committed just after it.
OVERLAP = timedelta(seconds=2)
# A batch is at most one page: the first page keeps no more rows than that.
MAX_ROWS = PAGE_SIZE
# The furthest back a page may catch up from. Longer than a reconnect's backoff (15 s at most)
# so a dropped connection catches up in place; a tab woken from sleep reloads instead. The
# filtered list's "gone" check reads every row changed in the window, so this bounds it.
MAX_CATCH_UP = timedelta(seconds=60)


def _stamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def _parse_time(text: object) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(text))
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    except ValueError:
        return timezone.now()


@dataclass
class Subscription:
    """What one page follows and what it has been sent. A new subscription starts afresh: a
    check still running for the one before changes only that one's state."""

    kind: str  # "runs" | "run" | "task" | "tasks"
    id: Any  # the page's id for it, echoed in every message
    cursor: datetime
    query: str = ""  # runs: the list's filters, as a query string
    watched: list[tuple[str, dict]] = field(default_factory=list)  # pages: (model, filter)
    # "model:id" (runs: id) -> updated_at last sent (runs) or shown (other pages).
    sent: dict[str, datetime] = field(default_factory=dict)
    # Other pages: the first check takes rows stamped up to the cursor as shown (the page was
    # rendered from them); false on a reconnect, which may have missed any of them.
    is_rendered_state: bool = False


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(user.has_perm)(VIEW):
            await self.close(code=4403)  # logged in, but may not see the dashboard
            return
        serving_websockets(asyncio.get_running_loop())
        self.subscription: Subscription | None = None
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
        kind, sub_id = content.get("subscribe"), content.get("sub")
        now = timezone.now()
        cursor = min(now, _parse_time(content["cursor"])) if content.get("cursor") else now
        is_behind = cursor < now - MAX_CATCH_UP
        if is_behind:
            cursor = now  # the reload below shows everything up to now
        if kind == "runs":
            sub = Subscription("runs", sub_id, cursor, query=str(content.get("query", "")))
        elif kind in ("run", "task", "tasks"):
            watched = await self.watched_rows(kind, content.get(kind))
            if watched is None:
                await self.send_json(
                    {"type": "error", "message": f"Unknown {kind}.", "sub": sub_id}
                )
                return
            rendered = is_behind or not content.get("resume")
            sub = Subscription(kind, sub_id, cursor, watched=watched, is_rendered_state=rendered)
        else:
            await self.send_json(
                {"type": "error", "message": "Unknown subscription.", "sub": sub_id}
            )
            return
        self.subscription = sub
        if is_behind:
            notice = "reload" if kind == "runs" else kind
            await self.send_json({"type": notice, "sub": sub_id, "cursor": cursor.isoformat()})
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
        sub = self.subscription
        if sub is None:
            return
        if sub.kind == "runs":
            payload = await self.runs_changes(sub)
        else:
            payload = await self.page_changes(sub)
        # The page may have subscribed anew while this check ran: its result is for the old one.
        if payload and sub is self.subscription:
            await self.send_json({**payload, "sub": sub.id})
            if payload.get("more"):
                self.check_soon()  # no ring may come after the end of a burst

    @database_sync_to_async
    def watched_rows(self, kind: str, key: object) -> list[tuple[str, dict]] | None:
        """The rows whose changes a page shows: (model name, filter) pairs."""
        if kind == "tasks":
            return [("task", {})]  # every change of a task stamps its row (runtime.tasks)
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
    def page_changes(self, sub: Subscription) -> dict | None:
        """A notice when any row a run's or task's page shows changed since it was last seen.
        Row by row, as on the runs list: a row stamped before the newest one seen may commit
        after it (two workers of a fan-out) and is news all the same."""
        since = sub.cursor - OVERLAP
        sub.sent = {k: u for k, u in sub.sent.items() if u >= since}  # the rest is not re-read
        models = {"run": Run, "task": Task}
        stamps: list[tuple[str, datetime]] = []
        for name, where in sub.watched:
            # The newest len(sent) + 1 rows hold one not seen as it is now, if there is one.
            rows = (
                models[name]
                .objects.filter(updated_at__gte=since, **where)
                .order_by("-updated_at")
                .values_list("id", Cast("updated_at", TextField()))[: len(sub.sent) + 1]
            )
            stamps += [(f"{name}:{i}", _stamp(u)) for i, u in rows]
        if sub.is_rendered_state:
            sub.sent.update((k, u) for k, u in stamps if u <= sub.cursor)
            sub.is_rendered_state = False
        if all(sub.sent.get(k) == u for k, u in stamps):
            return None
        sub.sent.update(stamps)
        sub.cursor = max(sub.cursor, *(u for _, u in stamps))
        return {"type": sub.kind, "cursor": sub.cursor.isoformat()}

    def unsent(self, sub: Subscription, changed) -> tuple[list[tuple[str, datetime]], bool]:
        """The newest of `changed` not sent yet as they are now, at most MAX_ROWS, and whether
        more are waiting. The LIMIT leaves room for every row already sent, so re-reading the
        OVERLAP window never takes a place in the batch."""
        # As text: the database driver's timestamptz loader costs several times what parsing
        # the ISO text does, and this reads every row changed in the window.
        stamps = changed.order_by("-updated_at").values_list("id", Cast("updated_at", TextField()))[
            : MAX_ROWS + 1 + len(sub.sent)
        ]
        fetched = [(str(i), _stamp(u)) for i, u in stamps]
        fresh = [(i, u) for i, u in fetched if sub.sent.get(i) != u]
        if fetched:
            sub.cursor = max(sub.cursor, fetched[0][1])
        return fresh[:MAX_ROWS], len(fresh) > MAX_ROWS

    @database_sync_to_async
    def runs_changes(self, sub: Subscription) -> dict | None:
        form = RunFilterForm(QueryDict(sub.query))
        if not form.is_valid():
            return None
        filters = {**form.cleaned_data, "after": None}
        since = sub.cursor - OVERLAP
        sub.sent = {i: u for i, u in sub.sent.items() if u >= since}  # the rest is not re-read
        changed = Run.objects.filter(updated_at__gte=since)
        matching = Run.objects.filtered(filters).filter(updated_at__gte=since)
        fresh, more = self.unsent(sub, matching)
        gone: list[tuple[str, datetime]] = []
        if any(filters.values()):
            gone, more_gone = self.unsent(sub, changed.exclude(pk__in=matching.values("pk")))
            more = more or more_gone
        if not fresh and not gone:
            return None
        sub.sent.update(fresh)
        sub.sent.update(gone)
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
            "cursor": sub.cursor.isoformat(),
        }
