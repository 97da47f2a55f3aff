"""Database helpers shared by the runtime: retrying a transaction across a lost connection, and
the hand-built INSERTs of the hot path."""

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Model

logger = logging.getLogger("hot.db")
T = TypeVar("T")


def with_db_retry(fn: Callable[[], T], what: str, attempts: int = 6) -> T:
    """Call `fn`, reconnecting and trying again while the database is unreachable.

    A restarted PostgreSQL leaves a dead connection behind; dropping it and trying again within
    a few seconds saves a finished run's outcome instead of leaving it to lease recovery.
    `fn` must be a whole transaction, safe to run again after a failure.
    """
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            if attempt == attempts:
                raise
            logger.warning("database unavailable during %s; reconnecting (try %d)", what, attempt)
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


# Bound parameters per statement: PostgreSQL allows 65,535 and SQLite 32,766.
MAX_PARAMS = 30_000


def insert_sql(objs: Sequence[Model]) -> list[tuple[str, list]]:
    """The `INSERT … VALUES (…), (…)` statements for model instances of one model whose ids are
    set, as many as MAX_PARAMS requires.

    What bulk_create would write, without its per-call compiler machinery, which costs more
    than the statement itself at the sizes the executor writes (a few rows per batch).
    """
    meta = objs[0]._meta
    quote = connection.ops.quote_name
    # Auto ids come from the database. A field with a db_default is "db_returning" too, but
    # one that also has a Python default (Run.wait_reason) holds its value: write it.
    fields = [f for f in meta.concrete_fields if not (f.db_returning and not f.has_default())]
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = max(1, MAX_PARAMS // len(fields))
    statements = []
    for start in range(0, len(objs), per_statement):
        chunk = objs[start : start + per_statement]
        params = [
            field.get_db_prep_save(getattr(obj, field.attname), connection)
            for obj in chunk
            for field in fields
        ]
        statements.append((f"{head} VALUES {', '.join([row] * len(chunk))}", params))
    return statements


def insert_together(*groups: Sequence[Model]) -> None:
    """INSERT each non-empty group of model instances, in order: on PostgreSQL in one statement
    (each INSERT but the last a data-modifying CTE) when it fits, else one statement each."""
    statements = [statement for objs in groups if objs for statement in insert_sql(objs)]
    fits = sum(len(params) for _, params in statements) <= MAX_PARAMS
    if connection.vendor == "postgresql" and len(statements) > 1 and fits:
        ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(statements[:-1]))
        params = [p for _, group_params in statements for p in group_params]
        statements = [(f"WITH {ctes} {statements[-1][0]}", params)]
    # Several statements in autocommit would be several transactions: keep them one. (One
    # statement is atomic by itself, and a BEGIN would cost it two more round trips.)
    one_transaction = transaction.atomic(savepoint=False) if len(statements) > 1 else nullcontext()
    with one_transaction, connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
