"""Who did an action: the runtime's action functions take an optional `actor` and record it.

The record is written inside the action's own transaction, so an action that rolls back leaves
no entry and an entry never describes an action that did not happen.
"""

import getpass
from dataclasses import dataclass
from typing import Any

from hotapp.models import AuditEntry, Via


@dataclass(frozen=True)
class Actor:
    """Who asks for an action and through what: `Actor(request.user, via="page")`.

    `name` is the name to show when there is no user (the CLI records the shell's login name).
    """

    user: Any = None  # an instance of settings.AUTH_USER_MODEL, or None
    # A Via (and `action` below an AuditAction): Django's labelled choices, which mypy sees as
    # tuples without Django's type stubs, hence Any.
    via: Any = Via.CODE
    name: str = ""

    @classmethod
    def cli(cls) -> "Actor":
        """The person at a shell running `manage.py hot …`, by their login name."""
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no USER variable and no passwd entry (some containers)
            name = ""
        return cls(via=Via.CLI, name=name)

    @property
    def username(self) -> str:
        if self.user is not None and self.user.is_authenticated:
            return str(self.user.get_username())
        return self.name


# What a program calling the runtime without saying who it is records.
CODE = Actor()


def record(action: Any, actor: Actor | None, **concerns: Any) -> AuditEntry:
    """Write one audit entry; `concerns` names what it is about (run=…, task=…, schedule=…,
    result_run=…), as objects or as ids (run_id=…)."""
    actor = actor or CODE
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    return AuditEntry.objects.create(
        action=action, user=user, username=actor.username, via=actor.via, **concerns
    )
