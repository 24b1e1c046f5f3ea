"""Crash-test service B on Celery: ``celery -A tests.crash_services.celery_b``."""

from .celery_app import attach
from .flow import implement_service_b

app = attach()
implement_service_b()
