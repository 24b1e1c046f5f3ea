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
module of its own (``_graph``, ``_run``, ``_runs``, ``_dashboard``), registered on
``app`` here, in the order ``--help`` lists them; ``_figures``, ``_view`` and
``_summary`` draw runs in the terminal.
"""

from __future__ import annotations

from ._common import app
from ._dashboard import dashboard, version
from ._graph import graph
from ._run import run_command, watch
from ._runs import runs_app

__all__ = ("app", "main")

app.command()(graph)
app.command("run")(run_command)
app.command()(watch)
app.add_typer(runs_app)
app.command()(dashboard)
app.command()(version)


def main() -> None:
    """Run the ``datagraph`` command (the console script's entry point)."""
    app()
