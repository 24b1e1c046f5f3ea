"""Crash-test service B on Dramatiq: ``dramatiq tests.crash_services.dramatiq_b``."""

from .dramatiq_app import attach
from .flow import implement_service_b

attach()
implement_service_b()
