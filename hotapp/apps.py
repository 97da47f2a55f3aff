from django.apps import AppConfig


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
