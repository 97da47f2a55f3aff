"""`hot runs`, `hot retry|rerun|cancel RUN_ID` and `hot bulk retry|cancel`: the runs page's list
and actions from a terminal. The filters go through the runs page's own form and queryset
(hotapp.filters), so `hot runs --status failed` lists what `/?status=failed` shows and `hot
bulk` acts on exactly those runs."""

import json
import re
import sys
from datetime import timedelta

from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from hotapp.api import RUN_ROW_FIELDS, run_json
from hotapp.filters import encode_cursor, run_filter_form, run_filter_params
from hotapp.models import BulkStatus, Run, RunStatus, Trigger
from hotapp.querysets import filtered_page
from hotapp.templatetags.hot import duration, short_function
from runtime import Actor, HotError, bulk, cancel_run, rerun, retry_run
from runtime.registry import all_handlers

PERIOD_RE = re.compile(r"(\d+)\s*([smhdw])")
PERIOD_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DONE_WORD = {"retry": "retried", "cancel": "cancelled"}


def add_parsers(sub) -> None:
    """The subcommands of this module, on `hot`'s subparsers."""
    runs = sub.add_parser("runs", help="list runs, newest first, with the runs page's filters")
    add_filter_arguments(runs)
    runs.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    runs.add_argument("--after", help="continue after this cursor (printed after a full page)")
    runs.add_argument(
        "--json", dest="as_json", action="store_true", help="one JSON object per line"
    )

    for verb, what in (
        ("retry", "retry a failed run: a new attempt, same input"),
        ("rerun", "rerun a finished run: a fresh run, same input"),
        ("cancel", "cancel an unfinished run"),
    ):
        sub.add_parser(verb, help=what).add_argument("run_id")

    bulk_parser = sub.add_parser(
        "bulk", help="retry or cancel every run matching the filters, in batches"
    )
    bulk_parser.add_argument(
        "bulk_action", choices=["retry", "cancel"], help="retry failed or cancel unfinished runs"
    )
    add_filter_arguments(bulk_parser)
    bulk_parser.add_argument("--dry-run", action="store_true", help="only count them")
    bulk_parser.add_argument("--yes", action="store_true", help="do not ask to confirm")


def add_filter_arguments(parser) -> None:
    parser.add_argument(
        "--status", action="append", choices=RunStatus.values, help="repeat for several"
    )
    parser.add_argument("--function", help="a handler's name, or the short name the pages show")
    parser.add_argument("--type", dest="event_type", help="the event type")
    parser.add_argument("--trigger", choices=Trigger.values)
    parser.add_argument("--q", help='payload search, as in the search box: order_id:42 "words"')
    parser.add_argument("--since", help="YYYY-MM-DD[THH:MM[:SS]], in the server's time zone")
    parser.add_argument("--until", help="as --since")
    parser.add_argument("--period", help="the last 30m, 2h, 7d… (instead of --since)")


def handle(command, action: str, **options) -> None:
    HANDLERS[action](command, **options)


def filter_params(options: dict) -> dict:
    """The options as the runs page's query parameters."""
    params = {
        "status": options["status"] or [],
        "function": _function_name(options["function"]),
        "event_type": options["event_type"],
        "trigger": options["trigger"],
        "q": options["q"],
        "since": options["since"],
        "until": options["until"],
    }
    if options["period"]:
        if options["since"]:
            raise CommandError("Give --period or --since, not both.")
        since = timezone.localtime() - _period(options["period"])
        params["since"] = since.strftime("%Y-%m-%dT%H:%M:%S")
    return run_filter_params(params)


def _period(text: str) -> timedelta:
    match = PERIOD_RE.fullmatch(text.strip())
    if not match:
        raise CommandError(f"--period {text!r}: use a number and s, m, h, d or w, as in 30m.")
    return timedelta(**{PERIOD_UNITS[match[2]]: int(match[1])})


def _function_name(name: str | None) -> str | None:
    """A handler's full name from the short one the pages show, when one handler of this
    process has it; anything else as given (runs of handlers this process does not know)."""
    if not name or "." in name:
        return name
    matches = sorted(h.name for h in all_handlers() if short_function(h.name) == name)
    if len(matches) > 1:
        raise CommandError(
            f"Several handlers are called {name!r}: {', '.join(matches)}; give the full name."
        )
    return matches[0] if matches else name


def _valid_form(params: dict):
    form = run_filter_form(params)
    if not form.is_valid():
        raise CommandError("; ".join(form.error_messages()))
    return form


