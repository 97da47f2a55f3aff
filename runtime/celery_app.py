"""Celery: the app that rings the workers' doorbells, and the doorbell tasks themselves.

The tasks are one-line wrappers that take ids; all logic lives in the runtime. They are shared
tasks, so a project's own Celery app runs them too (`HOT = {"CELERY_APP": "proj.celery.app"}`
makes Hot publish through it). Without one, Hot's own app, configured from the CELERY_* settings,
does both; `celery -A hotproject worker` and `manage.py hot worker` run it.
"""

from celery import Celery, shared_task
from django.utils.module_loading import import_string

from hotapp.conf import hot_settings

# Not the current app: a project's own app, created before or after this one, stays current for
# the project's own shared tasks.
app = Celery("hot", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")


def celery_app() -> Celery:
    """The app Hot publishes through and starts workers of: the project's, or Hot's own."""
    name = hot_settings()["CELERY_APP"]
    return import_string(name) if name else app


# Each doorbell is acknowledged only after its run and put back if the worker dies, whatever
# the app's own defaults; a lost one is found again by the sweeper in any case.
DOORBELL = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(**DOORBELL, name="hot.execute_run")
def execute_run(run_id: str) -> None:
    from runtime import executor

    executor.drain(run_id)


@shared_task(**DOORBELL, name="hot.execute_task")
def execute_task(run_id: str) -> None:
    from runtime import executor

    executor.execute(run_id)


@shared_task(**DOORBELL, name="hot.promote_retry")
def promote_retry(run_id: str) -> None:
    from runtime import retry_attempts

    retry_attempts.promote(run_id)


@shared_task(**DOORBELL, name="hot.run_bulk")
def run_bulk(operation_id: str) -> None:
    from runtime import bulk

    bulk.execute(operation_id, slice_seconds=bulk.SLICE_SECONDS)


@shared_task(**DOORBELL, name="hot.deliver_alerts")
def deliver_alerts() -> None:
    from runtime import alert_delivery

    alert_delivery.deliver_due()
