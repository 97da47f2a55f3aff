"""`python manage.py hot …`: Hot's command line.

hot dev                      everything in one process on the embedded default
hot worker [celery args]     a Celery worker (production); `-Q hot.tasks` for task attempts
hot scheduler                fire schedules and sweep (production; run one, more are safe)
hot schedules                list schedules; hot pause NAME / hot resume NAME
hot send TYPE [JSON|@FILE|-] [--delay SECONDS | --at ISO-TIME]   send an event (a payload
                             inline, from a file, or from stdin), now or later
hot cancel-event ID          cancel a delayed event's runs that are still held
hot sweep                    one sweeper pass, printing what it did
hot purge [--dry-run]        delete what the retention policies let go, printing the counts
hot runs [filters]           list runs with the runs page's filters (--json: JSON lines)
hot retry|rerun|cancel ID    act on one run
hot bulk retry|cancel [filters] [--dry-run] [--yes]   act on every matching run, in batches
hot token create USER --name N | revoke ID | list     API tokens
"""

import json
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hotapp.conf import hot_settings
from hotapp.management import run_commands
from runtime import (
    Actor,
    HotError,
    cancel_event,
    retention,
    scheduler,
    schedules,
    send,
    sweeper,
)
from runtime.registry import all_handlers, handlers_for


