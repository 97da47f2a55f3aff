"""The handler registry: names, subscriptions, and discovery of installed apps' handlers."""

import importlib
import sys

import pytest

from hotapp.models import Run
from runtime import Retry, on_event, registry, send, task
from runtime.exceptions import DuplicateHandler
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_what_the_test_registers():
    before = {handler.name for handler in registry.all_handlers()}
    yield
    for handler in registry.all_handlers():
        if handler.name not in before:
            registry.unregister(handler.name)


def test_stacked_subscriptions_give_one_handler_one_run_per_event():
    @on_event("audit:created")
    @on_event("audit:deleted")
    def audit(event):
        return event.type

    send("audit:created")
    send("audit:deleted")
    drain()

    name = registry.handler_name(audit, None)
    assert [h.name for h in registry.all_handlers() if h.fn is audit] == [name]
    runs = Run.objects.filter(function=name)
    assert sorted(run.result for run in runs) == ["audit:created", "audit:deleted"]


def test_every_type_of_a_stacked_handler_is_offered_in_the_runs_filter(admin_client):
    @on_event("audit:archived")
    @on_event("audit:restored")
    def audit_both(event):
        return event.type

    page = admin_client.get("/").content.decode()

    assert '<option value="audit:archived"' in page and '<option value="audit:restored"' in page


def test_registering_the_same_function_again_changes_nothing():
    def once(event):
        return "once"

    on_event("again:sent")(once)
    on_event("again:sent")(once)
    send("again:sent")
    drain()

    assert Run.objects.get(event_type="again:sent").result == "once"


def test_two_functions_under_one_name_are_refused_at_import_asking_for_a_name():
    @on_event("shared:a", name="shared-name")
    def first(event):
        return 1

    with pytest.raises(DuplicateHandler, match=r"shared-name.*first.*name="):

        @on_event("shared:b", name="shared-name")
        def second(event):
            return 2

    assert registry.handlers_for("shared:b") == ()


def test_one_function_cannot_have_two_retry_policies():
    with pytest.raises(DuplicateHandler, match="retry, trace, retention or flow"):

        @on_event("policy:a", retry=3)
        @on_event("policy:b", retry=Retry(1))
        def charge(event):
            return None


def test_a_task_and_a_handler_cannot_share_a_name():
    @task(name="busy-name")
    def long_job(ctx):
        return None

    with pytest.raises(DuplicateHandler, match="busy-name"):

        @on_event("busy:a", name="busy-name")
        def handle(event):
            return None


def test_a_reimported_module_replaces_its_handlers_without_doubling_them():
    import tests.handlers

    before = registry.handlers_for("test:fanout")

    importlib.reload(tests.handlers)

    after = registry.handlers_for("test:fanout")
    assert [h.name for h in after] == [h.name for h in before]
    assert [h.fn for h in after] == [tests.handlers.fanout_first, tests.handlers.fanout_second]


def test_an_installed_apps_handlers_module_is_discovered(settings):
    name = "tests.discovered_app.handlers.on_ping"
    assert not any(m.startswith("tests.discovered_app") for m in settings.HOT["HANDLER_MODULES"])
    assert registry.handler_named(name) is not None  # found at start-up

    registry.unregister(name)
    del sys.modules["tests.discovered_app.handlers"]
    registry.discover_handlers()

    assert registry.handler_named(name) is not None
    send("discovered:ping", {"n": 3})
    drain()
    assert Run.objects.get(function=name).result == {"pong": 3}
