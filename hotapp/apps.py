from django.apps import AppConfig
from django.core import checks


class HotAppConfig(AppConfig):
    name = "hotapp"
    verbose_name = "Hot"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module level: the runtime uses the models, which must be loaded.
        # The doorbell tasks are shared tasks: importing them registers them with every Celery
        # app, the project's own included.
        import runtime.celery_app  # noqa: F401
        from runtime.registry import discover_handlers

        discover_handlers()
        checks.register(check_alert_channels)


def check_alert_channels(**kwargs) -> list[checks.CheckMessage]:
    """A malformed HOT["ALERT_CHANNELS"] entry is reported at start-up (the runtime leaves it
    out rather than fail a run's completion over it)."""
    from hotapp.conf import hot_settings
    from runtime.alerts import parse_channels

    _, errors = parse_channels(hot_settings()["ALERT_CHANNELS"])
    return [checks.Error(error, id="hot.E001") for error in errors]
