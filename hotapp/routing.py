"""The dashboard's websocket, to be mounted under the same prefix as hotapp.urls: the pages
connect to `<prefix>ws/live/` (hotproject/asgi.py mounts both at the root)."""

from django.urls import path

from hotapp.consumers import LiveConsumer

websocket_urlpatterns = [path("ws/live/", LiveConsumer.as_asgi())]
