"""How a run ended, in a terminal: outcomes, errors, and where they were raised."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text

from .._errors import user_location
from ._figures import (
    elapsed,
    first_line,
    format_duration,
    run_duration,
    run_title,
    state_style,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rich.console import RenderableType

    from ..exceptions import UpstreamError
    from ..snapshot import RunSnapshot

__all__ = ("render_errors", "render_summary")


def render_summary(
    snapshot: RunSnapshot, errors: Mapping[str, UpstreamError] | None = None
) -> RenderableType:
    """Draw how a run ended: status, duration, outcomes, errors and where raised.

    One line per processor with its outcome; one per error, with the place in the
    user's code it was raised from (see ``_errors.user_location``).

    Args:
        snapshot: a snapshot of the finished run.
        errors: ``Run.errors()``; tells a processor that failed because a processor
            upstream did from the one that failed first.

    Returns:
        A renderable for ``Console.print()``.
    """
    errors = errors or {}
    duration = run_duration(snapshot)
    head = run_title(snapshot.run_id, snapshot.status)
    if duration is not None:
        head.append(f" in {format_duration(duration)}")
    procs = list(snapshot.processors.values())
    name_width = max((len(p.name) for p in procs), default=0)
    state_width = max((len(p.status) for p in procs), default=0)
    lines: list[RenderableType] = []
    for proc in procs:
        notes = []
        if proc.where is not None:
            notes.append(f"waiting for a worker: {proc.where}")
        if proc.attempt > 1:
            notes.append(f"attempt {proc.attempt}")
        if proc.takeovers:
            notes.append(f"taken over {proc.takeovers}x")
        origin = errors.get(proc.name)
        if origin is not None and _failed_upstream(proc.name, origin):
            notes.append(f"after {origin.processor} failed")
        line = Text.assemble(
            "  ",
            (proc.name.ljust(name_width), "bold"),
            "  ",
            (proc.status.ljust(state_width), state_style(proc.status)),
            "  ",
            elapsed(proc, snapshot.taken_at).rjust(6),
        )
        if notes:
            line.append(f"  ({', '.join(notes)})", style="dim")
        lines.append(line)
    parts: list[RenderableType] = [head, *lines]
    failed = [
        p
        for p in procs
        if p.error
        and p.status != "cancelled"
        and not p.error.startswith("Cancelled:")
        and not _failed_upstream(p.name, errors.get(p.name))
    ]
    if failed:
        parts.append(Text("Errors", style="bold red"))
        for proc in failed:
            line = Text.assemble(
                "  ", (proc.name, "bold"), ": ", (first_line(proc.error or ""), "red")
            )
            parts.append(line)
            where = user_location(proc.traceback)
            if where is not None:
                parts.append(Text(f"    at {where}", style="dim"))
    return Group(*parts)


def _failed_upstream(name: str, origin: UpstreamError | None) -> bool:
    """Whether a processor failed only because one upstream of it did."""
    return (
        origin is not None
        and origin.processor != name
        and origin.error_type != "Cancelled"
    )


def render_errors(
    snapshot: RunSnapshot, errors: Mapping[str, UpstreamError] | None = None
) -> RenderableType | None:
    """Draw each failed processor's error with its full traceback, or None.

    Args:
        snapshot: a snapshot of the run.
        errors: ``Run.errors()``; a processor that failed only because one
            upstream of it did gets one line naming that one, not the same
            traceback again.
    """
    errors = errors or {}
    parts: list[RenderableType] = []
    for proc in snapshot.processors.values():
        if not proc.error:
            continue
        line = Text.assemble(
            (proc.name, "bold"), " ", (proc.status, state_style(proc.status)), ": "
        )
        origin = errors.get(proc.name)
        if origin is not None and _failed_upstream(proc.name, origin):
            line.append(f"after {origin.processor} failed ({first_line(proc.error)})")
            parts += [line, Text()]
            continue
        line.append(proc.error, "red")
        parts.append(line)
        if proc.traceback:
            parts.append(Text(proc.traceback.rstrip("\n"), style="dim"))
        parts.append(Text())
    if not parts:
        return None
    return Group(Text("Errors", style="bold red"), *parts[:-1])
