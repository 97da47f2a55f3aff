"""Schedules declared in code, their state kept here."""

from django.db import models
from django.utils import timezone


class Schedule(models.Model):
    """A handler that fires on a cron schedule; declared in code, its state kept here."""

    name = models.CharField(max_length=300, unique=True)  #: the handler's registered name
    expression = models.CharField(max_length=200)
    is_paused = models.BooleanField(default=False)
    # How many missed ticks to run after downtime (0: only the latest due one).
    backfill = models.PositiveIntegerField(default=0)
    # The newest tick a run was created for; the scheduler fires ticks after it.
    last_tick_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.expression})"
