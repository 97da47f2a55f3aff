"""API tokens and the audit trail of actions on runs, tasks and schedules."""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hotapp.models.runs import Run
from hotapp.models.schedules import Schedule
from hotapp.models.tasks import Task


class ApiToken(models.Model):
    """A secret that lets a script call the JSON API as its user (`Authorization: Bearer …`).

    Only the secret's SHA-256 is stored: a copy of the database does not hand out working
    tokens. (A slow password hash is not needed: the secret is 256 random bits, not a guessable
    word.) The prefix stays visible so a person can tell their tokens apart.
    """

    PREFIX_CHARS = 12  # "hot_" and 8 characters of the secret

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hot_api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=PREFIX_CHARS)
    # Unique: its index serves the lookup of every API request (WHERE secret_hash = %s).
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    # Django also indexes the foreign key user_id: the tokens page (a user's own tokens) and the
    # CASCADE when a user is deleted.

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name: str) -> tuple["ApiToken", str]:
        """A new token for `user` and its secret, which is shown once and never stored."""
        secret = "hot_" + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=secret[: cls.PREFIX_CHARS], secret_hash=cls.hash(secret)
        )
        return token, secret

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Via(models.TextChoices):
    PAGE = "page", "dashboard"  #: a button on a Hot App page
    API = "api", "API"  #: the JSON API
    CLI = "cli", "CLI"  #: `manage.py hot …`
    CODE = "code", "code"  #: a program calling the runtime (runtime.retry_run(…))


class AuditAction(models.TextChoices):
    # The labels read as the start of the sentence a page shows ("Retried by alice at …").
    RETRY = "retry", "Retried"
    RERUN = "rerun", "Rerun"
    CANCEL = "cancel", "Cancelled"
    TASK_CANCEL = "task_cancel", "Cancelled"
    TASK_SEND = "task_send", "Message sent"
    TASK_CLOSE = "task_close", "Inbox closed"
    SCHEDULE_PAUSE = "schedule_pause", "Paused"
    SCHEDULE_RESUME = "schedule_resume", "Resumed"


class AuditEntry(models.Model):
    """Who did what to a run, task or schedule, when and through what; written by the runtime
    in the same transaction as the action (runtime/audit.py)."""

    id = models.BigAutoField(primary_key=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    # What the action concerns: exactly one of these. Its history goes with it.
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    schedule = models.ForeignKey(
        Schedule, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    # The run the action made (a retry's attempt, a rerun), if any.
    result_run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Null for the CLI and for programs; the name stays when the user is deleted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, default="")
    via = models.CharField(max_length=8, choices=Via.choices)
    created_at = models.DateTimeField(default=timezone.now)

    # Django indexes every foreign key, which serve: run_id and result_run_id a run page's
    # history (WHERE run_id = %s OR result_run_id = %s), task_id a task page's, schedule_id the
    # schedules page's last change, user_id SET NULL when a user is deleted; and the CASCADEs.

    class Meta:
        verbose_name_plural = "audit entries"

    @classmethod
    def of_run(cls, run_id) -> models.QuerySet["AuditEntry"]:
        """A run's history: what was done to it, and the action that made it, oldest first."""
        return cls.objects.filter(Q(run_id=run_id) | Q(result_run_id=run_id)).order_by("id")

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.username or '?'} via {self.via}"
