"""Executors: where processors run.

``CeleryExecutor`` imports Celery only when one is created (``datagraph[celery]``).
``DramatiqExecutor`` (needs the ``dramatiq`` extra) is imported on first use, so
``import datagraph`` never loads Dramatiq.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Executor as Executor
from .celery import CeleryExecutor as CeleryExecutor
from .local import LocalExecutor as LocalExecutor

if TYPE_CHECKING:
    from .dramatiq import DramatiqExecutor as DramatiqExecutor

__all__ = ("CeleryExecutor", "DramatiqExecutor", "Executor", "LocalExecutor")


def __getattr__(name: str) -> Any:
    if name == "DramatiqExecutor":
        from .dramatiq import DramatiqExecutor

        return DramatiqExecutor
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
