"""ASGI entry point: `daphne hotapp.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotapp.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (after Django is set up)
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# The dashboard's few static files are served by the app itself, so `daphne` alone is enough.
application = ProtocolTypeRouter({"http": ASGIStaticFilesHandler(django_asgi_app)})
