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

from ._diagrams import to_dot as to_dot
from ._diagrams import to_mermaid as to_mermaid
from ._figures import STATE_COLORS as STATE_COLORS
from ._figures import Figures as Figures
from ._figures import StaticFigures as StaticFigures
from ._graph import Edge as Edge
from ._graph import FlowGraph as FlowGraph
from ._graph import Node as Node
from ._graph import NodeKind as NodeKind
from ._graph import to_graph as to_graph
from ._plain import to_json as to_json
from ._plain import to_text as to_text

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
