"""Draw flows: a plain graph model of a resolved flow, and pure renderers of it.

``to_graph()`` turns a resolved ``Flow`` (or its ``Plan``) into a ``FlowGraph`` of
frozen dataclasses, once. Each format is a function of that model alone::

    graph = to_graph(flow)
    to_mermaid(graph)  # a Mermaid flowchart, for Markdown and the browser
    to_dot(graph)  # Graphviz DOT, for ``dot -Tsvg``
    to_text(graph)  # for terminals
    to_json(graph)  # a dict of plain values, for web pages

Every renderer takes an optional ``figures=`` argument: anything with the methods
of the ``Figures`` protocol (``StaticFigures`` builds one from dicts). It adds live
figures of a run (values written and read, backlog, rate, the state of each
processor) onto the same drawing, so a view of a running flow and a drawing of its
definition are the same picture.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .flow import Flow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._plan import Plan

__all__ = (
    "STATE_COLORS",
    "Edge",
    "Figures",
    "FlowGraph",
    "Node",
    "NodeKind",
    "StaticFigures",
    "to_dot",
    "to_graph",
    "to_json",
    "to_mermaid",
    "to_text",
)

#: What a node of the graph stands for.
NodeKind = Literal["processor", "input", "output"]

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

# Colours of the nodes of a flow's definition: (fill, stroke).
_PROCESSOR_COLORS = ("#f8fafc", "#475569")
_WAIT_COLORS = ("#fffbeb", "#d97706")
_INPUT_COLORS = ("#ecfdf5", "#059669")
_OUTPUT_COLORS = ("#eff6ff", "#2563eb")


# ------------------------------------------------------------------------- the model


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
    plan = flow.plan if isinstance(flow, Flow) else flow
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


# ----------------------------------------------------------------------- live figures


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


def _state(node: Node, figures: Figures | None) -> str | None:
    if figures is None or node.kind != "processor":
        return None
    return figures.processor_state(node.name)


def _edge_label(edge: Edge, figures: Figures | None) -> str | None:
    return None if figures is None else figures.stream_label(edge.stream, edge.reader)


# -------------------------------------------------------------------------- mermaid


def _mermaid_text(text: str) -> str:
    """Escape text for a quoted Mermaid label: entity codes for what it parses."""
    out: list[str] = []
    for char in text:
        if char == "\n":
            out.append("<br/>")
        elif char in '"#&<>`|\\' or not char.isprintable():
            out.append(f"#{ord(char)};")
        else:
            out.append(char)
    return "".join(out)


def _mermaid_ids(graph: FlowGraph) -> dict[str, str]:
    # Mermaid ids must be plain words (and not keywords such as ``end``): number
    # the nodes and keep names in the labels.
    prefix = {"input": "in", "processor": "p", "output": "out"}
    counts = dict.fromkeys(prefix, 0)
    ids: dict[str, str] = {}
    for node in graph.nodes:
        ids[node.id] = f"{prefix[node.kind]}{counts[node.kind]}"
        counts[node.kind] += 1
    return ids


def to_mermaid(graph: FlowGraph, *, figures: Figures | None = None) -> str:
    """Render the graph as a Mermaid flowchart, left to right.

    Processors are rounded boxes, ``wait=True`` processors dashed hexagons, flow
    inputs stadiums and flow outputs cylinders; each has a class (``processor``,
    ``wait``, ``input``, ``output``) styled by a ``classDef``. With ``figures``,
    edges carry their figures and processors their state, coloured.

    Args:
        graph: from ``to_graph()``.
        figures: live figures of a run, drawn onto the graph.

    Returns:
        The flowchart's source, ending with a newline.
    """
    ids = _mermaid_ids(graph)
    lines = ["flowchart LR"]
    classes: dict[str, list[str]] = {}
    for node in graph.nodes:
        label = [_mermaid_text(node.name)]
        label += [f"<i>{_mermaid_text(d)}</i>" for d in node.details]
        state = _state(node, figures)
        if state:
            label.append(f"<b>{_mermaid_text(state)}</b>")
        text = '"' + "<br/>".join(label) + '"'
        if node.kind == "input":
            shape = f"([{text}])"
        elif node.kind == "output":
            shape = f"[({text})]"
        elif node.wait:
            shape = "{{" + text + "}}"
        else:
            shape = f"({text})"
        lines.append(f"    {ids[node.id]}{shape}")
        kind = "wait" if node.wait else node.kind
        classes.setdefault(kind, []).append(ids[node.id])
        if state in STATE_COLORS:
            classes.setdefault(f"state_{state}", []).append(ids[node.id])
    for edge in graph.edges:
        text = _mermaid_text(edge.stream)
        extra = _edge_label(edge, figures)
        if extra:
            text += "<br/>" + _mermaid_text(extra)
        lines.append(f'    {ids[edge.source]} -->|"{text}"| {ids[edge.target]}')
    styles = {
        "processor": (*_PROCESSOR_COLORS, ""),
        "wait": (*_WAIT_COLORS, ",stroke-dasharray:5 3"),
        "input": (*_INPUT_COLORS, ""),
        "output": (*_OUTPUT_COLORS, ""),
    }
    styles.update(
        {f"state_{s}": (*c, ",stroke-width:2px") for s, c in STATE_COLORS.items()}
    )
    for name, (fill, stroke, more) in styles.items():
        if name in classes:
            lines.append(f"    classDef {name} fill:{fill},stroke:{stroke}{more}")
    # Later ``class`` lines win, so a processor's state colours it over its kind.
    lines.extend(
        f"    class {','.join(members)} {name}" for name, members in classes.items()
    )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ dot


def _dot_str(text: str) -> str:
    r"""Quote text as a DOT string; ``\`` and ``"`` escaped, newlines as ``\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_attrs(**attrs: str) -> str:
    return ", ".join(f"{key}={_dot_str(value)}" for key, value in attrs.items())


