"""Live updates for Hot App over a websocket.

The channel-layer message (`runs.changed`, from runtime/live.py) is a doorbell without data. On
each ring a connection reads the runs that changed since its cursor (Run.updated_at) from the
database, at most once per THROTTLE seconds, and sends:

- on the runs list: the changed rows that match the page's filters, rendered with the list's own
  row template, and the ids of changed rows that no longer match; past MAX_ROWS changes in one
  window it sends an `overflow` notice instead, so a browser never gets more than a bounded batch;
- on a run's page: a `run` notice when anything in the run's workflow changed, and on a task's
  page a `task` notice when the task, its attempts, checkpoints or messages changed; the page
  then fetches its own fragment (with its session's permissions and CSRF token).

A reconnecting page subscribes again with its last cursor and gets everything it missed.
"""

import asyncio
import time
import uuid
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import QueryDict
from django.template.loader import render_to_string
from django.utils import timezone

from hotapp.filters import RunFilterForm
from hotapp.models import Run, Task
from runtime.live import GROUP

THROTTLE = 0.25
# Transactions commit out of updated_at order; re-reading a little behind the cursor catches a
# row stamped just before the cursor but committed just after it.
OVERLAP = timedelta(seconds=2)
MAX_ROWS = 100


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
        # After an overflow the page reloads itself: nothing older than this needs sending.
        self.floor: datetime | None = None
        self.sent: dict[str, str] = {}  # run id -> updated_at last sent
        self.last_flush = 0.0
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
        self.floor = None
        self.sent.clear()
        if kind in ("run", "task"):
            # The page was rendered from this state: a change is news only if it is newer.
            self.sent["page"] = self.cursor.isoformat()
        await self.flush()  # catch up on anything missed before (re)connecting

    async def runs_changed(self, message) -> None:
        """The doorbell: coalesce rings into at most one flush per THROTTLE seconds."""
        if self.subscription is None or (self.flush_task and not self.flush_task.done()):
            return
        delay = max(0.0, self.last_flush + THROTTLE - time.monotonic())
        self.flush_task = asyncio.ensure_future(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
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
        if latest is None or latest.isoformat() == self.sent.get("page"):
            return None
        self.sent["page"] = latest.isoformat()
        self.cursor = max(self.cursor, latest)
        return {"type": self.subscription["kind"], "cursor": self.cursor.isoformat()}

    @database_sync_to_async
    def runs_changes(self) -> dict | None:
        assert self.subscription is not None
        form = RunFilterForm(QueryDict(self.subscription["query"]))
        if not form.is_valid():
            return None
        filters = {**form.cleaned_data, "after": None}
        since = self.cursor - OVERLAP
        if self.floor is not None:
            since = max(since, self.floor)
        changed = list(
            Run.objects.filter(updated_at__gte=since)
            .order_by("updated_at")
            .values_list("id", "updated_at")[: MAX_ROWS + 1]
        )
        if len(changed) > MAX_ROWS:
            # Too much at once for a browser: skip ahead and let the page refresh itself.
            self.cursor = self.floor = timezone.now()
            self.sent.clear()
            return {"type": "overflow", "cursor": self.cursor.isoformat()}
        fresh = {
            str(i): u.isoformat() for i, u in changed if self.sent.get(str(i)) != u.isoformat()
        }
        if changed:
            self.cursor = max(self.cursor, changed[-1][1])
        if not fresh:
            return None
        self.sent.update(fresh)
        if len(self.sent) > 5000:
            self.sent = dict(list(self.sent.items())[-2000:])
        matching = list(
            Run.objects.filtered(filters).filter(id__in=list(fresh)).order_by("created_at", "id")
        )
        rows = [
            {
                "id": str(run.id),
                "created_at": run.created_at.isoformat(),
                "html": render_to_string("hotapp/runs.html#run-row", {"run": run}),
            }
            for run in matching
        ]
        gone = sorted(set(fresh) - {row["id"] for row in rows})
        return {"type": "runs", "rows": rows, "gone": gone, "cursor": self.cursor.isoformat()}
