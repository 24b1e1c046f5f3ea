"""Drawing flows: the graph model and each renderer of it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from datagraph import Flow, Processor, UnresolvedFlowError
from datagraph._plan import decode_plan, encode
from datagraph.viz import (
    Edge,
    FlowGraph,
    Node,
    StaticFigures,
    to_dot,
    to_graph,
    to_json,
    to_mermaid,
    to_text,
)
from flows_for_cli import ODD, etl, make_shapes, shapes

MERGE = "viz merge 'all'"

# The figures of a run in progress, as a live view would join them on.
FIGURES = StaticFigures(
    streams={"numbers": "120 written · 4/s"},
    reads={("numbers", "viz_double"): "read 100 · backlog 20"},
    processors={"viz_double": "running", MERGE: "waiting", "viz_audit": "odd state"},
)


def _edges(graph: FlowGraph) -> set[tuple[str, str, str]]:
    return {(e.stream, e.source, e.target) for e in graph.edges}


# ---------------------------------------------------------------------- the model


def test_graph_has_a_node_per_processor_input_and_output() -> None:
    graph = to_graph(shapes)

    assert [n.id for n in graph.nodes] == [
        "input:numbers",
        "processor:viz_double",
        "processor:viz_square",
        f"processor:{MERGE}",
        "processor:viz_audit",
        "output:merged",
        "output:end",
        "output:audit log",
    ]
    assert graph.inputs == ("numbers",)
    assert graph.outputs == ("merged", "end", "audit log")
    assert [n.name for n in graph.processors] == [
        p.name for p in shapes.plan.processors
    ]
    merge = graph.node(f"processor:{MERGE}")
    assert merge == Node(
        id=f"processor:{MERGE}", kind="processor", name=MERGE, wait=True
    )
    assert merge.details == ("waits for inputs",)
    assert not graph.node("processor:viz_double").wait
    assert graph.streams == shapes.plan.streams
    with pytest.raises(KeyError):
        graph.node("processor:nobody")


def test_edges_are_streams_one_per_reader() -> None:
    graph = to_graph(shapes)

    assert _edges(graph) == {
        # fan-out: one stream, three readers
        ("numbers", "input:numbers", "processor:viz_double"),
        ("numbers", "input:numbers", "processor:viz_square"),
        ("numbers", "input:numbers", "processor:viz_audit"),
        # fan-in: two streams into one processor
        ("doubled", "processor:viz_double", f"processor:{MERGE}"),
        (ODD, "processor:viz_square", f"processor:{MERGE}"),
        # leaves go to output nodes
        ("merged", f"processor:{MERGE}", "output:merged"),
        ("end", f"processor:{MERGE}", "output:end"),
        ("audit log", "processor:viz_audit", "output:audit log"),
    }
    assert len(graph.edges) == len(_edges(graph))
    assert graph.edges_of("numbers")[0] == Edge(
        stream="numbers",
        source="input:numbers",
        target="processor:viz_double",
        writer=None,
        reader="viz_double",
    )
    assert graph.edges_of("merged")[0].reader is None
    assert graph.edges_of("merged")[0].writer == MERGE


def test_graph_of_a_plan_equals_graph_of_its_flow() -> None:
    stored = decode_plan(encode(etl.plan))  # as another process reads it from a run
    assert to_graph(stored) == to_graph(etl)
    assert to_graph(etl).node("processor:viz_load").retries == 2
    assert to_graph(etl).node("processor:viz_load").details == ("2 retries",)


def test_graph_model_is_frozen() -> None:
    graph = to_graph(etl)
    with pytest.raises(AttributeError):
        graph.nodes = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        graph.nodes[0].name = "other"  # type: ignore[misc]


def test_unresolved_flow_is_refused() -> None:
    with pytest.raises(UnresolvedFlowError, match="resolve"):
        to_graph(make_shapes())


def test_processor_without_inputs_or_outputs() -> None:
    lonely = Processor(name="viz_lonely")
    source = Processor(name="viz_source", outputs=["ticks"])
    graph = to_graph(Flow.from_processors(lonely, source).resolve())

    assert graph.inputs == ()
    assert _edges(graph) == {("ticks", "processor:viz_source", "output:ticks")}
    text = to_text(graph)
    assert "(no inputs)  -->  viz_lonely  -->  (no outputs)" in text
    _check_dot(to_dot(graph), graph)


# ------------------------------------------------------------------------- mermaid

_NODE = re.compile(r"^    (\w+)(\(\[|\[\(|\{\{|\()\"(.*)\"(\]\)|\)\]|\}\}|\))$")
_EDGE = re.compile(r'^    (\w+) -->\|"(.*)"\| (\w+)$')
_CLASS = re.compile(r"^    class ([\w,]+) (\w+)$")
_CLASSDEF = re.compile(
    r"^    classDef (\w+) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6}(,.+)?$"
)


def _parse_mermaid(text: str) -> dict[str, dict[str, object]]:
    """Check every line's form; return each node's shape, label and classes."""
    lines = text.splitlines()
    assert text.endswith("\n")
    assert lines[0] == "flowchart LR"
    nodes: dict[str, dict[str, object]] = {}
    edges: list[tuple[str, str, str]] = []
    defined: set[str] = set()
    for line in lines[1:]:
        if m := _NODE.match(line):
            assert m[1] not in nodes, f"node {m[1]} defined twice"
            nodes[m[1]] = {"shape": m[2], "label": m[3], "classes": []}
        elif m := _EDGE.match(line):
            edges.append((m[1], m[2], m[3]))
        elif m := _CLASS.match(line):
            for node in m[1].split(","):
                nodes[node]["classes"].append(m[2])  # type: ignore[attr-defined]
        elif m := _CLASSDEF.match(line):
            defined.add(m[1])
        else:
            pytest.fail(f"unexpected Mermaid line: {line!r}")
    for node in nodes.values():
        # A label never holds a raw quote: it would end the string.
        assert '"' not in str(node["label"])
        for name in node["classes"]:  # type: ignore[attr-defined]
            assert name in defined
    for source, label, target in edges:
        assert source in nodes
        assert target in nodes
        assert '"' not in label
    nodes["__edges__"] = {"list": edges}
    return nodes


def test_mermaid_draws_every_node_and_edge() -> None:
    graph = to_graph(shapes)
    parsed = _parse_mermaid(to_mermaid(graph))
    edges = parsed.pop("__edges__")["list"]
    by_label = {str(n["label"]).split("<br/>")[0]: n for n in parsed.values()}

    assert set(by_label) == {n.name for n in graph.nodes}
    assert len(edges) == len(graph.edges)  # type: ignore[arg-type]
    # Shapes: inputs are stadiums, outputs cylinders, processors round boxes, and
    # the waiting processor a hexagon with a class of its own.
    assert by_label["numbers"]["shape"] == "(["
    assert by_label["numbers"]["classes"] == ["input"]
    assert by_label["merged"]["shape"] == "[("
    assert by_label["merged"]["classes"] == ["output"]
    assert by_label["viz_double"]["shape"] == "("
    assert by_label["viz_double"]["classes"] == ["processor"]
    assert by_label[MERGE]["shape"] == "{{"
    assert by_label[MERGE]["classes"] == ["wait"]
    assert "waits for inputs" in str(by_label[MERGE]["label"])
    # The stream with quotes and markup is written with entity codes.
    labels = {label for _, label, _ in edges}  # type: ignore[attr-defined]
    assert (
        "the #34;odd#34; stream #92; #35;1 #60;x#62; #38; #96;y#96; #124; end" in labels
    )
    # ``end`` is a Mermaid keyword: it only ever appears as a label.
    assert "end" not in parsed


def test_mermaid_with_figures() -> None:
    parsed = _parse_mermaid(to_mermaid(to_graph(shapes), figures=FIGURES))
    edges = parsed.pop("__edges__")["list"]
    by_name = {str(n["label"]).split("<br/>")[0]: n for n in parsed.values()}

    assert by_name["viz_double"]["classes"] == ["processor", "state_running"]
    assert "<b>running</b>" in str(by_name["viz_double"]["label"])
    assert by_name[MERGE]["classes"] == ["wait", "state_waiting"]
    # A state without a colour is shown, not styled.
    assert by_name["viz_audit"]["classes"] == ["processor"]
    assert "<b>odd state</b>" in str(by_name["viz_audit"]["label"])
    labels = [label for _, label, _ in edges]  # type: ignore[attr-defined]
    assert "numbers<br/>120 written · 4/s · read 100 · backlog 20" in labels
    assert labels.count("numbers<br/>120 written · 4/s") == 2
    assert "doubled" in labels


def test_flow_methods_delegate_to_the_renderers() -> None:
    graph = to_graph(shapes)
    assert shapes.to_mermaid() == to_mermaid(graph)
    assert shapes.to_dot() == to_dot(graph)
    assert shapes.to_text() == to_text(graph)


# ----------------------------------------------------------------------------- dot

_SVG = "{http://www.w3.org/2000/svg}"


def _check_dot(source: str, graph: FlowGraph) -> None:
    """Render with Graphviz: every node id comes back intact, every edge is drawn."""
    exe = shutil.which("dot")
    if exe is None:
        pytest.skip("Graphviz is not installed (apt-get install graphviz)")
    proc = subprocess.run(
        [exe, "-Tsvg"], input=source.encode(), capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert not proc.stderr, proc.stderr.decode()  # not even a warning
    titles: dict[str | None, list[str]] = {}
    for group in ET.fromstring(proc.stdout).iter(f"{_SVG}g"):
        title = group.find(f"{_SVG}title")
        if title is not None and title.text is not None:
            titles.setdefault(group.get("class"), []).append(title.text)
    assert sorted(titles["node"]) == sorted(_dot_id(n.id) for n in graph.nodes)
    assert len(titles["edge"]) == len(graph.edges)


def _dot_id(node_id: str) -> str:
    r"""The id Graphviz reads from our quoted id: it keeps ``\\`` and ``\n`` as is."""
    quoted = node_id.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return quoted.replace('\\"', '"')  # the only escape Graphviz undoes in an id


def _line(text: str, part: str) -> str:
    return next(line for line in text.splitlines() if part in line)


def test_dot_is_valid_graphviz() -> None:
    graph = to_graph(shapes)
    source = to_dot(graph)

    assert source.startswith("digraph flow {\n    rankdir=LR;\n")
    _check_dot(source, graph)
    merge = _line(source, f'"processor:{MERGE}" [')
    assert 'shape="hexagon"' in merge
    assert "dashed" in merge
    assert 'shape="cds"' in _line(source, '"input:numbers" [')
    assert 'label="the \\"odd\\" stream \\\\ #1 <x> & `y` | end"' in source


def test_dot_quotes_any_name() -> None:
    nasty = ["back\\", "new\nline", '"', "\\N", "a -> b; c", "{}[]=", "é ünï"]
    make = Processor(name='viz_dot "make"\\', inputs=["in\\"], outputs=nasty[:4])
    take = Processor(name="viz_dot\ntake", inputs=nasty[:2], outputs=nasty[4:])
    graph = to_graph(Flow.from_processors(make, take).resolve())

    _check_dot(to_dot(graph, figures=FIGURES), graph)


def test_dot_with_figures() -> None:
    graph = to_graph(shapes)
    source = to_dot(graph, figures=FIGURES)

    _check_dot(source, graph)
    double = _line(source, '"processor:viz_double" [')
    assert 'label="viz_double\\nrunning"' in double
    assert 'fillcolor="#dbeafe"' in double
    assert 'label="numbers\\n120 written · 4/s · read 100 · backlog 20"' in source


# ---------------------------------------------------------------------------- text


def test_text_reads_like_the_flow() -> None:
    text = to_text(to_graph(etl))

    assert text == (
        "Flow: 4 processors, 1 input, 2 outputs\n"
        "\n"
        "  [in] folder  -->  viz_extract           -->  files\n"
        "  files        -->  viz_parse             -->  records\n"
        "  records      -->  viz_transform         -->  orders, [out] rejects\n"
        "  orders       -->  viz_load (2 retries)  -->  [out] loaded\n"
        "\n"
        "Streams:\n"
        "  folder   [in]          --> viz_extract\n"
        "  files    viz_extract   --> viz_parse\n"
        "  records  viz_parse     --> viz_transform\n"
        "  orders   viz_transform --> viz_load\n"
        "  rejects  viz_transform --> [out]\n"
        "  loaded   viz_load      --> [out]\n"
    )


def test_text_shows_fan_out_fan_in_and_wait() -> None:
    lines = to_text(to_graph(shapes)).splitlines()

    assert lines[0] == "Flow: 4 processors, 1 input, 3 outputs"
    merge = next(line for line in lines if f"{MERGE} (waits for inputs)" in line)
    assert merge.startswith(f"  doubled, {ODD}  -->  ")
    assert merge.endswith("-->  [out] merged, [out] end")
    assert sum(line.startswith("  numbers ") for line in lines) == 3


def test_text_with_figures() -> None:
    text = to_text(to_graph(shapes), figures=FIGURES)

    assert "viz_double [running]" in text
    assert f"{MERGE} (waits for inputs) [waiting]" in text
    double = next(line for line in text.splitlines() if line.endswith("backlog 20"))
    assert double.split()[:4] == ["numbers", "[in]", "-->", "viz_double"]
    assert all(line == line.rstrip() for line in text.splitlines())


# ---------------------------------------------------------------------------- json


def test_json_is_plain_data() -> None:
    graph = to_graph(shapes)
    data = to_json(graph)

    assert json.loads(json.dumps(data)) == data
    assert data["inputs"] == ["numbers"]
    assert data["outputs"] == ["merged", "end", "audit log"]
    assert data["nodes"][3] == {
        "id": f"processor:{MERGE}",
        "kind": "processor",
        "name": MERGE,
        "wait": True,
        "retries": 0,
    }
    assert {(e["stream"], e["source"], e["target"]) for e in data["edges"]} == _edges(
        graph
    )


def test_json_with_figures() -> None:
    data = to_json(to_graph(shapes), figures=FIGURES)

    states = {n["name"]: n.get("state") for n in data["nodes"]}
    assert states["viz_double"] == "running"
    assert states["viz_square"] is None
    assert "state" not in data["nodes"][0]  # an input node has no state
    labels = {(e["stream"], e["reader"]): e["label"] for e in data["edges"]}
    assert (
        labels["numbers", "viz_double"] == "120 written · 4/s · read 100 · backlog 20"
    )
    assert labels["merged", None] is None


def test_static_figures_join_stream_and_reader_text() -> None:
    figures = StaticFigures(streams={"a": "10 written"}, reads={("b", "p"): "read 3"})
    assert figures.stream_label("a", "p") == "10 written"
    assert figures.stream_label("a", None) == "10 written"
    assert figures.stream_label("b", "p") == "read 3"
    assert figures.stream_label("b", None) is None
    assert figures.processor_state("p") is None


# ---------------------------------------------------------------------------- docs


def test_docs_page_shows_what_the_renderers_draw() -> None:
    """docs/visualization.md's drawings are regenerated, not edited by hand."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / "render_docs_images.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_drawing_depends_on_the_plan_never_on_flow() -> None:
    # flow.py imports viz to draw itself; viz importing flow back (even lazily)
    # would make the two modules a cycle again.
    import ast

    import datagraph.viz

    package = Path(datagraph.viz.__file__).parent
    runtime_imports: list[str] = []
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        guarded = {
            id(node)
            for stmt in tree.body
            if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
            for node in ast.walk(stmt)
        }
        runtime_imports += [
            f"{module.name}: {ast.unparse(node)}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and id(node) not in guarded
            and (node.module or "").split(".")[-1] == "flow"
        ]
    assert runtime_imports == []
    assert (package / "_graph.py").exists()  # the walk saw the modules
