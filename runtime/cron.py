"""Cron expressions: parse a schedule and compute when it fires, in UTC.

- 5 fields `minute hour day-of-month month day-of-week` (fires at second 0), or 6 fields with
  seconds first. Each field takes `*`, `n`, `a-b`, `*/n`, `a-b/n`, `a/n` and comma lists of these;
  month names JAN-DEC and day names SUN-SAT (any case); day of week 0-7, both 0 and 7 are Sunday.
- Macros `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`.
- `every N seconds|minutes|hours|days` (or `every minute` ...), firing on multiples of the
  interval counted from the Unix epoch.

Standard library only: this runs in schedulers that must not need Django or a third-party parser.
"""

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTH_NAMES: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July")
_MONTH_NAMES += ("August", "September", "October", "November", "December")
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_WEEK_ORDER = (1, 2, 3, 4, 5, 6, 0)  # Monday first, so "Monday to Friday" reads as a range
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb 29 exists in leap years

# (attribute, label in messages, lowest, highest accepted, highest reached by `*` and `a/n`,
# names). Day of week accepts 7 as Sunday, but `*` and `a/n` stop at 6 so Sunday is not doubled.
_FIELDS: tuple[tuple[str, str, int, int, int, dict[str, int]], ...] = (
    ("second", "second", 0, 59, 59, {}),
    ("minute", "minute", 0, 59, 59, {}),
    ("hour", "hour", 0, 23, 23, {}),
    ("day_of_month", "day-of-month", 1, 31, 31, {}),
    ("month", "month", 1, 12, 12, {n[:3].upper(): i for i, n in enumerate(_MONTH_NAMES, 1)}),
    ("day_of_week", "day-of-week", 0, 7, 6, {n[:3].upper(): i for i, n in enumerate(_DAY_NAMES)}),
)
_ALL = {attr: frozenset(range(lo, top + 1)) for attr, _, lo, _, top, _ in _FIELDS}

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

# Each clock unit, and how far to skip when no later value of it is allowed (a carry).
_CLOCK = (
    ("hour", timedelta(days=1)),
    ("minute", timedelta(hours=1)),
    ("second", timedelta(minutes=1)),
)


class CronError(ValueError):
    """The schedule expression is malformed."""


