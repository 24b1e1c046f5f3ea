"""The graph model of a resolved flow: processors and streams as frozen dataclasses.

It is built from the flow's ``Plan`` alone (not from ``Flow``), so that ``flow.py``
can import the renderers while this package never imports ``flow.py``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from .._plan import Plan

if TYPE_CHECKING:
    from ..flow import Flow

__all__ = ("Edge", "FlowGraph", "Node", "NodeKind", "to_graph")

#: What a node of the graph stands for.
NodeKind = Literal["processor", "input", "output"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A processor of the flow, or one of its input or output streams.

    Attributes:
        id: unique in the graph: ``"processor:<name>"``, ``"input:<stream>"`` or
            ``"output:<stream>"`` (a processor and a stream may share a name).
        kind: ``"processor"``, ``"input"`` (a stream given when a run starts) or
            ``"output"`` (a stream no processor reads).
        name: the processor's name, or the stream's.
        wait: a processor that starts only once all its inputs are complete.
        retries: how many times a failed processor is run again.
    """

    id: str
    kind: NodeKind
    name: str
    wait: bool = False
    retries: int = 0

    @property
    def details(self) -> tuple[str, ...]:
        """Short notes on how a processor runs, e.g. ``("waits for inputs",)``."""
        notes: list[str] = []
        if self.wait:
            notes.append("waits for inputs")
        if self.retries:
            notes.append(f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}")
        return tuple(notes)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """A stream going from its producer to one reader.

    A stream read by two processors gives two edges; a stream no processor reads
    goes to an ``output`` node.

    Attributes:
        stream: the stream's name.
        source: the id of the node writing it (a processor, or an ``input`` node).
        target: the id of the node reading it (a processor, or an ``output`` node).
        writer: the name of the processor writing it; None for a flow input.
        reader: the name of the processor reading it; None for a flow output.
    """

    stream: str
    source: str
    target: str
    writer: str | None
    reader: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FlowGraph:
    """A resolved flow as a graph; build one with ``to_graph()``.

    Processors and the flow's inputs and outputs are its nodes, streams its edges.

    Attributes:
        nodes: the flow's input nodes, then processors in the order they run
            (each after those it reads from), then output nodes.
        edges: one per stream and reader, in the order of ``streams``.
        streams: every stream of the flow, inputs first.
    """

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    streams: tuple[str, ...]

    def node(self, node_id: str) -> Node:
        """Return the node with this id.

        Raises:
            KeyError: no node has this id.
        """
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def processors(self) -> tuple[Node, ...]:
        """The processor nodes, in the order they run."""
        return tuple(n for n in self.nodes if n.kind == "processor")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The streams a run is started with."""
        return tuple(n.name for n in self.nodes if n.kind == "input")

    @property
    def outputs(self) -> tuple[str, ...]:
        """The streams no processor reads."""
        return tuple(n.name for n in self.nodes if n.kind == "output")

    def edges_of(self, stream: str) -> tuple[Edge, ...]:
        """Return the edges of one stream: one per reader."""
        return tuple(e for e in self.edges if e.stream == stream)


def to_graph(flow: Flow | Plan) -> FlowGraph:
    """Build the graph of a resolved flow.

    Args:
        flow: a resolved ``Flow``, or the ``Plan`` of one (as stored with a run).

    Returns:
        The graph; render it with ``to_mermaid()``, ``to_dot()``, ``to_text()`` or
        ``to_json()``.

    Raises:
        UnresolvedFlowError: the flow was not resolved.
    """
    plan = flow if isinstance(flow, Plan) else flow.plan
    inputs = {s: Node(id=f"input:{s}", kind="input", name=s) for s in plan.inputs}
    outputs = {s: Node(id=f"output:{s}", kind="output", name=s) for s in plan.outputs}
    procs = {
        p.name: Node(
            id=f"processor:{p.name}",
            kind="processor",
            name=p.name,
            wait=p.wait,
            retries=p.retries,
        )
        for p in plan.processors
    }
    edges: list[Edge] = []
    for stream in plan.streams:
        writer = plan.producer_of(stream)
        if writer is not None:
            source = procs[writer].id
        elif stream in inputs:
            source = inputs[stream].id
        else:  # pragma: no cover - a resolved plan reads no stream without a source
            continue
        edges.extend(
            Edge(
                stream=stream,
                source=source,
                target=procs[reader.name].id,
                writer=writer,
                reader=reader.name,
            )
            for reader in plan.consumers_of(stream)
        )
        if stream in outputs:
            edges.append(
                Edge(
                    stream=stream,
                    source=source,
                    target=outputs[stream].id,
                    writer=writer,
                    reader=None,
                )
            )
    return FlowGraph(
        nodes=(*inputs.values(), *procs.values(), *outputs.values()),
        edges=tuple(edges),
        streams=plan.streams,
    )
