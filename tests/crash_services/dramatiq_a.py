"""Crash-test service A on Dramatiq: ``dramatiq tests.crash_services.dramatiq_a``."""

from .dramatiq_app import attach
from .flow import implement_service_a

attach()
implement_service_a()