def list_runs(command, limit: int, after: str | None, as_json: bool, **options) -> None:
    form = _valid_form({**filter_params(options), "after": after or ""})
    # The API's list rows, without payloads: the same columns, the same JSON.
    rows, cursor = filtered_page(
        Run.objects.only(*RUN_ROW_FIELDS), form.cleaned_data, max(1, limit)
    )
    if as_json:
        for run in rows:
            command.stdout.write(json.dumps(run_json(run, payloads=False), cls=DjangoJSONEncoder))
    elif rows:
        _table(command, rows)
    else:
        command.stdout.write("No runs match.")
    if cursor is not None:
        command.stderr.write(f"More runs: add --after {encode_cursor(*cursor)}")


def _table(command, rows: list[Run]) -> None:
    lines = [("ID", "STATUS", "FUNCTION", "ATTEMPT", "CREATED", "DURATION")]
    for run in rows:
        status = run.status
        if status == RunStatus.RUNNING and run.cancel_requested_at:
            status += " (cancelling)"
        created = timezone.localtime(run.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        lines.append(
            (
                str(run.id),
                status,
                short_function(run.function),
                str(run.attempt),
                created,
                duration(run.duration_ms),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        command.stdout.write(
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        )


def act_on_run(command, action: str, run_id: str) -> None:
    try:
        if action == "retry":
            run = retry_run(run_id, actor=Actor.cli())
            note = f"attempt {run.attempt}, a retry of {run_id}"
        elif action == "rerun":
            run = rerun(run_id, actor=Actor.cli())
            note = f"a rerun of {run_id}, in a new stream"
        else:
            status = cancel_run(run_id, actor=Actor.cli())
            note = "cancelled" if status == RunStatus.CANCELLED else "asked to stop; it is running"
            command.stdout.write(f"{run_id} {status}  ({note})")
            return
    except HotError as exc:
        raise CommandError(str(exc)) from None
    command.stdout.write(f"{run.id} {run.status}  ({note})")


def run_bulk(command, bulk_action: str, dry_run: bool, yes: bool, **options) -> None:
    params = filter_params(options)
    try:
        count = bulk.preview(bulk_action, params)
    except HotError as exc:
        raise CommandError(str(exc)) from None
    command.stdout.write(bulk.describe(bulk_action, count, params) + ".")
    if dry_run:
        command.stdout.write("Dry run: nothing was changed.")
        return
    if not count:
        command.stdout.write("Nothing to do.")
        return
    if not yes:
        command.stdout.write("Proceed? [y/N] ", ending="")
        command.stdout.flush()
        answer = (options.get("stdin") or sys.stdin).readline()
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("Not confirmed; nothing was changed.")
    operation = bulk.start_bulk(bulk_action, params, Actor.cli(), ring=False)
    word = DONE_WORD[bulk_action]
    is_tty = command.stdout.isatty()

    def progress(op) -> None:
        line = f"{op.handled:,}/{op.total:,}: {op.done:,} {word}, {op.skipped:,} skipped"
        if op.failed:
            line += f", {op.failed:,} failed"
        command.stdout.write(("\r" if is_tty else "") + line, ending="" if is_tty else "\n")
        command.stdout.flush()

    try:
        finished = bulk.execute(operation.id, on_progress=progress)
    except KeyboardInterrupt:
        bulk.stop_bulk(operation.id)
        raise CommandError(
            f"\nStopped operation {operation.id}; the batches done so far stay done."
        ) from None
    if is_tty:
        command.stdout.write("")
    if finished is None:  # a worker took it over (this command was too slow to claim it)
        command.stdout.write(f"Operation {operation.id} is being done by a worker.")
        return
    command.stdout.write(
        f"Operation {finished.id} {finished.status}: {finished.done:,} {word}, "
        f"{finished.skipped:,} skipped (no longer fitting), {finished.failed:,} failed."
    )
    if finished.status != BulkStatus.DONE:
        raise CommandError(finished.last_error or f"The operation is {finished.status}.")
    if finished.failed:
        command.stderr.write(f"Last error: {finished.last_error}")


# Subcommand → function(command, **options).
HANDLERS = {
    "runs": list_runs,
    "retry": lambda command, run_id, **_: act_on_run(command, "retry", run_id),
    "rerun": lambda command, run_id, **_: act_on_run(command, "rerun", run_id),
    "cancel": lambda command, run_id, **_: act_on_run(command, "cancel", run_id),
    "bulk": run_bulk,
}
