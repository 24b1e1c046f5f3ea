"""Executors: where processors run."""

from __future__ import annotations

from ._base import Executor as Executor
from .local import LocalExecutor as LocalExecutor

__all__ = ("Executor", "LocalExecutor")
