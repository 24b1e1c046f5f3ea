"""Executors: where processors run.

``CeleryExecutor`` imports Celery only when one is created (``datagraph[celery]``).
"""

from __future__ import annotations

from ._base import Executor as Executor
from .celery import CeleryExecutor as CeleryExecutor
from .local import LocalExecutor as LocalExecutor

__all__ = ("CeleryExecutor", "Executor", "LocalExecutor")
