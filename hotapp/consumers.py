"""Live updates for Hot App over a websocket: one protocol for every page.

A page subscribes to what it shows, and the server works out what changed for it:

    → {"subscribe": "runs" | "events" | "tasks" | "run" | "task", "sub": <the page's id for it>,
       "query": <a list's filters, as its URL's query string>, "key": <a run's or task's id>,
       "cursor": <the last cursor the server sent, or the page's render time>,
       "resume": <true when the cursor is the server's rather than the page's render time>}
    ← {"type": "update", "sub", "cursor", "rows": [{"id": <element id>, "key": <the row's
       place in the list's order, as text that sorts like it>, "html"}], "gone": [<element ids
       that no longer match the filters>], "more": <more changed than one batch holds>,
       "page_size": <rows the list's first page keeps>}        (lists)
    ← {"type": "reload", "sub", "cursor"}     (fetch your region again: a run or task page when
                                               anything it shows changed; any page too far behind)
    ← {"type": "error", "sub", "message"}

The page only puts rows where their key says and replaces them by id; the ordering, the filters
and the cursors are the server's (hotapp/live_feeds.py reads them).

The channel-layer message (`runs.changed`, from runtime/live.py) is a doorbell without data,
rung when runs, tasks or events commit. A process keeps one Hub for its connections: on a ring
it checks, at most once per THROTTLE seconds, each group of subscriptions that follow the same
thing (a list with the same filters, one run's page) with one read of what changed since the
group's oldest cursor, renders each changed row once, and sends each subscription what it has
not been sent yet:
- on a list: the newest changed rows that match the filters, at most MAX_ROWS, and the ids of
  changed rows that no longer match. When more changed than one batch holds, the message says
  `more` and the group is checked again THROTTLE seconds later without waiting for a ring,
  newest first, until the backlog is sent or older than the OVERLAP window; so at any rate a
  browser gets at most MAX_ROWS rows per THROTTLE seconds and still ends up with the newest
  state once a burst is over;
- on a run's or task's page: `reload` when any row it shows changed since it was last told.

Each subscription carries the page's id for it (`sub`), echoed in every message: a check made
for an older subscription (a filter the user just changed) is dropped, by the server and by the
page. A reconnecting page subscribes again with its last cursor and gets everything it missed,
as long as that is at most MAX_CATCH_UP ago; a page further behind is told to reload, so that
no cursor, stale or crafted, makes a check read more than that much of the table.
"""

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from hotapp.auth import VIEW
from hotapp.live_feeds import FEEDS, ListFeed, PageFeed, Stamp
from hotapp.querysets import PAGE_SIZE
from runtime.live import GROUP, serving_websockets

logger = logging.getLogger(__name__)

THROTTLE = 0.1
# Transactions commit out of updated_at order; re-reading a little behind the cursor catches a
# row stamped just before the cursor but committed just after it.
OVERLAP = timedelta(seconds=2)
# A batch is at most one page: the first page keeps no more rows than that.
MAX_ROWS = PAGE_SIZE
# The furthest back a page may catch up from. Longer than a reconnect's backoff (15 s at most)
# so a dropped connection catches up in place; a tab woken from sleep reloads instead. A
# filtered list's check reads every row changed in the window, so this bounds it.
MAX_CATCH_UP = timedelta(seconds=60)


def _parse_time(text: object) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(text))
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    except ValueError:
        return timezone.now()


@dataclass(eq=False)
class Subscription:
    """What one page follows and what it has been sent. A new subscription starts afresh: a
    check still running for the one before changes only that one's state."""

    feed: ListFeed | PageFeed
    id: Any  # the page's id for it, echoed in every message
    cursor: datetime
    group: tuple  # subscriptions that follow the same rows share one check
    params: Any  # what the feed reads: a list's filters (None: invalid), a page's rows
    # Row id -> the version last sent (lists) or seen (pages).
    sent: dict[str, datetime] = field(default_factory=dict)
    # Pages: the first check takes rows stamped up to the cursor as seen (the page was rendered
    # from them); false on a reconnect, which may have missed any of them.
    is_rendered_state: bool = False

    @property
    def since(self) -> datetime:
        return self.cursor - OVERLAP