class Command(BaseCommand):
    help = "Hot: run the dashboard, workers and sweeper, or send events."
    stealth_options = ("stdin",)  # call_command(..., stdin=…) stands in for the terminal

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)

        dev = sub.add_parser("dev", help="dashboard, worker, sweeper and demo in one process")
        dev.add_argument("--host", default="127.0.0.1")
        dev.add_argument("--port", type=int, default=8000)
        dev.add_argument("--concurrency", type=int, default=4)
        dev.add_argument("--no-demo", action="store_true", help="skip the demo workflow")
        dev.add_argument("--demo-orders", type=int, default=3)

        worker = sub.add_parser("worker", help="a Celery worker")
        worker.add_argument("celery_args", nargs="*", help="passed on to `celery worker`")

        sub.add_parser("scheduler", help="fires schedules and sweeps (run one; more are safe)")
        sub.add_parser("schedules", help="list schedules with their next fire times")
        for verb in ("pause", "resume"):
            verb_parser = sub.add_parser(verb, help=f"{verb} a schedule")
            verb_parser.add_argument(
                "name", help="the schedule's name, full or as the pages show it"
            )
        sub.add_parser("sweep", help="one sweeper pass")
        purge = sub.add_parser("purge", help="delete finished runs past their retention")
        purge.add_argument("--dry-run", action="store_true", help="only count what would go")
        purge.add_argument("--batch", type=int, help="chains, tasks or events per transaction")
        purge.add_argument("--max-batches", type=int, help="stop after this many (default: all)")

        send_parser = sub.add_parser("send", help="send an event")
        send_parser.add_argument("type")
        send_parser.add_argument(
            "data", nargs="?", default="{}", help="JSON payload, @file.json, or - for stdin"
        )
        later = send_parser.add_mutually_exclusive_group()
        later.add_argument("--delay", type=float, help="deliver after this many seconds")
        later.add_argument("--at", help="deliver at this ISO 8601 time (with its offset)")
        sub.add_parser(
            "cancel-event", help="cancel a delayed event's runs that are still held"
        ).add_argument("event_id")

        run_commands.add_parsers(sub)

        self.add_token_arguments(sub)

    def run_from_argv(self, argv):
        # `hot worker …` hands its arguments to Celery's own parser untouched (--concurrency=2).
        if argv[2:3] == ["worker"]:
            self.handle_worker(argv[3:])
            return
        super().run_from_argv(argv)

    def handle(self, *args, action, **options):
        if action in run_commands.HANDLERS:
            run_commands.handle(self, action, **options)
            return
        getattr(self, f"handle_{action.replace('-', '_')}")(**options)

    def handle_send(self, type, data, stdin=None, delay=None, at=None, **_):
        source = "The payload"
        if data == "-":
            data, source = (stdin or sys.stdin).read(), "The payload on stdin"
        elif data.startswith("@"):
            source = data[1:]
            try:
                with open(data[1:], encoding="utf-8") as payload_file:
                    data = payload_file.read()
            except OSError as exc:
                raise CommandError(f"Cannot read {source}: {exc.strerror}") from None
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{source} is not valid JSON: {exc}") from None
        when = None
        if at is not None:
            when = parse_datetime(at)
            if when is None:
                raise CommandError(f"--at {at!r} is not an ISO 8601 time (2026-12-24T18:00+01:00)")
        try:
            event_id = send(type, payload, delay=delay, at=when)
        except (HotError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if not handlers_for(type):
            # Runs are made for the handlers the *sending* process knows: a script that forgot
            # the handler modules stores the event with no runs, and nothing else says so.
            self.stderr.write(
                f"WARNING: no handler subscribes to {type!r} in this process; the event is "
                "stored unhandled. Is HOT_HANDLER_MODULES set?",
                self.style.WARNING,
            )
        self.stdout.write(str(event_id))

    def handle_cancel_event(self, event_id, **_):
        try:
            cancelled = cancel_event(event_id, Actor.cli())
        except HotError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"cancelled {cancelled} held run(s) of event {event_id}")

    def handle_schedules(self, **_):
        from hotapp.models import Schedule

        schedules.sync()
        now = timezone.now()
        for handler in all_handlers("schedule"):
            cron = handler.options["cron"]
            row = Schedule.objects.get(name=handler.name)
            state = "paused" if row.is_paused else "next " + cron.next_after(now).isoformat()
            self.stdout.write(f"{handler.name}  {cron.expression!r} ({cron.describe()})  {state}")

    def handle_pause(self, name, **_):
        self._schedule_action(schedules.pause, name, "paused")

    def handle_resume(self, name, **_):
        self._schedule_action(schedules.resume, name, "resumed")

    def _schedule_action(self, action, name, done):
        schedules.sync()
        try:
            name = schedules.full_name(name)  # the pages show the short name
            action(name, Actor.cli())
        except HotError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{name}: {done}")

    # API tokens ------------------------------------------------------------------------------

    def add_token_arguments(self, sub):
        token = sub.add_parser("token", help="API tokens: create, revoke, list")
        verbs = token.add_subparsers(dest="token_action", required=True)
        create = verbs.add_parser("create", help="make a token for a user and print it (once)")
        create.add_argument("username")
        create.add_argument("--name", required=True, help="what the token is for")
        revoke = verbs.add_parser("revoke", help="revoke a token by its id")
        revoke.add_argument("token_id", type=int)
        verbs.add_parser("list", help="every token: id, user, name, prefix, state")

    def handle_token(self, token_action, **options):
        getattr(self, f"handle_token_{token_action}")(**options)

    def handle_token_create(self, username, name, **_):
        from django.contrib.auth import get_user_model

        from hotapp.models import ApiToken

        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"No user is called {username!r}") from None
        token, secret = ApiToken.issue(user, name)
        # The secret alone on stdout, for `TOKEN=$(manage.py hot token create …)`.
        self.stdout.write(secret)
        self.stderr.write(f"Token {token.id} ({name}) for {username}; it is not shown again.")

    def handle_token_revoke(self, token_id, **_):
        from hotapp.models import ApiToken

        token = ApiToken.objects.filter(id=token_id).first()
        if token is None:
            raise CommandError(f"No token has id {token_id}")
        ApiToken.objects.filter(id=token_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        self.stdout.write(f"Token {token_id} ({token.name}) revoked.")

    def handle_token_list(self, **_):
        from hotapp.models import ApiToken

        for token in ApiToken.objects.select_related("user").order_by("id"):
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            self.stdout.write(
                f"{token.id}  {token.user.get_username()}  {token.name!r}  {token.prefix}…  "
                f"{state}  last used {used}"
            )

    def handle_sweep(self, **_):
        self.stdout.write(json.dumps(sweeper.sweep()))

    def handle_purge(self, dry_run, batch, max_batches, **_):
        default = hot_settings()["RETENTION_DAYS"]
        self.stdout.write(
            f"Retention: {f'{default:g} days' if default else 'forever'} by default"
            + "".join(
                f"; {h.name}: {f'{h.retention_days:g} days' if h.retention_days else 'forever'}"
                for h in all_handlers()
                if h.retention_days is not None
            )
        )
        purged = retention.purge(batch=batch, max_batches=max_batches, dry_run=dry_run)
        self.stdout.write(f"{'Would delete' if dry_run else 'Deleted'} {purged}.")

    def handle_scheduler(self, **_):
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        interval = hot_settings()["SWEEP_INTERVAL_SECONDS"]
        self.stdout.write(
            f"hot scheduler: firing schedules every second, sweeping every {interval}s "
            "(Ctrl-C to stop)"
        )
        scheduler.run_forever(stop)

    def handle_worker(self, celery_args: list[str], **_):
        from runtime.celery_app import celery_app

        celery_app().worker_main(["worker", "--loglevel=INFO", *celery_args])

    def handle_dev(self, host, port, concurrency, no_demo, demo_orders, **_):
        from channels.routing import get_default_application
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server
        from kombu.utils.url import maybe_sanitize_url

        from runtime import embedded
        from runtime.celery_app import celery_app

        # The project's own ASGI app (ASGI_APPLICATION): the standalone one, or one that adds Hot.
        application = get_default_application()
        call_command("migrate", interactive=False, verbosity=0)
        username, password = ensure_dev_user()
        broker = maybe_sanitize_url(str(celery_app().conf.broker_url))
        in_process = broker.startswith("memory")
        if in_process and "HOT_REQUEUE_AFTER_SECONDS" not in os.environ:
            # The in-process broker cannot hear `hot send` from another terminal; the sweeper
            # rings for those runs soon instead of after the production default of 30 s.
            settings.HOT = {**hot_settings(), "REQUEUE_AFTER_SECONDS": 3.0}
        if not no_demo:
            from hotapp.demo import handlers as demo

        # A short sweep interval: in one process a lost doorbell or due retry is found fast.
        running = embedded.start(concurrency=concurrency, sweep_interval=1.0)
        if not no_demo:
            demo.send_demo_orders(demo_orders)
            demo.start_demo_task()

        url = f"http://{host}:{port}{reverse('hot:run-list')}"  # under the project's prefix
        database = connection.settings_dict
        mode = "PostgreSQL" if connection.vendor == "postgresql" else f"SQLite ({database['NAME']})"
        self.stdout.write(self.style.SUCCESS(f"Hot App is running at {url}"))
        self.stdout.write(f"  database: {mode}; broker: {broker}")
        self.stdout.write(f"  log in as: {username} / {password}")
        self.stdout.write(
            f"  worker: in-process, {concurrency} threads (events and tasks); "
            "scheduler and sweeper: in-process"
        )
        if not no_demo:
            self.stdout.write(
                f"  demo: sent {demo_orders} orders into the 3-step order workflow, started a "
                "catalog import task; a schedule fires every 30 s"
            )
        sys.stdout.flush()
        try:
            Server(
                application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                signal_handlers=True,
                verbosity=0,
            ).run()
        finally:
            running.stop()


def ensure_dev_user() -> tuple[str, str]:
    """The embedded default's login: `admin` with a password made once and kept in HOT_DATA_DIR."""
    from django.contrib.auth import get_user_model

    # The standalone project's data folder; in a project that adds Hot, .hot/ where it runs.
    data_dir = Path(getattr(settings, "DATA_DIR", ".hot"))
    data_dir.mkdir(parents=True, exist_ok=True)
    password_file = data_dir / "dev-password"
    if password_file.exists():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(9)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
    user, _ = get_user_model().objects.get_or_create(username="admin")
    if not (user.is_superuser and user.check_password(password)):
        user.is_superuser = user.is_staff = True
        user.set_password(password)
        user.save()
    return user.username, password
