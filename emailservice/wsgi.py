"""WSGI entry point (gunicorn emailservice.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailservice.settings")
application = get_wsgi_application()
