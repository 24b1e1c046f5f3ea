"""The ``datagraph`` command line: draw, run, watch and manage flows and runs.

Needs the ``cli`` extra: ``pip install 'datagraph[cli]'``.

- ``graph MODULE:FLOW``: draw a flow (text, Mermaid, DOT, SVG, PNG).
- ``run MODULE:FLOW --input NAME=VALUE``: run a flow here, live, then its outputs.
- ``watch RUN_ID``: follow a run live, from any process, until it ends.
- ``runs list|show|cancel|resume|purge``: manage the runs in a Redis/Valkey store.
- ``dashboard``: serve the web dashboard.
- ``version``.

Shaped like the dashboard: ``_common`` holds the typer ``app``, the options, the
error handling and the helpers every command shares; each command group has a
module of its own (``_graph``, ``_run``, ``_runs``, ``_dashboard``), which
registers its commands on ``app`` when imported; ``_figures``, ``_view`` and
``_summary`` draw runs in the terminal.
"""

from __future__ import annotations

from . import _dashboard, _graph, _run, _runs  # noqa: F401 - they register commands
from ._common import app

__all__ = ("app", "main")


def main() -> None:
    """Run the ``datagraph`` command (the console script's entry point)."""
    app()
