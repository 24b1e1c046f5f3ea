"""Live figures of a run, drawn onto a flow's graph, and the colours of its states."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._graph import Edge, Node

__all__ = ("STATE_COLORS", "Figures", "StaticFigures", "edge_label", "state_of")

#: Fill and stroke colours of a processor in each state of a run.
STATE_COLORS: Mapping[str, tuple[str, str]] = {
    "pending": ("#f3f4f6", "#9ca3af"),
    "waiting": ("#fef9c3", "#ca8a04"),
    "running": ("#dbeafe", "#2563eb"),
    "retrying": ("#ffedd5", "#ea580c"),
    "done": ("#dcfce7", "#16a34a"),
    "failed": ("#fee2e2", "#dc2626"),
    "cancelled": ("#e5e7eb", "#6b7280"),
}


class Figures(Protocol):
    """What renderers need of a run's live figures to draw them onto a graph.

    A snapshot of a run implements these two methods (or is turned into a
    ``StaticFigures``); renderers call them for every edge and processor.
    """

    def stream_label(self, stream: str, reader: str | None) -> str | None:
        """Return the figures to show on the edge of ``stream`` to ``reader``.

        Args:
            stream: the stream's name.
            reader: the processor reading this edge; None for a flow output.

        Returns:
            A short text such as ``"120 written · 4/s · backlog 3"``, or None.
        """
        ...

    def processor_state(self, processor: str) -> str | None:
        """Return the state of a processor (``"running"``, ``"done"``...), or None.

        The states of ``STATE_COLORS`` are drawn in colour; any other text is
        shown as is.
        """
        ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StaticFigures:
    """Figures given as plain mappings.

    Attributes:
        streams: text shown on every edge of a stream, by stream name.
        reads: text shown on one edge only, by ``(stream, reader)``, e.g. what
            that reader has read.
        processors: state of each processor, by name.
    """

    streams: Mapping[str, str] = dataclasses.field(default_factory=dict)
    reads: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    processors: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def stream_label(self, stream: str, reader: str | None) -> str | None:
        """Join the stream's text and the reader's text."""
        parts = [self.streams.get(stream)]
        if reader is not None:
            parts.append(self.reads.get((stream, reader)))
        text = " · ".join(p for p in parts if p)
        return text or None

    def processor_state(self, processor: str) -> str | None:
        """Return the state given for the processor."""
        return self.processors.get(processor)


def state_of(node: Node, figures: Figures | None) -> str | None:
    """Return the state ``figures`` give a processor node (None for a stream)."""
    if figures is None or node.kind != "processor":
        return None
    return figures.processor_state(node.name)


def edge_label(edge: Edge, figures: Figures | None) -> str | None:
    """Return the figures to show on an edge, if any."""
    return None if figures is None else figures.stream_label(edge.stream, edge.reader)
