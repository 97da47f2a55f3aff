"""Running the worker and the sweeper inside another process (`hot dev`, tests)."""

import logging
import os
import threading
from dataclasses import dataclass

from celery.worker import WorkController

from hotapp.conf import hot_settings
from runtime import scheduler
from runtime.celery_app import celery_app

logger = logging.getLogger("hot.embedded")


class _ThreadWorker(WorkController):
    """A Celery worker that runs in a thread and says when it is consuming."""

    def __init__(self, *args, **kwargs) -> None:
        self.started = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer) -> None:
        self.started.set()


@dataclass
class Embedded:
    worker: _ThreadWorker
    worker_thread: threading.Thread
    stop_sweeper: threading.Event
    sweeper_thread: threading.Thread

    def stop(self) -> None:
        self.stop_sweeper.set()
        self.worker.stop(in_sighandler=False)
        self.worker_thread.join(10)
        self.sweeper_thread.join(10)


def start(concurrency: int = 4, sweep_interval: float | None = None) -> Embedded:
    """Start a thread-pool Celery worker and a sweeper in this process; wait until consuming."""
    app = celery_app()
    app.finalize()
    worker = _ThreadWorker(
        app=app,
        # One worker for both queues: Celery keeps the queue selection per app, so two workers
        # in one process cannot consume different queues. Production runs task attempts on
        # workers of their own (`hot worker -Q hot.tasks`).
        queues=["celery", hot_settings()["TASK_QUEUE"]],
        pool="threads",
        concurrency=concurrency,
        hostname=f"embedded-{os.getpid()}@localhost",
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    worker_thread = threading.Thread(target=worker.start, name="hot-worker", daemon=True)
    worker_thread.start()
    if not worker.started.wait(30):
        raise RuntimeError("the embedded Celery worker did not start within 30 s")
    stop = threading.Event()
    sweeper_thread = threading.Thread(
        target=scheduler.run_forever, args=(stop, sweep_interval), name="hot-scheduler", daemon=True
    )
    sweeper_thread.start()
    return Embedded(worker, worker_thread, stop, sweeper_thread)
