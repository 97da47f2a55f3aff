"""Celery acknowledges a doorbell only after its run, and puts it back if the worker dies."""

from runtime.celery_app import app, execute_run, execute_task, promote_retry


def test_the_app_acknowledges_late_and_rejects_on_a_lost_worker():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True


def test_every_task_wrapper_acknowledges_late_and_rejects_on_a_lost_worker():
    for wrapper in (execute_run, execute_task, promote_retry):
        assert wrapper.acks_late is True, wrapper.name
        assert wrapper.reject_on_worker_lost is True, wrapper.name
