from django.apps import AppConfig


class HotAppConfig(AppConfig):
    name = "hotapp"
    verbose_name = "Hot"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module level: the runtime uses the models, which must be loaded.
        from runtime.registry import discover_handlers

        discover_handlers()
