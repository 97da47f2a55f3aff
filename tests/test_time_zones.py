"""Every time the pages show carries its time zone (Django's current one, settings.TIME_ZONE),
in a <time> element whose datetime attribute is the ISO moment."""

import re
from datetime import UTC, datetime

import pytest
from django.template import Context, Template
from django.utils import timezone

from hotapp.models import Event, Run, Task
from runtime import schedules, send, start
from tests import task_handlers
from tests.conftest import drain

pytestmark = pytest.mark.django_db

CLOCK = re.compile(r"\b\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\b")


def unzoned_times(page: str, zone: str) -> list[str]:
    """Clock times on the page, outside <time> elements, that do not name `zone` after them
    (a title attribute, an SVG <title>): there should be none."""
    outside = re.sub(r"<time [^>]*>.*?</time>", "", page, flags=re.S)
    outside = re.sub(r'data-[a-z-]+="[^"]*"', "", outside)  # machine-read, never shown
    return [
        m.group(0) for m in CLOCK.finditer(outside) if not outside[m.end() :].startswith(f" {zone}")
    ]


def time_elements(page: str) -> list[tuple[str, str]]:
    """(datetime attribute, text) of every <time> element."""
    return re.findall(r'<time datetime="([^"]+)"[^>]*>([^<]*)</time>', page)


@pytest.fixture
def everything(tmp_path):
    """A failed chain, a workflow, a task with a checkpoint and messages, and schedules."""
    send("order:created", {"order_id": 1, "items": []})
    send("test:always-fails", {"n": 1})
    handle = start(task_handlers.echo)
    handle.send("hello")
    handle.close()
    drain()
    schedules.sync()
    return handle


def pages(task_id) -> list[str]:
    run = Run.objects.get(function__endswith="always_fails", attempt=3)
    event = Event.objects.get(type="order:created")
    return [
        "/",
        "/?status=failed_attempt",
        f"/runs/{run.id}/",
        "/events/",
        f"/events/{event.id}/",
        "/tasks/",
        f"/tasks/{task_id}/",
        "/schedules/",
        "/overview/",
    ]


def test_every_time_on_every_page_names_its_zone(alice_client, everything):
    for url in pages(everything.id):
        page = alice_client.get(url).content.decode()

        elements = time_elements(page)
        assert elements, f"{url} shows no time"
        for iso, text in elements:
            assert text.endswith(" UTC"), (url, text)
            assert datetime.fromisoformat(iso).utcoffset() is not None, (url, iso)
        assert unzoned_times(page, "UTC") == [], url


def test_times_follow_the_configured_time_zone(alice_client, everything, settings):
    settings.TIME_ZONE = "Europe/Paris"
    run = Run.objects.get(function__endswith="always_fails", attempt=3)
    local = timezone.localtime(run.created_at)
    zone = local.tzname()  # CET or CEST, depending on the date
    assert zone in ("CET", "CEST")

    detail = alice_client.get(f"/runs/{run.id}/").content.decode()
    listing = alice_client.get("/tasks/").content.decode()

    assert f"{local:%Y-%m-%d %H:%M:%S}.{local:%f} {zone}</time>" in detail
    assert f'<time datetime="{local.isoformat()}"' in detail
    assert unzoned_times(detail, zone) == [] and unzoned_times(listing, zone) == []
    assert "Since (" + zone + ")" in alice_client.get("/").content.decode()
    task = Task.objects.get()
    assert f"{timezone.localtime(task.created_at):%Y-%m-%d %H:%M:%S} {zone}" in listing


def test_the_when_filter_renders_one_shape_for_every_page():
    moment = datetime(2026, 12, 3, 12, 45, 7, 123456, tzinfo=UTC)
    render = Template("{% load hot %}{{ t|when }}|{{ t|when:'time' }}|{{ t|when:'minute text' }}")

    html = render.render(Context({"t": moment}))

    assert html == (
        '<time datetime="2026-12-03T12:45:07.123456+00:00" title="2026-12-03 12:45:07.123456 UTC">'
        "2026-12-03 12:45:07 UTC</time>|"
        '<time datetime="2026-12-03T12:45:07.123456+00:00" title="2026-12-03 12:45:07.123456 UTC">'
        "12:45:07 UTC</time>|12:45 UTC"
    )
