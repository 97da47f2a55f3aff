"""The standalone project: settings, URLs and entry points (ASGI, Celery) around the `hotapp` app.

`manage.py hot dev` runs it on the embedded default; a Django project that adds Hot to itself
uses its own configuration instead (README, "Add Hot to your Django project")."""
