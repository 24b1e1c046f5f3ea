"""Crash-test service A on Celery: ``celery -A tests.crash_services.celery_a``."""

from .celery_app import attach
from .flow import implement_service_a

app = attach()
implement_service_a()
