import json
from datetime import datetime

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html

from hotapp import filters
from hotapp.masking import mask, mask_json_text

register = template.Library()

# The ways `when` shows a moment; each ends with the time zone's abbreviation.
WHEN_FORMATS = {
    "": "Y-m-d H:i:s T",  # 2026-12-03 12:45:07 UTC
    "precise": "Y-m-d H:i:s.u T",  # 2026-12-03 12:45:07.123456 UTC
    "time": "H:i:s T",  # 12:45:07 UTC: beside a date already shown (a timeline)
    "minute": "H:i T",  # 12:45 UTC: a chart's minute
    "day": "M j, H:i T",  # Dec 3, 12:45 UTC: a time in a narrow cell, not today
}


@register.filter
def when(value: datetime | None, style: str = "") -> str:
    """Every time the pages show, in Django's current time zone (settings.TIME_ZONE) with its
    abbreviation: `{{ run.created_at|when }}` is a <time> element whose datetime attribute is
    the ISO moment and whose title is the full precise one. Styles: "precise", "time",
    "minute"; add " text" for plain text where no element may go (an attribute, an SVG title).
    """
    if value is None:
        return ""
    words = style.split()
    is_text = "text" in words
    shape = next((w for w in words if w != "text"), "")
    local = timezone.localtime(value)
    shown = dateformat.format(local, WHEN_FORMATS[shape])
    if is_text:
        return shown
    precise = dateformat.format(local, WHEN_FORMATS["precise"])
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', local.isoformat(), precise, shown
    )


@register.simple_tag
def zone() -> str:
    """The current time zone's abbreviation now ("UTC"): the zone the Since/Until inputs mean."""
    return dateformat.format(timezone.localtime(), "T")


@register.filter
def pretty_json(value) -> str:
    """Payloads as the JSON they are (not Python's repr), masked (hotapp/masking.py);
    autoescaped by the template."""
    return json.dumps(mask(value), indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def compact_json(value) -> str:
    return json.dumps(mask(value), ensure_ascii=False, separators=(", ", ": "))


@register.filter
def masked_preview(text: str) -> str:
    """The start of a payload's JSON text, cut in SQL, with masked values hidden."""
    return mask_json_text(text)


@register.filter
def short_function(name: str) -> str:
    """`app.handlers.on_order_created` → `on_order_created`; the full name goes in a title."""
    return name.rsplit(".", 1)[-1]


@register.filter
def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m {seconds:02d}s"


@register.filter
def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


@register.simple_tag
def runs_url(**params) -> str:
    """A runs-list link with the given filters (status="failed", function=…)."""
    from urllib.parse import urlencode

    return reverse("hot:run-list") + "?" + urlencode({k: v for k, v in params.items() if v})


@register.simple_tag
def logout_url() -> str:
    """The project's `logout` URL, or "" where the project names none (no Log out button)."""
    try:
        return reverse("logout")
    except NoReverseMatch:
        return ""


@register.filter
def row_key(row) -> str:
    """A list row's `data-key`: its place in the list's order (hotapp.filters.row_key)."""
    return filters.row_key(row.created_at, row.id)


# What a held run is waiting for (runs list, run page); "{until}" is its available_at.
HOLD_LABELS = {
    "delay": ("delayed", "Its event was sent with a delay; due {until}"),
    "concurrency": ("concurrency", "Its handler's concurrency limit is reached"),
    "rate_limit": ("rate limit", "Its handler's rate limit is spent until {until}"),
    "debounce": ("debouncing", "A later event for its key may replace it until {until}"),
    "sleep": ("sleeping", "The task sleeps durably until {until}"),
    "event": ("awaiting event", "The task waits for an event (timeout: {until})"),
}


def has_set_time(run) -> bool:
    """A task waiting for an event with no timeout is held until 9999-12-31 (runtime.waits
    FOREVER): no time to show (and none a time zone east of UTC could represent)."""
    return run.available_at is not None and run.available_at.year < 9999


@register.filter
def hold_badge(run) -> str:
    """What a held queued run waits for, and until when (the runs list's "started" cell, an
    event's runs): "delayed · 16:14:30 UTC" with the full sentence as its title."""
    if run.status != "queued" or not run.wait_reason:
        return ""
    label, title = HOLD_LABELS.get(run.wait_reason, (run.wait_reason, "{until}"))
    until = when(run.available_at, "precise text") if has_set_time(run) else "no set time"
    return format_html(
        '<span class="badge muted hold hold-{}" title="{}">{}</span>{}',
        run.wait_reason,
        title.format(until=until),
        label,
        format_html(" {}", when(run.available_at, _narrow(run.available_at)))
        if run.available_at
        else "",
    )


def _narrow(value: datetime) -> str:
    """The style that fits a narrow cell: the time alone today, else the day and minute."""
    is_today = timezone.localtime(value).date() == timezone.localtime().date()
    return "time" if is_today else "day"


@register.filter
def hold_reason(run) -> str:
    """The sentence a held run's page shows: why it waits, and until when."""
    if run.status != "queued" or not run.wait_reason:
        return ""
    _, sentence = HOLD_LABELS.get(run.wait_reason, (run.wait_reason, "{until}"))
    until = when(run.available_at) if has_set_time(run) else "no set time"
    return format_html(sentence.replace("{until}", "{}") + ".", until)


@register.filter
def wait_summary(wait) -> str:
    """What a task's durable wait is (task page): "sleeping until …", "waiting for order:paid
    matching {…} until …", or how it ended."""
    if wait.kind == "sleep":
        text = format_html("sleep until {}", when(wait.until))
    else:
        text = format_html("wait for <code>{}</code>", wait.event_type)
        if wait.match:
            text = format_html("{} matching <code>{}</code>", text, compact_json(wait.match))
        text = (
            format_html("{} until {}", text, when(wait.until))
            if wait.until
            else format_html("{}, with no time limit", text)
        )
    return text