def to_dot(graph: FlowGraph, *, figures: Figures | None = None) -> str:
    """Render the graph as Graphviz DOT, left to right.

    Node ids are the graph's node ids, quoted, so any stream or processor name is
    safe. Processors are rounded boxes, ``wait=True`` processors dashed hexagons,
    flow inputs arrow shapes and flow outputs cylinders. Render it with
    ``dot -Tsvg``.

    Args:
        graph: from ``to_graph()``.
        figures: live figures of a run, drawn onto the graph.

    Returns:
        The DOT source of a ``digraph``, ending with a newline.
    """
    lines = [
        "digraph flow {",
        "    rankdir=LR;",
        '    graph [fontname="Helvetica", nodesep=0.4, ranksep=0.6];',
        '    node [fontname="Helvetica", fontsize=12, penwidth=1.2];',
        '    edge [fontname="Helvetica", fontsize=10, color="#64748b"];',
    ]
    for node in graph.nodes:
        label = [node.name, *node.details]
        state = _state(node, figures)
        if state:
            label.append(state)
        if node.kind == "input":
            attrs = {"shape": "cds", "style": "filled", "tooltip": "flow input"}
            fill, stroke = _INPUT_COLORS
        elif node.kind == "output":
            attrs = {"shape": "cylinder", "style": "filled", "tooltip": "flow output"}
            fill, stroke = _OUTPUT_COLORS
        elif node.wait:
            attrs = {"shape": "hexagon", "style": "filled,dashed"}
            fill, stroke = _WAIT_COLORS
        else:
            attrs = {"shape": "box", "style": "rounded,filled"}
            fill, stroke = _PROCESSOR_COLORS
        if state is not None and state in STATE_COLORS:
            fill, stroke = STATE_COLORS[state]
            attrs["penwidth"] = "2"
        attrs |= {"label": "\n".join(label), "fillcolor": fill, "color": stroke}
        lines.append(f"    {_dot_str(node.id)} [{_dot_attrs(**attrs)}];")
    for edge in graph.edges:
        text = edge.stream
        extra = _edge_label(edge, figures)
        if extra:
            text += "\n" + extra
        lines.append(
            f"    {_dot_str(edge.source)} -> {_dot_str(edge.target)} "
            f"[{_dot_attrs(label=text)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- text


def _table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    """Align columns; the last column is not padded."""
    rows = list(rows)
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  " + "".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1]
        for r in rows
    ]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def to_text(graph: FlowGraph, *, figures: Figures | None = None) -> str:
    """Render the graph for a terminal, in plain text.

    One line per processor, in the order they run (what it reads, then what it
    writes; ``[in]`` and ``[out]`` mark the flow's inputs and outputs), then one
    line per stream and reader, with its figures when given::

        [in] numbers  --> double (waits for inputs)  --> [out] doubled

    Args:
        graph: from ``to_graph()``.
        figures: live figures of a run, shown on the lines.

    Returns:
        The text, ending with a newline.
    """
    inputs, outputs = set(graph.inputs), set(graph.outputs)

    def stream(name: str) -> str:
        if name in inputs:
            return f"[in] {name}"
        return f"[out] {name}" if name in outputs else name

    def proc(node: Node) -> str:
        notes = list(node.details)
        text = node.name + (f" ({', '.join(notes)})" if notes else "")
        state = _state(node, figures)
        return text + (f" [{state}]" if state else "")

    read: dict[str, list[str]] = {}
    written: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.reader is not None:
            read.setdefault(edge.reader, []).append(edge.stream)
        if edge.writer is not None and edge.stream not in written.get(edge.writer, ()):
            written.setdefault(edge.writer, []).append(edge.stream)
    procs = graph.processors
    head = (
        f"Flow: {_plural(len(procs), 'processor')}, "
        f"{_plural(len(inputs), 'input')}, {_plural(len(outputs), 'output')}"
    )
    lines = [head, ""]
    lines += _table(
        (
            ", ".join(stream(s) for s in read.get(node.name, ())) or "(no inputs)",
            "  -->  ",
            proc(node),
            "  -->  ",
            ", ".join(stream(s) for s in written.get(node.name, ())) or "(no outputs)",
        )
        for node in procs
    )
    lines += ["", "Streams:"]
    rows: list[tuple[str, ...]] = []
    for edge in graph.edges:
        source = "[in]" if edge.writer is None else edge.writer
        target = "[out]" if edge.reader is None else edge.reader
        extra = _edge_label(edge, figures)
        rows.append(
            (edge.stream, "  ", source, " --> ", target, f"   {extra}" if extra else "")
        )
    lines += [line.rstrip() for line in _table(rows)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- json


def to_json(graph: FlowGraph, *, figures: Figures | None = None) -> dict[str, Any]:
    """Render the graph as a dict of plain values, ready for ``json.dumps()``.

    Args:
        graph: from ``to_graph()``.
        figures: live figures of a run: adds ``state`` to processor nodes and
            ``label`` to edges.

    Returns:
        ``{"nodes": [...], "edges": [...], "inputs": [...], "outputs": [...]}``;
        each node has ``id``, ``kind``, ``name``, ``wait`` and ``retries``, each
        edge ``stream``, ``source``, ``target``, ``writer`` and ``reader``.
    """
    as_dict: Callable[[Any], dict[str, Any]] = dataclasses.asdict
    nodes = []
    for node in graph.nodes:
        item = as_dict(node)
        if figures is not None and node.kind == "processor":
            item["state"] = _state(node, figures)
        nodes.append(item)
    edges = []
    for edge in graph.edges:
        item = as_dict(edge)
        if figures is not None:
            item["label"] = _edge_label(edge, figures)
        edges.append(item)
    return {
        "nodes": nodes,
        "edges": edges,
        "streams": list(graph.streams),
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
    }
