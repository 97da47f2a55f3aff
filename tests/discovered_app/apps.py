from django.apps import AppConfig


class DiscoveredAppConfig(AppConfig):
    """An installed app whose `handlers` module no setting names (tests/test_registry.py)."""

    name = "tests.discovered_app"
    label = "discovered_app"
