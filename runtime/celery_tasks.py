"""Celery tasks: one-line wrappers that take ids. All logic lives in the runtime."""

from runtime import executor, retries
from runtime.celery_app import app


@app.task(name="hot.execute_run")
def execute_run(run_id: str) -> None:
    executor.drain(run_id)


@app.task(name="hot.execute_task")
def execute_task(run_id: str) -> None:
    executor.execute(run_id)


@app.task(name="hot.promote_retry")
def promote_retry(run_id: str) -> None:
    retries.promote(run_id)
