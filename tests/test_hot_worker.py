"""`python manage.py hot worker …` starts a Celery worker with the arguments given."""

from django.core.management import load_command_class

from runtime.celery_app import app


def test_hot_worker_hands_its_arguments_to_celery_untouched(monkeypatch):
    started = []
    monkeypatch.setattr(app, "worker_main", started.append)

    load_command_class("hotapp", "hot").run_from_argv(
        ["manage.py", "hot", "worker", "--concurrency=2", "-Q", "hot.tasks", "--pool", "threads"]
    )

    assert started == [
        ["worker", "--loglevel=INFO", "--concurrency=2", "-Q", "hot.tasks", "--pool", "threads"]
    ]
