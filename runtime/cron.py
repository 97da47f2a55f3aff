"""Cron expressions: parse a schedule and compute when it fires, in UTC.

The cron syntax itself is cronsim's (the maintained parser and evaluator of healthchecks.io):
- 5 fields `minute hour day-of-month month day-of-week` (fires at second 0), or 6 fields with
  seconds first. Each field takes `*`, `n`, `a-b`, `*/n`, `a-b/n`, `a/n` and comma lists of these;
  month names JAN-DEC and day names SUN-SAT (any case); day of week 0-7, both 0 and 7 are Sunday;
  also cronsim's `L` (last day of month), `LW`, `5L` (last Friday) and `5#2` (second Friday).
  When both day fields are restricted, a day matches if either does (Vixie/Debian cron).

What stays ours, on top:
- Macros `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`,
  expanded to their 5-field forms (cronsim takes fields only).
- `every N seconds|minutes|hours|days` (or `every minute` ...), firing on multiples of the
  interval counted from the Unix epoch: arithmetic, not cron.
- Error messages that name the expression and the field, `describe()` in English, and the
  walk back from a time (`between`, `at_or_before`) the scheduler uses after downtime.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTH_NAMES: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July")
_MONTH_NAMES += ("August", "September", "October", "November", "December")
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_WEEK_ORDER = (1, 2, 3, 4, 5, 6, 0)  # Monday first, so "Monday to Friday" reads as a range

# The six fields in cronsim's order, with what each accepts (for error messages), and the set
# `*` means (day of week: 0-6, Sunday once).
_FIELDS = (
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L or LW"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, 0 and 7 both Sunday"),
)
_ALL = {
    "second": frozenset(range(60)),
    "minute": frozenset(range(60)),
    "hour": frozenset(range(24)),
    "day_of_month": frozenset(range(1, 32)),
    "month": frozenset(range(1, 13)),
    "day_of_week": frozenset(range(7)),
}

_MACROS = {
    **dict.fromkeys(("@yearly", "@annually"), "0 0 1 1 *"),
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    **dict.fromkeys(("@daily", "@midnight"), "0 0 * * *"),
    "@hourly": "0 * * * *",
}
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_INTERVAL = re.compile(r"every(?:\s+(\S+))?\s+(second|minute|hour|day)(s?)", re.IGNORECASE)
_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only; str.isdigit() also accepts "²" and "５"


class CronError(ValueError):
    """The schedule expression is malformed."""


@dataclass(frozen=True)
class Cron:
    """A parsed schedule; build one with `parse()`.

    The field sets hold the allowed values (day of week: 0 = Sunday ... 6 = Saturday), for
    describe() and for reading; cronsim computes the fire times from `fields`, the 6-field text.
    `days_either` is Vixie cron's rule: when both day fields are restricted, a day matches if
    either does. `is_special`: a day field uses L, LW, nL or n#k, which the sets do not hold.
    Interval forms (`every 7 minutes`) set `interval` in seconds and leave the field sets empty,
    since they are computed arithmetically from the epoch.
    """

    expression: str
    second: frozenset[int] = frozenset()
    minute: frozenset[int] = frozenset()
    hour: frozenset[int] = frozenset()
    day_of_month: frozenset[int] = frozenset()
    month: frozenset[int] = frozenset()
    day_of_week: frozenset[int] = frozenset()
    days_either: bool = False
    interval: int | None = None
    is_special: bool = False
    fields: str = field(default="", repr=False)

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after `when` (timezone-aware), in UTC."""
        start = _utc(when)
        if self.interval is not None:
            # Floor division: a time a fraction of a second past a tick counts as after it.
            elapsed = (start - _EPOCH) // timedelta(seconds=1)
            ticks = elapsed // self.interval + 1
            try:
                return _EPOCH + timedelta(seconds=ticks * self.interval)
            except OverflowError as error:
                raise self._beyond("after", when, "before year 10000") from error
        return self._first(start, reverse=False)

    def at_or_before(self, when: datetime) -> datetime:
        """The last fire time at or before `when` (timezone-aware), in UTC."""
        end = _utc(when).replace(microsecond=0)  # ticks fall on whole seconds
        if self.interval is not None:
            elapsed = (end - _EPOCH) // timedelta(seconds=1)
            return _EPOCH + timedelta(seconds=elapsed // self.interval * self.interval)
        try:
            # cronsim's reverse iteration starts strictly before its time: one second later
            # makes `end` itself a candidate.
            after_end = end + timedelta(seconds=1)
        except OverflowError:
            after_end = end
        return self._first(after_end, reverse=True)

    def _first(self, start: datetime, reverse: bool) -> datetime:
        try:
            return next(CronSim(self.fields, start, reverse=reverse))
        except StopIteration:
            # cronsim gives up after 50 years without a tick; parse() rejects the dates that
            # never exist, so only an n#k or nL day so rare can get here.
            raise CronError(f"{self.expression!r}: never fires (none within 50 years)") from None
        except (OverflowError, ValueError) as error:  # ran past datetime.max or .min
            if reverse:
                raise self._beyond("before", start, "after year 1") from error
            raise self._beyond("after", start, "before year 10000") from error

    def _beyond(self, side: str, when: datetime, limit: str) -> CronError:
        return CronError(f"{self.expression!r}: no fire time {side} {when.isoformat()} {limit}")

    def fire_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times strictly after `after`, oldest first."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        times: list[datetime] = []
        t = after
        for _ in range(count):
            t = self.next_after(t)
            times.append(t)
        return times

    def between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times t with start < t <= end, oldest first: the newest `limit` of them.

        Walks back from `end`, so the cost is `limit` steps however long the window (a
        schedule firing every second, a week after its last tick, takes no longer)."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        start, end = _utc(start), _utc(end)
        times: list[datetime] = []
        if limit == 0 or end <= start:
            return times
        t = self.at_or_before(end)
        while t > start:
            times.append(t)
            if len(times) == limit:
                break
            t = self.at_or_before(t - timedelta(seconds=1))
        return times[::-1]

    def describe(self) -> str:
        """The schedule in English for the common shapes, else "cron: <expression>"."""
        if self.interval is not None:
            for unit, size in reversed(_UNIT_SECONDS.items()):
                if self.interval % size == 0:
                    return _every(self.interval // size, unit)
        if self.is_special:
            return f"cron: {self.expression.strip()}"
        sec, mins, hrs = self.second, self.minute, self.hour
        all_days = self.month == _ALL["month"] and self._every_day()
        if all_days and hrs == _ALL["hour"]:
            if mins == _ALL["minute"] and (n := _even_step(sec, 60)):
                return _every(n, "second")
            if sec == {0} and (n := _even_step(mins, 60)):
                return _every(n, "minute")
            if sec == {0} and len(mins) == 1:
                return f"every hour at minute {min(mins)}"
        if all_days and sec == {0} and len(mins) == 1 and (n := _even_step(hrs, 24)):
            return f"every {n} hours at minute {min(mins)}"
        if len(sec) == len(mins) == len(hrs) == 1:
            clock = f"{min(hrs):02d}:{min(mins):02d}" + (f":{min(sec):02d}" if min(sec) else "")
            if all_days:
                return f"every day at {clock}"
            if days := self._describe_days():
                return f"at {clock} on {days}"
        return f"cron: {self.expression.strip()}"

    def _every_day(self) -> bool:
        any_day = self.day_of_month == _ALL["day_of_month"]
        any_weekday = self.day_of_week == _ALL["day_of_week"]
        return (any_day or any_weekday) if self.days_either else (any_day and any_weekday)

    def _describe_days(self) -> str | None:
        every_month = self.month == _ALL["month"]
        if self.days_either:
            return None  # "the 13th or a Friday" is rare enough to show as the expression
        if self.day_of_week != _ALL["day_of_week"]:
            if every_month and self.day_of_month == _ALL["day_of_month"]:
                return _weekdays(self.day_of_week)
            return None
        days = sorted(self.day_of_month)
        if every_month:
            noun = "day" if len(days) == 1 else "days"
            return f"{noun} {_join([str(d) for d in days])} of every month"
        if len(days) == 1 and len(self.month) == 1:
            return f"{days[0]} {_MONTH_NAMES[min(self.month) - 1]}"
        return None


def parse(expression: str) -> Cron:
    """Parse a cron expression, macro or `every N <unit>` form; raise CronError if malformed."""
    text = expression.strip()
    if not text:
        raise CronError(f"{expression!r}: expression is empty")
    if text.lower().startswith("every"):
        return _parse_interval(expression, text)
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise CronError(f"{expression!r}: unknown macro, expected one of {', '.join(_MACROS)}")
        text = _MACROS[text.lower()]
    parts = text.split()
    if len(parts) not in (5, 6):
        raise CronError(f"{expression!r}: expected 5 or 6 fields, got {len(parts)}")
    if len(parts) == 5:
        parts.insert(0, "0")
    fields = " ".join(parts)
    try:
        sim = CronSim(fields, _EPOCH)
    except CronSimError as error:
        raise _field_error(expression, parts, error) from None
    # Day of week: cronsim keeps 7 as given, and n#k / nL as tuples; the sets hold plain days.
    weekdays = frozenset(day % 7 for day in sim.weekdays if isinstance(day, int))
    days = frozenset(day for day in sim.days if day > 0)
    return Cron(
        expression,
        second=frozenset(sim.seconds),
        minute=frozenset(sim.minutes),
        hour=frozenset(sim.hours),
        day_of_month=days,
        month=frozenset(sim.months),
        day_of_week=weekdays,
        days_either=not sim.day_and,
        is_special=days != sim.days or any(not isinstance(d, int) for d in sim.weekdays),
        fields=fields,
    )


def _field_error(expression: str, parts: list[str], error: CronSimError) -> CronError:
    """cronsim says which field is bad ("Bad minute"); name its text and what it accepts."""
    labels = [label for label, _ in _FIELDS]
    label = str(error).removeprefix("Bad ")
    if label not in labels:
        return CronError(f"{expression!r}: {error}")
    index = labels.index(label)
    if label == "day-of-month":
        # The field alone may be valid and only impossible in the listed months (Feb 30).
        try:
            CronSim(" ".join([*parts[:4], "*", parts[5]]), _EPOCH)
        except CronSimError:
            pass
        else:
            problem = "never fires (no listed month has those days of month)"
            return CronError(f"{expression!r}: {problem}")
    accepts = _FIELDS[index][1]
    problem = f"invalid {label} field {parts[index]!r} (each value {accepts}; * , - / allowed)"
    return CronError(f"{expression!r}: {problem}")


def _parse_interval(expression: str, text: str) -> Cron:
    match = _INTERVAL.fullmatch(text)
    if match is None:
        raise CronError(f"{expression!r}: expected 'every N seconds|minutes|hours|days'")
    count, unit, plural = match.group(1), match.group(2).lower(), match.group(3)
    if count is None:
        if plural:
            raise CronError(f"{expression!r}: say 'every {unit}' or 'every N {unit}s'")
        count = "1"
    if not _NUMBER.fullmatch(count) or int(count) == 0:
        raise CronError(f"{expression!r}: interval must be a positive integer, got {count!r}")
    return Cron(expression, interval=int(count) * _UNIT_SECONDS[unit])


def _utc(when: datetime) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()}: pass a timezone-aware UTC datetime")
    return when.astimezone(UTC)


def _even_step(values: frozenset[int], size: int) -> int | None:
    """n when `values` is 0, n, 2n ... covering the unit evenly (so "every n" is true)."""
    ordered = sorted(values)
    if len(ordered) < 2 or ordered[0] != 0:
        return None
    step = ordered[1]
    return step if size % step == 0 and values == frozenset(range(0, size, step)) else None


def _every(n: int, unit: str) -> str:
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _weekdays(days: frozenset[int]) -> str:
    ordered = [d for d in _WEEK_ORDER if d in days]
    positions = [_WEEK_ORDER.index(d) for d in ordered]
    if len(ordered) >= 3 and positions[-1] - positions[0] == len(ordered) - 1:
        return f"{_DAY_NAMES[ordered[0]]} to {_DAY_NAMES[ordered[-1]]}"
    return _join([_DAY_NAMES[d] for d in ordered])
