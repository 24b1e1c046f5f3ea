"""Render the flow drawings of the docs, so they always match the code.

    python scripts/render_docs_images.py          # rewrite images and doc blocks
    python scripts/render_docs_images.py --check  # exit 1 if a doc block is stale

It draws the ETL demo's flow (``examples/etl.py``) with the ``datagraph graph``
command into ``docs/images/flow.svg`` and ``flow.png`` (this needs Graphviz), and
rewrites the generated blocks of ``docs/visualization.md``: the blocks between
``<!-- generated: NAME -->`` and ``<!-- end generated -->`` markers.
``--check`` compares the blocks only (images depend on the Graphviz version).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from datagraph import Flow

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
PAGE = ROOT / "docs" / "visualization.md"
ETL = "examples.etl:FLOW"

# A flow with every kind of node and edge: the docs show this code and its drawing.
FEATURES_SOURCE = """\
from datagraph import Flow, Processor

fetch = Processor(name="fetch", inputs=["urls"], outputs=["pages"], retries=3)
links = Processor(name="links", inputs=["pages"], outputs=["found links"])
words = Processor(name="words", inputs=["pages"], outputs=["counts"])
report = Processor(
    name="report", inputs=["found links", "counts"], outputs=["summary"], wait=True
)

flow = Flow.from_processors(fetch, links, words, report).resolve()
"""


def _features() -> Flow:
    namespace: dict[str, object] = {}
    exec(FEATURES_SOURCE, namespace)  # our own constant: the code the docs show
    flow = namespace["flow"]
    assert isinstance(flow, Flow)
    return flow


#: ``datagraph graph render_docs_images:FEATURES`` finds it here.
FEATURES = _features()


def cli(*args: str) -> str:
    """Run ``datagraph`` (this interpreter's) from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "scripts"), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-m", "datagraph.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"datagraph {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def figures_example() -> str:
    """The ETL flow in text, with made-up figures showing what a live view adds."""
    from datagraph import viz

    sys.path.insert(0, str(ROOT))
    from examples.etl import FLOW

    figures = viz.StaticFigures(
        streams={
            "folder": "1 written",
            "files": "1840 written · 212/s",
            "records": "9102 written · 1050/s",
            "orders": "8833 written · 1020/s",
            "rejects": "269 written",
        },
        reads={
            ("files", "parse"): "backlog 3",
            ("records", "transform"): "backlog 0",
            ("orders", "load"): "backlog 833",
        },
        processors={
            "extract": "done",
            "parse": "running",
            "transform": "running",
            "load": "running",
        },
    )
    return viz.to_text(viz.to_graph(FLOW), figures=figures)


def blocks() -> dict[str, str]:
    """The generated blocks of the page, by name: fenced code, ready to insert."""
    return {
        "etl-mermaid": "```mermaid\n" + cli("graph", ETL, "-f", "mermaid") + "```",
        "etl-text": "```text\n" + cli("graph", ETL, "-f", "text") + "```",
        "etl-dot": "```dot\n" + cli("graph", ETL, "-f", "dot") + "```",
        "features-python": "```python\n" + FEATURES_SOURCE + "```",
        "features-mermaid": "```mermaid\n"
        + cli("graph", "render_docs_images:FEATURES", "-f", "mermaid")
        + "```",
        "figures-text": "```text\n" + figures_example() + "```",
    }


_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) -->\n)"
    r"(?P<body>(?:(?!<!-- generated:).)*?)"  # never runs into the next block
    r"(<!-- end generated -->)",
    re.DOTALL,
)


def update_page(text: str, new: dict[str, str]) -> str:
    """Replace each generated block of the page; fail on an unknown or missing one."""
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in new:
            sys.exit(f"{PAGE}: unknown generated block {name!r}; known: {sorted(new)}")
        seen.add(name)
        return match[1] + new[name] + "\n" + match[4]

    result = _BLOCK.sub(replace, text)
    if missing := sorted(set(new) - seen):
        sys.exit(f"{PAGE}: no generated block for {missing}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that the doc is current"
    )
    args = parser.parse_args()
    page = PAGE.read_text(encoding="utf-8")
    updated = update_page(page, blocks())
    if args.check:
        if updated != page:
            print(f"{PAGE.relative_to(ROOT)} is stale: run {Path(__file__).name}")
            return 1
        print(f"{PAGE.relative_to(ROOT)} is current")
        return 0
    PAGE.write_text(updated, encoding="utf-8")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for fmt in ("svg", "png"):
        target = IMAGES / f"flow.{fmt}"
        cli("graph", ETL, "--format", fmt, "--output", str(target))
        print(f"wrote {target.relative_to(ROOT)}")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
