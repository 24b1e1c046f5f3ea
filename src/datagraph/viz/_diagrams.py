"""Diagram renderers of a flow's graph: Mermaid flowcharts and Graphviz DOT."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._figures import STATE_COLORS, edge_label, state_of

if TYPE_CHECKING:
    from ._figures import Figures
    from ._graph import FlowGraph

__all__ = ("to_dot", "to_mermaid")

# Colours of the nodes of a flow's definition: (fill, stroke).
_PROCESSOR_COLORS = ("#f8fafc", "#475569")
_WAIT_COLORS = ("#fffbeb", "#d97706")
_INPUT_COLORS = ("#ecfdf5", "#059669")
_OUTPUT_COLORS = ("#eff6ff", "#2563eb")


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
        state = state_of(node, figures)
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
        extra = edge_label(edge, figures)
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
        state = state_of(node, figures)
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
        extra = edge_label(edge, figures)
        if extra:
            text += "\n" + extra
        lines.append(
            f"    {_dot_str(edge.source)} -> {_dot_str(edge.target)} "
            f"[{_dot_attrs(label=text)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