@dataclass(frozen=True)
class Cron:
    """A parsed schedule; build one with `parse()`.

    The field sets hold the allowed values (day of week: 0 = Sunday ... 6 = Saturday).
    `days_either` is Vixie cron's rule: when both day fields are restricted, a day matches if
    either does. Interval forms (`every 7 minutes`) set `interval` in seconds and leave the field
    sets empty, since they are computed arithmetically from the epoch.
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

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after `when` (timezone-aware), in UTC."""
        start = _utc(when)
        try:
            if self.interval is not None:
                # Floor division: a time a fraction of a second past a tick counts as after it.
                elapsed = (start - _EPOCH) // timedelta(seconds=1)
                ticks = elapsed // self.interval + 1
                return _EPOCH + timedelta(seconds=ticks * self.interval)
            return self._search(start.replace(microsecond=0) + timedelta(seconds=1))
        except CronError:
            raise
        except (OverflowError, ValueError) as error:  # ran past datetime.max (year 9999)
            problem = f"no fire time after {when.isoformat()} before year 10000"
            raise CronError(f"{self.expression!r}: {problem}") from error

    def _search(self, t: datetime) -> datetime:
        # The Gregorian calendar repeats every 400 years, so a schedule with no fire time in
        # that span never fires. parse() rejects the impossible dates, so this is a safety net.
        give_up = t.year + 400
        while t.year <= give_up:
            if t.month not in self.month:
                later = [m for m in self.month if m > t.month]
                year, month = (t.year, min(later)) if later else (t.year + 1, min(self.month))
                t = datetime(year, month, 1, tzinfo=UTC)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            for index, (unit, carry) in enumerate(_CLOCK):
                allowed: frozenset[int] = getattr(self, unit)
                current = getattr(t, unit)
                if current in allowed:
                    continue
                # Jump to the next allowed value, or carry into the next day/hour/minute;
                # either way the units below restart from zero.
                lower = {below: 0 for below, _ in _CLOCK[index + 1 :]}
                later = [v for v in allowed if v > current]
                fields: dict[str, Any] = {unit: min(later or allowed), **lower}
                t = (t if later else t + carry).replace(**fields)
                break
            else:
                return t
        raise CronError(f"{self.expression!r}: never fires")

    def _day_matches(self, t: datetime) -> bool:
        on_day = t.day in self.day_of_month
        on_weekday = t.isoweekday() % 7 in self.day_of_week
        return (on_day or on_weekday) if self.days_either else (on_day and on_weekday)

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

    def at_or_before(self, when: datetime) -> datetime:
        """The last fire time at or before `when` (timezone-aware), in UTC."""
        end = _utc(when).replace(microsecond=0)  # ticks fall on whole seconds
        try:
            if self.interval is not None:
                elapsed = (end - _EPOCH) // timedelta(seconds=1)
                return _EPOCH + timedelta(seconds=elapsed // self.interval * self.interval)
            return self._search_back(end)
        except CronError:
            raise
        except (OverflowError, ValueError) as error:  # ran before datetime.min (year 1)
            problem = f"no fire time before {when.isoformat()} after year 1"
            raise CronError(f"{self.expression!r}: {problem}") from error

    def _search_back(self, t: datetime) -> datetime:
        # _search in a mirror: skip back to the last second of the latest allowed month, day,
        # hour, minute at or before t.
        give_up = t.year - 400
        while t.year >= give_up:
            if t.month not in self.month:
                earlier = [m for m in self.month if m < t.month]
                year, month = (t.year, max(earlier)) if earlier else (t.year - 1, max(self.month))
                last_day = calendar.monthrange(year, month)[1]
                t = datetime(year, month, last_day, 23, 59, 59, tzinfo=UTC)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) - timedelta(seconds=1)
                continue
            for index, (unit, _) in enumerate(_CLOCK):
                allowed: frozenset[int] = getattr(self, unit)
                current = getattr(t, unit)
                if current in allowed:
                    continue
                # Back to the latest earlier allowed value with the units below at their end,
                # or, with none earlier, to the last second before this unit's value 0.
                below = [lower for lower, _ in _CLOCK[index + 1 :]]
                earlier = [v for v in allowed if v < current]
                fields: dict[str, Any]
                if earlier:
                    fields = {unit: max(earlier), **dict.fromkeys(below, 59)}
                    t = t.replace(**fields)
                else:
                    fields = {unit: 0, **dict.fromkeys(below, 0)}
                    t = t.replace(**fields) - timedelta(seconds=1)
                break
            else:
                return t
        raise CronError(f"{self.expression!r}: never fires")

    def describe(self) -> str:
        """The schedule in English for the common shapes, else "cron: <expression>"."""
        if self.interval is not None:
            for unit, size in reversed(_UNIT_SECONDS.items()):
                if self.interval % size == 0:
                    return _every(self.interval // size, unit)
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
    sets = [_parse_field(expression, part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    # Vixie cron decides by the text: a day field starting with `*` (`*`, `*/2`) is unrestricted.
    either = not parts[3].startswith("*") and not parts[5].startswith("*")
    day_of_month, month = sets[3], sets[4]
    # With both day fields restricted any listed weekday fires, so only the AND case can be
    # impossible; every real date then recurs on every weekday within the 400-year cycle.
    if not either and not any(d <= _MAX_DAYS[m - 1] for m in month for d in day_of_month):
        raise CronError(f"{expression!r}: never fires (no listed month has those days of month)")
    second, minute, hour, _, _, day_of_week = sets
    return Cron(
        expression,
        second=second,
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month=month,
        day_of_week=day_of_week,
        days_either=either,
    )


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


def _parse_field(expression: str, text: str, spec: tuple) -> frozenset[int]:
    attr, label, lo, hi, top, names = spec

    def error(problem: str) -> CronError:
        return CronError(f"{expression!r}: {problem} in field {label!r}")

    def value(token: str) -> int:
        if not token:
            raise error(f"missing value in {text!r}")
        if _NUMBER.fullmatch(token):
            number = int(token)
            if not lo <= number <= hi:
                raise error(f"value {number} is out of range {lo}-{hi}")
            return number
        if token.upper() in names:
            return names[token.upper()]
        raise error(f"unknown name {token!r}" if names else f"invalid value {token!r}")

    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise error(f"empty list item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text):
                raise error(f"invalid step {step_text!r}")
            step = int(step_text)
            if step < 1:
                raise error("step must be at least 1")
        if base == "*":
            start, end = lo, top
        else:
            first, dash, last = base.partition("-")
            start = value(first)
            end = value(last) if dash else (max(top, start) if slash else start)
            if end < start:
                raise error(f"range {base!r} ends before it starts")
        values.update(range(start, end + 1, step))
    if attr == "day_of_week" and 7 in values:
        values = (values - {7}) | {0}  # 7 is another name for Sunday
    return frozenset(values)


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