def check(subs: list[Subscription]) -> dict[Subscription, dict]:
    """What each of `subs` (one group) has not been sent yet, as the message to send it. One
    read of the rows changed since the oldest of their cursors; the LIMIT leaves room for every
    row any of them was already sent, so re-reading the OVERLAP window never takes a place in a
    batch. A list's new rows are rendered once for the whole group."""
    feed, params = subs[0].feed, subs[0].params
    if params is None:
        return {}
    for sub in subs:
        sub.sent = {i: u for i, u in sub.sent.items() if u >= sub.since}  # the rest is not re-read
    limit = MAX_ROWS + 1 + max(len(sub.sent) for sub in subs)
    stamps = feed.stamps(params, min(sub.since for sub in subs), limit)
    is_full = len(stamps) == limit
    fresh: dict[Subscription, list[Stamp]] = {}
    for sub in subs:
        mine = [s for s in stamps if s[1] >= sub.since]
        if not mine:
            continue
        if sub.is_rendered_state:
            sub.sent.update((i, u) for i, u, _ in mine if u <= sub.cursor)
            sub.is_rendered_state = False
        sub.cursor = max(sub.cursor, *(u for _, u, _ in mine))
        fresh[sub] = [s for s in mine if sub.sent.get(s[0]) != s[1]]
    if isinstance(feed, PageFeed):
        messages = {}
        for sub, news in fresh.items():
            if news:
                sub.sent.update((i, u) for i, u, _ in news)
                messages[sub] = {"type": "reload", "cursor": sub.cursor.isoformat()}
        return messages
    batches = {}
    for sub, news in fresh.items():
        shown = [s for s in news if s[2]]
        batches[sub] = (shown[:MAX_ROWS], [s for s in news if not s[2]], len(shown) > MAX_ROWS)
    rendered = feed.render(sorted({i for rows, _, _ in batches.values() for i, _, _ in rows}))
    messages = {}
    for sub, (rows, gone, more) in batches.items():
        if not rows and not gone:
            continue
        sub.sent.update((i, u) for i, u, _ in rows)
        sub.sent.update((i, u) for i, u, _ in gone)
        messages[sub] = {
            "type": "update",
            "rows": [rendered[i] for i, _, _ in rows if i in rendered],
            "gone": sorted(i for i, _, _ in gone),
            "more": more or is_full,
            # The first page keeps as many rows as its view renders.
            "page_size": feed.page_size,
            "cursor": sub.cursor.isoformat(),
        }
    return messages


class Hub:
    """The subscriptions of one process's connections (one event loop). Rings are coalesced
    into at most one check per group every THROTTLE seconds, however many pages follow it."""

    def __init__(self) -> None:
        self.following: dict[LiveConsumer, Subscription] = {}
        self.last_tick = 0.0
        self.is_tick_due = False
        self.tick_task: asyncio.Task | None = None
        # One check and its sends at a time: a page's catch-up and a tick may both answer it,
        # and the later check only has what the earlier one did not send, so it must arrive
        # after it. (The checks themselves already take turns in the one database thread.)
        self.lock = asyncio.Lock()

    def follow(self, consumer: "LiveConsumer", sub: Subscription) -> None:
        self.following[consumer] = sub

    def leave(self, consumer: "LiveConsumer") -> None:
        self.following.pop(consumer, None)
        if not self.following and self.tick_task is not None:
            self.tick_task.cancel()  # nobody left to tell
            self.is_tick_due = False

    def ring(self) -> None:
        if not self.following or self.is_tick_due:
            return
        self.is_tick_due = True
        delay = max(0.0, self.last_tick + THROTTLE - time.monotonic())
        self.tick_task = asyncio.ensure_future(self._tick_after(delay))

    async def _tick_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        # A ring from now on may be for a commit this tick's reads do not see: it gets a tick
        # of its own rather than being dropped.
        self.is_tick_due = False
        self.last_tick = time.monotonic()
        groups: dict[tuple, list] = defaultdict(list)
        for consumer, sub in list(self.following.items()):
            groups[sub.group].append((consumer, sub))
        for members in groups.values():
            try:
                await self.check_and_send(members)
            except Exception:  # one group's failure (a lost database) must not stop the others
                logger.exception("Live check failed", extra={"group": members[0][1].group})

    async def check_and_send(self, members: list[tuple["LiveConsumer", Subscription]]) -> None:
        async with self.lock:
            messages = await database_sync_to_async(check)([sub for _, sub in members])
            for consumer, sub in members:
                message = messages.get(sub)
                # The page may have subscribed anew while this check ran: it was for the old one.
                if message is None or self.following.get(consumer) is not sub:
                    continue
                await consumer.send_json({**message, "sub": sub.id})
                if message.get("more"):
                    self.ring()  # no ring may come after the end of a burst


# One Hub per event loop (a test's loop lives for one test; Daphne's for the process).
_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def hub_for(loop: asyncio.AbstractEventLoop) -> Hub:
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(user.has_perm)(VIEW):
            await self.close(code=4403)  # logged in, but may not see the dashboard
            return
        loop = asyncio.get_running_loop()
        serving_websockets(loop)
        self.hub = hub_for(loop)
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "hub"):
            self.hub.leave(self)
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        kind, sub_id = content.get("subscribe"), content.get("sub")
        try:
            feed = FEEDS[str(kind)]
            params = await database_sync_to_async(feed.prepare)(content)
        except LookupError as exc:  # an unknown kind (KeyError), run or task
            message = str(exc) if kind in FEEDS else "Unknown subscription."
            await self.send_json({"type": "error", "message": message, "sub": sub_id})
            return
        now = timezone.now()
        cursor = min(now, _parse_time(content["cursor"])) if content.get("cursor") else now
        is_behind = cursor < now - MAX_CATCH_UP
        if is_behind:
            cursor = now  # the reload below shows everything up to now
        is_page = isinstance(feed, PageFeed)
        sub = Subscription(
            feed,
            sub_id,
            cursor,
            # The same filters (whatever page of the list), the same workflow's pages.
            group=(feed.kind, repr(params)),
            params=params,
            is_rendered_state=is_page and (is_behind or not content.get("resume")),
        )
        self.hub.follow(self, sub)
        if is_behind:
            await self.send_json({"type": "reload", "sub": sub_id, "cursor": cursor.isoformat()})
        await self.hub.check_and_send([(self, sub)])  # catch up on anything missed before

    async def runs_changed(self, message) -> None:
        """The doorbell (runs, tasks or events changed): the hub coalesces the rings."""
        self.hub.ring()
