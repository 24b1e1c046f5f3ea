"""The ``datagraph`` command: drawing, running, watching and managing flows and runs.

Commands are driven in this process with typer's ``CliRunner``, and as the installed
console script in subprocesses where a run must go on in another process while a
command looks at it. Run-management commands use the throwaway Redis server of
``conftest.redis_url``, with a key prefix of each test's own.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from rich.console import Console
from typer.testing import CliRunner

import datagraph
from datagraph import IOVal, LocalExecutor, MemoryStore, Supervisor, UpstreamError, viz
from datagraph.cli import _figures, _run, _summary, _view, app
from datagraph.cli._common import (
    Backend,
    CliError,
    locate_flow,
    make_supervisor,
    run_async,
)
from datagraph.cli._run import parse_value
from datagraph.snapshot import ProcessorFigures, RunSnapshot, StreamFigures
from flows_for_cli import demo, etl, shapes

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

TESTS = Path(__file__).resolve().parent
runner = CliRunner()
#: The environment of a subprocess: none of the caller's DATAGRAPH_* settings.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
EXE = str(Path(sys.executable).parent / "datagraph")


def invoke(
    *args: str, env: Mapping[str, str | None] | None = None, stdin: str | None = None
) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stdout: str, stderr: str, *parts: str) -> None:
    assert code == 1
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    for part in parts:
        assert part in lines[0]


# ----------------------------------------------------------------- graph formats


def test_graph_text_is_the_default() -> None:
    code, out, err = invoke("graph", "flows_for_cli:etl")
    assert (code, err) == (0, "")
    assert out == viz.to_text(viz.to_graph(etl))


@pytest.mark.parametrize(
    ("fmt", "render"),
    [("text", viz.to_text), ("mermaid", viz.to_mermaid), ("dot", viz.to_dot)],
)
def test_graph_text_formats_to_stdout(fmt: str, render: object) -> None:
    code, out, err = invoke("graph", "flows_for_cli:shapes", "--format", fmt)
    assert (code, err) == (0, "")
    assert callable(render)
    assert out == render(viz.to_graph(shapes))


def test_graph_resolves_a_flow_returned_by_a_factory() -> None:
    code, out, _ = invoke("graph", "flows_for_cli:make_shapes", "-f", "mermaid")
    assert code == 0
    assert out == viz.to_mermaid(viz.to_graph(shapes))


needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="Graphviz is not installed (apt-get install graphviz)",
)


@needs_dot
def test_graph_svg_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "flow.svg"
    code, out, err = invoke(
        "graph", "flows_for_cli:shapes", "-f", "svg", "-o", str(target)
    )
    assert code == 0
    assert out == ""
    assert f"Wrote {target} (svg)" in err
    svg = target.read_text()
    assert "<svg" in svg
    for name in ("viz_double", "viz_square", "viz merge &#39;all&#39;", "numbers"):
        assert name in svg


@needs_dot
@pytest.mark.parametrize(
    ("name", "fmt", "start"),
    [
        ("flow.png", "png", b"\x89PNG\r\n\x1a\n"),
        ("flow.svg", "svg", b"<?xml"),
        ("flow.mmd", "mermaid", b"flowchart LR\n"),
        ("flow.gv", "dot", b"digraph flow {"),
        ("flow.txt", "text", b"Flow: 4 processors"),
    ],
)
def test_graph_format_follows_the_output_suffix(
    tmp_path: Path, name: str, fmt: str, start: bytes
) -> None:
    target = tmp_path / name
    code, out, err = invoke("graph", "flows_for_cli:etl", "--output", str(target))
    assert (code, out) == (0, "")
    assert target.read_bytes().startswith(start)
    assert err == f"Wrote {target} ({fmt})\n"


@needs_dot
def test_graph_png_to_stdout_when_redirected() -> None:
    result = runner.invoke(app, ["graph", "flows_for_cli:etl", "-f", "png"])
    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n")


def test_graph_without_graphviz_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("datagraph.cli._graph.shutil.which", lambda _name: None)
    for fmt in ("svg", "png"):
        code, out, err = invoke(
            "graph", "flows_for_cli:etl", "-f", fmt, "-o", str(tmp_path / f"f.{fmt}")
        )
        assert_one_line_error(
            code, out, err, "apt-get install graphviz", "brew install graphviz"
        )
        assert not (tmp_path / f"f.{fmt}").exists()


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:flow", "cannot import module 'no_such_module'"),
        ("no_such_pkg.sub:flow", "no module named 'no_such_pkg'"),
        ("flows_for_cli", "write MODULE:ATTRIBUTE"),
        ("flows_for_cli:", "write MODULE:ATTRIBUTE"),
        ("flows_for_cli:missing", "'flows_for_cli' has no attribute 'missing'"),
        ("flows_for_cli:etl.missing", "has no attribute 'etl.missing'"),
        ("flows_for_cli:not_a_flow", "is int 42, not a datagraph Flow"),
        ("flows_for_cli:extract", "is a Processor, not a Flow"),
        ("flows_for_cli:needs_arguments", "taking no arguments"),
        ("flows_for_cli:broken_factory", "RuntimeError: the factory could not"),
        ("flows_for_cli:cyclic", "the flow has a cycle: viz_loop_"),
    ],
)
def test_graph_errors_are_one_red_line(target: str, message: str) -> None:
    code, out, err = invoke("graph", target)
    assert_one_line_error(code, out, err, message)


def test_graph_rejects_an_unknown_format() -> None:
    result = runner.invoke(app, ["graph", "flows_for_cli:etl", "-f", "jpeg"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "jpeg" in result.output


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "flow.txt"
    code, out, err = invoke("graph", "flows_for_cli:etl", "-o", str(target))
    assert_one_line_error(code, out, err, "flow.txt")


def test_console_script_reports_a_bad_import_path() -> None:
    """The installed command, run as a user runs it, from the flows' directory."""
    exe = Path(sys.executable).parent / "datagraph"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
    bad = subprocess.run(
        [str(exe), "graph", "flows_for_cli:nope"],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "Error: 'flows_for_cli' has no attribute 'nope' (from 'flows_for_cli:nope')"
    ]
    good = subprocess.run(
        [str(exe), "graph", "flows_for_cli:etl", "--format", "dot"],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert good.stdout == viz.to_dot(viz.to_graph(etl))


# -------------------------------------------------------------------- help, version


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["graph", "--help"],
        ["version", "--help"],
        ["run", "--help"],
        ["watch", "-h"],
        ["runs", "--help"],
        ["runs", "list", "--help"],
        ["runs", "show", "--help"],
        ["runs", "cancel", "--help"],
        ["runs", "purge", "-h"],
        ["dashboard", "--help"],
    ],
)
def test_help_everywhere(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert f"Usage: datagraph {' '.join(args[:-1])}".rstrip() in result.output
    assert "Traceback" not in result.output


def test_runs_without_a_subcommand_shows_help() -> None:
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 2
    for verb in ("list", "show", "cancel", "purge"):
        assert verb in result.output


def test_no_command_shows_help() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2  # click's "usage" status, as for a bad option
    for command in ("graph", "run", "watch", "runs", "dashboard", "version"):
        assert command in result.output


def test_graph_help_names_every_format() -> None:
    result = runner.invoke(app, ["graph", "--help"], terminal_width=200)
    for fmt in ("text", "mermaid", "dot", "svg", "png"):
        assert fmt in result.output


def test_version() -> None:
    code, out, _ = invoke("version")
    assert code == 0
    assert out.startswith(f"datagraph {datagraph.__version__}, anyio ")


# ------------------------------------------------ helpers for the other commands


def test_locate_flow_returns_the_resolved_flow() -> None:
    assert locate_flow("flows_for_cli:etl") is etl
    flow = locate_flow("flows_for_cli:make_shapes")
    assert flow.resolved
    with pytest.raises(CliError, match="no attribute"):
        locate_flow("flows_for_cli:nothing")


def test_make_supervisor_memory_by_default() -> None:
    supervisor = make_supervisor(None)
    assert isinstance(supervisor.store, MemoryStore)


def test_make_supervisor_from_a_redis_url() -> None:
    pytest.importorskip("glide")
    from datagraph.stores.redis import RedisStore

    supervisor = make_supervisor("redis://127.0.0.1:1/0")  # connects on first use
    assert isinstance(supervisor.store, RedisStore)


def test_make_supervisor_rejects_an_unknown_scheme() -> None:
    with pytest.raises(CliError, match="no store for URL scheme 'bogus'"):
        make_supervisor("bogus://somewhere")


@pytest.mark.parametrize(
    "url", ["redis://u:secret@host:notaport/0", "http://u:secret@host/0"]
)
def test_a_bad_url_is_reported_without_its_password(url: str) -> None:
    code, out, err = invoke("runs", "list", "--redis-url", url)
    assert_one_line_error(code, out, err, "u:***@host")
    assert "secret" not in err


@pytest.mark.parametrize("backend", list(Backend))
def test_run_async_on_each_backend(backend: Backend) -> None:
    async def which() -> str:
        import sniffio

        return sniffio.current_async_library()

    assert run_async(which, backend) == backend.value


# ============================================================== running flows
#
# ``datagraph run`` on the in-memory store: the run lives and ends inside the
# command. The flows are in flows_for_cli.py (importing it registers them).

RUN_STARTED = re.compile(r"^Run ([0-9a-f]{32}) started$", re.MULTILINE)


def run_id_of(stderr: str) -> str:
    found = RUN_STARTED.search(stderr)
    assert found is not None, stderr
    return found[1]


@pytest.mark.parametrize("backend", list(Backend))
def test_run_prints_the_output_then_a_summary(backend: Backend) -> None:
    code, out, err = invoke(
        "run", "flows_for_cli:squares", "--input", "count=5", "--backend", backend
    )
    assert code == 0, err
    assert out == "0\n1\n4\n9\n16\n"
    run_id = run_id_of(err)
    # The live view's last frame (stderr is no terminal), then the summary.
    frame, _, summary = err.partition(f"Run {run_id} succeeded in ")
    assert f"Run {run_id}  succeeded  took " in frame
    assert re.search(r"squares\s+cli_squares\s+5\s+output", frame)
    assert re.search(r"cli_squares\s+done\s+1\s+1\s", frame)
    assert re.search(r"^  cli_numbers +done ", summary, re.MULTILINE)
    assert "Traceback" not in err


def test_run_without_the_live_view() -> None:
    code, out, err = invoke(
        "run", "flows_for_cli:squares", "-i", "count=3", "--no-live", "-o", "-"
    )
    assert code == 0
    assert out == "0\n1\n4\n"
    assert "Streams" not in err
    lines = err.splitlines()
    assert RUN_STARTED.match(lines[0])
    assert re.match(r"Run [0-9a-f]{32} succeeded in \d", lines[1])


def test_run_parses_values_as_json_when_they_are() -> None:
    code, out, _ = invoke(
        "run",
        "flows_for_cli:demo",
        "-i", "count=4",
        "-i", "words=hello",
        "-i", "words=3",
        "-i", 'words="3"',
        "-i", "words=[1, 2]",
        "--no-live",
    )  # fmt: skip
    assert code == 0
    # Several outputs: each line starts with the output's name and a tab.
    assert out.splitlines() == [
        "total\t14",
        'loud\t"HELLO"',
        'loud\t{"not a string":3}',
        'loud\t"3"',
        'loud\t{"not a string":[1,2]}',
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("-1.5", -1.5),
        ("true", True),
        ("null", None),
        ('"5"', "5"),
        ('{"a": [1]}', {"a": [1]}),
        ("hello", "hello"),
        ("", ""),
        ("data/in.csv", "data/in.csv"),
        ("[1, 2", "[1, 2"),
    ],
)
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_run_writes_one_jsonl_file_per_output(tmp_path: Path) -> None:
    target = tmp_path / "out" / "new"  # created
    code, out, err = invoke(
        "run", "flows_for_cli:demo", "-i", "count=3", "-i", "words=a b",
        "--output", str(target), "--backend", "trio",
    )  # fmt: skip
    assert (code, out) == (0, "")
    assert sorted(p.name for p in target.iterdir()) == ["loud.jsonl", "total.jsonl"]
    assert (target / "total.jsonl").read_text() == "5\n"
    assert (target / "loud.jsonl").read_text() == '"A B"\n'
    assert f"Wrote {target / 'total.jsonl'} (1 value)" in err


def test_run_all_outputs_and_input_files(tmp_path: Path) -> None:
    counts = tmp_path / "counts.jsonl"
    counts.write_text("2\n\n3\n")
    words = tmp_path / "words.txt"
    words.write_text('one\n"two"\n{"three": 3}\n')
    code, _, err = invoke(
        "run", "flows_for_cli:demo",
        "--input-file", f"count={counts}", "--input-file", f"words={words}",
        "-i", "count=1", "--all-outputs", "-o", str(tmp_path / "all"),
    )  # fmt: skip
    assert code == 0, err
    files = {p.stem: p.read_text().splitlines() for p in (tmp_path / "all").iterdir()}
    assert files == {
        "count": ["1", "2", "3"],  # --input values first, then the files'
        "words": ['"one"', '"two"', '{"three":3}'],
        "numbers": ["0", "0", "1", "0", "1", "2"],
        "squares": ["0", "0", "1", "0", "1", "4"],
        "total": ["6"],
        "loud": ['"ONE"', '"TWO"', '{"not a string":{"three":3}}'],
    }


def test_a_failed_run_exits_1_with_its_error_in_the_summary() -> None:
    code, out, err = invoke("run", "flows_for_cli:failing", "-i", "count=6")
    assert code == 1
    assert out == "0\n1\n2\n"  # what the output got before the failure
    assert "Traceback" not in err
    summary = err[err.index(" failed in ") :]
    assert re.search(r"cli_explode +failed", summary)
    assert re.search(r"cli_after +failed .*\(after cli_explode failed\)", summary)
    assert "cli_explode: ValueError: cannot take 3" in summary
    assert "cli_after: " not in summary  # it failed only because cli_explode did
    assert re.search(r"at .*flows_for_cli\.py:\d+ in _cli_explode", summary)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["flows_for_cli:demo", "-i", "count=2"],
            "the flow needs a value for each of its inputs; missing: 'words' "
            "(read by cli_shout)",
        ),
        (
            ["flows_for_cli:squares", "-i", "count=2", "-i", "cont=3"],
            "'cont' is not an input of the flow; its inputs are count",
        ),
        (["flows_for_cli:squares", "-i", "count"], "--input takes NAME=VALUE"),
        (["flows_for_cli:squares", "-i", "=3"], "--input takes NAME=VALUE"),
        (["flows_for_cli:squares", "--input-file", "count"], "NAME=PATH"),
        (
            ["flows_for_cli:squares", "--input-file", "count=/no/such/file.jsonl"],
            "No such file or directory",
        ),
        (
            ["flows_for_cli:etl", "-i", "folder=x"],
            "no implementation is registered here for ['viz_extract'",
        ),
        (["flows_for_cli:nope"], "has no attribute 'nope'"),
        (["flows_for_cli:squares", "-i", "count=1", "-o", __file__], "not a directory"),
    ],
)
def test_run_errors_are_one_red_line(args: list[str], message: str) -> None:
    code, out, err = invoke("run", *args)
    assert_one_line_error(code, out, err, message)


# ======================================================= the live view (_live)


def stream(name: str, producer: str | None, written: int, **more: Any) -> StreamFigures:
    fields: dict[str, Any] = {
        "ended": False,
        "failed": False,
        "readers": {},
        "backlog": 0,
    }
    fields.update(more)
    return StreamFigures(name=name, producer=producer, written=written, **fields)


def proc(name: str, status: str, **more: Any) -> ProcessorFigures:
    fields: dict[str, Any] = {
        "attempt": 1,
        "instances": 1,
        "started": 100.0,
        "ended": None,
        "error": None,
        "traceback": None,
    }
    fields.update(more)
    return ProcessorFigures(name=name, status=status, **fields)  # type: ignore[arg-type]


def demo_snapshot(*, taken_at: float = 110.0, **changes: Any) -> RunSnapshot:
    """The demo flow, half way: squares still streaming, total waiting."""
    streams = {
        "count": stream("count", None, 1, ended=True, readers={"cli_numbers": 1}),
        "words": stream("words", None, 2, ended=True, readers={"cli_shout": 2}),
        "numbers": stream(
            "numbers", "cli_numbers", 1000, ended=True,
            readers={"cli_squares": 400}, backlog=600, average=500.0,
        ),
        "squares": stream(
            "squares", "cli_squares", 400, readers={}, rate=40.0, average=50.0
        ),
        "total": stream("total", "cli_total", 0),
        "loud": stream("loud", "cli_shout", 1, failed=True, ended=True),
    }  # fmt: skip
    processors = {
        "cli_numbers": proc("cli_numbers", "done", ended=102.0),
        "cli_squares": proc("cli_squares", "running", attempt=2),
        "cli_total": proc("cli_total", "waiting", attempt=0, started=None),
        "cli_shout": proc(
            "cli_shout", "failed", ended=101.0,
            error="KeyError: 'x'\nmore", traceback=TRACEBACK,
        ),
    }  # fmt: skip
    fields: dict[str, Any] = {
        "run_id": "r1",
        "status": "running",
        "taken_at": taken_at,
        "streams": streams,
        "processors": processors,
    }
    fields.update(changes)
    return RunSnapshot(**fields)


TRACEBACK = """Traceback (most recent call last):
  File "/app/flows.py", line 12, in _shout
    lookup()
  File "/app/util.py", line 3, in lookup
    raise KeyError("x")
KeyError: 'x'
"""


def test_figures_of_a_snapshot() -> None:
    figures = _figures.figures_of(demo_snapshot())
    assert isinstance(figures, viz.StaticFigures)
    assert figures.stream_label("squares", "cli_total") == "400 written · 40/s"
    assert (
        figures.stream_label("numbers", "cli_squares")
        == "1,000 written · avg 500/s · backlog 600 · ended · read 400"
    )
    assert figures.stream_label("count", "cli_numbers") == "1 written · ended · read 1"
    # One value is no rate (it was "avg 1.0/s"): its snapshot has no average.
    assert figures.stream_label("loud", None) == "1 written · failed"
    assert figures.processor_state("cli_total") == "waiting"
    # Joined onto the graph by any renderer.
    text = viz.to_text(viz.to_graph(demo), figures=figures)
    assert "cli_squares [running]" in text
    assert "backlog 600 · ended · read 400" in text
    assert "class p1 state_running" in viz.to_mermaid(
        viz.to_graph(demo), figures=figures
    )


def test_an_open_stream_shows_its_average_until_it_has_a_recent_rate() -> None:
    squares = stream("squares", "cli_squares", 400, average=50.0)
    assert _figures.rate_text(squares) == "50/s"
    assert _figures.rate_text(dataclasses.replace(squares, rate=40.0)) == "40/s"
    assert _figures.rate_text(dataclasses.replace(squares, average=None)) is None
    assert _figures.rate_text(stream("count", None, 9, average=3.0)) is None


def render(renderable: Any, width: int = 120) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    console.file.close()
    return console.export_text()


def test_a_frame_shows_processors_and_streams_once() -> None:
    failing = demo_snapshot(status="failed")
    frame = render(_view.render_snapshot(failing, viz.to_graph(demo)))
    assert frame.startswith("Run r1  failing  running for 10.0s  1/4 processors done")
    assert re.search(r"cli_squares +running +2 +1 +10\.0s", frame)
    assert re.search(r"cli_total +waiting +- +1 +- *\n", frame)
    assert re.search(r"cli_shout +failed +1 +1 +1\.0s +KeyError: 'x'\n", frame)
    assert re.search(r"numbers +cli_numbers +1,000 +cli_squares 400 +600 +avg", frame)
    assert re.search(r"squares +cli_squares +400 +cli_total - +0 +40/s +open", frame)
    # Each figure once: no second list of the streams under the graph.
    assert frame.count("1,000") == 1
    assert "Flow:" not in frame
    # Shown once (runs show), the frame adds the flow's shape, without figures.
    shown = render(
        _view.render_snapshot(demo_snapshot(), viz.to_graph(demo), shape=True)
    )
    assert "Flow: 4 processors, 2 inputs, 2 outputs" in shown
    assert "cli_squares [running]" in shown
    assert shown.count("1,000") == 1


def _etl_snapshot() -> tuple[RunSnapshot, viz.FlowGraph]:
    """The ETL demo (examples/etl.py) half way, with every figure at its widest."""
    etl = datagraph.Flow.from_processors(
        datagraph.Processor(name="extract", inputs=["folder"], outputs=["files"]),
        datagraph.Processor(name="parse", inputs=["files"], outputs=["records"]),
        datagraph.Processor(
            name="transform", inputs=["records"], outputs=["orders", "rejects"]
        ),
        datagraph.Processor(name="load", inputs=["orders"], outputs=["loaded"]),
    ).resolve()
    plan = etl.plan
    streams = {
        name: stream(
            name, plan.producer_of(name), 123_456,
            readers={p.name: 120_000 for p in plan.consumers_of(name)},
            backlog=3_456, rate=12_345.0, average=11_111.0,
        )
        for name in plan.streams
    }  # fmt: skip
    processors = {
        p.name: proc(p.name, "retrying", attempt=3, error="OSError: " + "x" * 200)
        for p in plan.processors
    }
    snapshot = RunSnapshot(
        run_id="3b9ea2165b574ca481c56e5f995a87f9",
        status="running",
        taken_at=7300.0,
        streams=streams,
        processors=processors,
    )
    return snapshot, viz.to_graph(etl)


def test_the_etl_demo_fits_an_80x24_terminal() -> None:
    snapshot, graph = _etl_snapshot()
    console = Console(
        width=80,
        height=24,
        record=True,
        file=open(os.devnull, "w"),  # noqa: SIM115
    )
    console.print(_view.render_snapshot(snapshot, graph))
    console.file.close()
    lines = console.export_text().splitlines()
    assert len(lines) <= 24, "\n".join(lines)
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith(f"Run {snapshot.run_id}  running  running for 2h")
    assert any(line.startswith("loaded ") for line in lines)  # the last stream


def test_off_a_terminal_the_view_prints_a_line_per_change() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    graph = viz.to_graph(demo)
    base = demo_snapshot(status="running")

    def at(when: float, written: int) -> RunSnapshot:
        squares = dataclasses.replace(base.streams["squares"], written=written)
        streams = {**base.streams, "squares": squares}
        return dataclasses.replace(base, taken_at=when, streams=streams)

    with _view.LiveView(console, graph, every=2.0) as view:
        view.show(at(110.0, 400))  # printed: the first
        view.show(at(111.0, 500))  # too soon after it
        view.show(at(112.0, 600))  # printed
        view.show(at(115.0, 600))  # nothing changed
        view.show(at(116.0, 700))  # printed
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if line.startswith("running for ")]
    assert len(progress) == 3
    assert progress[0] == (
        "running for 10.0s · 1/4 processors done · numbers 1,000 (avg 500/s) · "
        "squares 400 (40/s) · total 0 · loud 1"
    )
    assert "squares 600 (40/s)" in progress[1]
    assert "squares 700 (40/s)" in progress[2]
    # The last frame when the view closes.
    assert any(line.startswith("Run r1  running  running for 16.0s") for line in lines)


def test_the_progress_line_of_a_finished_run() -> None:
    done = demo_snapshot(
        status="succeeded",
        processors={"cli_numbers": proc("cli_numbers", "done", ended=102.0)},
    )
    assert _view.progress_line(done).startswith("succeeded took 2.0s · 1/1 ")


def test_states_are_drawn_in_their_colours() -> None:
    style = _figures.state_style("failed")
    assert style.color is not None
    assert style.color.triplet is not None
    assert style.color.triplet.hex == viz.STATE_COLORS["failed"][1]
    assert _figures.state_style("succeeded") == _figures.state_style("done")


def test_the_summary_names_outcomes_and_where_errors_were_raised() -> None:
    snapshot = demo_snapshot(status="failed")
    origin = UpstreamError(processor="cli_shout", error_type="KeyError", message="x")
    text = render(_summary.render_summary(snapshot, {"cli_squares": origin}))
    lines = text.splitlines()
    assert lines[0] == "Run r1 failed in 10.0s"
    assert re.match(
        r"  cli_squares +running +10\.0s  \(attempt 2, after cli_shout", lines[2]
    )
    assert "Errors" in lines
    assert "  cli_shout: KeyError: 'x'" in lines
    assert "    at /app/util.py:3 in lookup" in lines
    assert "Traceback" not in text


def test_errors_in_full() -> None:
    text = render(_summary.render_errors(demo_snapshot()))
    assert "cli_shout failed: KeyError: 'x'" in text
    assert 'File "/app/util.py", line 3, in lookup' in text
    assert _summary.render_errors(demo_snapshot(processors={})) is None
    # A processor that failed because one upstream did: one line, no traceback.
    after = proc("cli_total", "failed", error="KeyError: 'x'", traceback=TRACEBACK)
    snapshot = demo_snapshot(processors={"cli_total": after})
    origin = UpstreamError(processor="cli_shout", error_type="KeyError", message="x")
    text = render(_summary.render_errors(snapshot, {"cli_total": origin}))
    assert text.splitlines() == [
        "Errors",
        "cli_total failed: after cli_shout failed (KeyError: 'x')",
    ]


@pytest.mark.parametrize(
    ("rate", "text"),
    [(0, "0.0/s"), (0.44, "0.4/s"), (12.4, "12/s"), (999.4, "999/s"),
     (1234, "1.2k/s"), (56_789, "57k/s"), (2_345_678, "2.3M/s")],
)  # fmt: skip
def test_format_rate(rate: float, text: str) -> None:
    assert _figures.format_rate(rate) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-1, "0.0s"), (0.44, "0.4s"), (59.9, "59.9s"), (185, "3m 05s"), (7620, "2h 07m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert _figures.format_duration(seconds) == text


@pytest.mark.anyio
async def test_run_follows_a_run_to_its_end(anyio_backend: str) -> None:
    supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
    console = Console(file=io.StringIO(), force_terminal=False)
    with anyio.fail_after(10):
        run = await supervisor.start_flow(
            demo, [IOVal("count", 2000), IOVal("words", "w")]
        )
        view = _view.LiveView(console, viz.to_graph(run.plan))
        with view:
            final = await _run.follow(run, view, 0.05)
    assert final.finished
    assert final.status == "succeeded"
    assert final.streams["squares"].written == 2000
    assert "Run " in console.file.getvalue()  # type: ignore[attr-defined]


# ========================================================= runs in a Redis store


@pytest.fixture
def redis_env(redis_url: str, redis_prefix: str) -> Iterator[dict[str, str | None]]:
    """The environment of a command using the test's Redis server and key prefix.

    The keys are deleted afterwards.
    """
    yield {"DATAGRAPH_REDIS_URL": redis_url, "DATAGRAPH_PREFIX": redis_prefix}
    from conftest import delete_keys
    from datagraph.stores.redis import RedisStore

    async def clean() -> None:
        async with RedisStore(redis_url, prefix=redis_prefix) as store:
            await delete_keys(store)

    anyio.run(clean)


def start_ticking(
    env: Mapping[str, str | None], gate: Path, backend: str = "asyncio"
) -> tuple[subprocess.Popen[str], str]:
    """Start the ``ticking`` flow in another process; it runs until ``gate`` exists.

    Returns:
        The process and the run's id.
    """
    proc = subprocess.Popen(
        [EXE, "run", "flows_for_cli:ticking", "--input", f"gate={gate}",
         "--no-live", "--backend", backend],
        cwd=TESTS,
        env={**CLEAN_ENV, **{k: v for k, v in env.items() if v is not None}},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    first = proc.stderr.readline()
    if not RUN_STARTED.match(first):
        proc.kill()
        rest = proc.communicate()[1]
        pytest.fail(f"the run did not start: {first}{rest}")
    return proc, run_id_of(first)


def finish(proc: subprocess.Popen[str], gate: Path) -> tuple[str, str]:
    gate.touch()
    try:
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.redis
@pytest.mark.parametrize("backend", list(Backend))
def test_run_on_redis_then_list_show_watch_and_purge_it(
    redis_env: dict[str, str | None], backend: Backend
) -> None:
    b = ("--backend", backend.value)
    code, out, err = invoke(
        "run", "flows_for_cli:demo", "-i", "count=4", "-i", "words=hi", *b,
        env=redis_env,
    )  # fmt: skip
    assert code == 0, err
    assert out == 'total\t14\nloud\t"HI"\n'
    run_id = run_id_of(err)

    code, out, _ = invoke("runs", "list", *b, env=redis_env)
    assert code == 0
    assert re.search(
        rf"{run_id} +\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d +succeeded +4/4", out
    )
    assert "1 run(s) in RedisStore(" in out

    code, out, _ = invoke("runs", "show", run_id, *b, env=redis_env)
    assert code == 0
    assert out.startswith("Created 20")
    assert f"Run {run_id}  succeeded  took " in out
    # Four values in no time: no rate to speak of.
    assert re.search(r"squares +cli_squares +4 +cli_total 4 +0 +- +ended", out)
    assert "cli_total (waits for inputs) [done]" in out
    assert "Errors" not in out

    code, out, _ = invoke("watch", run_id, *b, env=redis_env)
    assert code == 0
    frame, _, summary = out.partition(f"\nRun {run_id} succeeded in ")
    assert f"Run {run_id}  succeeded  took " in frame
    assert re.search(r"^  cli_total +done ", summary, re.MULTILINE)

    code, out, _ = invoke("runs", "purge", run_id, *b, env=redis_env)
    assert (code, out.strip()) == (0, f"Deleted 1 run from {store_of(redis_env)}")
    code, out, _ = invoke("runs", "list", *b, env=redis_env)
    assert out.strip() == f"No runs in {store_of(redis_env)}."


def store_of(env: Mapping[str, str | None]) -> str:
    url, prefix = env["DATAGRAPH_REDIS_URL"], env["DATAGRAPH_PREFIX"]
    return f"RedisStore({url!r}, prefix={prefix!r})"


@pytest.mark.redis
def test_a_failed_run_on_redis(redis_env: dict[str, str | None]) -> None:
    code, out, err = invoke(
        "run", "flows_for_cli:failing", "-i", "count=5", env=redis_env
    )
    assert code == 1
    assert out == "0\n1\n2\n"
    assert "cli_explode: ValueError: cannot take 3" in err
    run_id = run_id_of(err)

    code, out, _ = invoke("runs", "list", env=redis_env)
    assert re.search(rf"{run_id} .* failed +1/3", out)

    code, out, _ = invoke("runs", "show", run_id, env=redis_env)
    assert code == 0  # showing a failed run is no error
    errors = out[out.index("\nErrors\n") :]
    assert "cli_explode failed: ValueError: cannot take 3" in errors
    assert "Traceback (most recent call last):" in errors  # in full
    assert errors.count("raise ValueError(msg)") == 1
    assert "cli_after failed: after cli_explode failed (ValueError: cannot take 3)" in (
        errors
    )

    code, out, err = invoke("watch", run_id, "--interval", "0.1", env=redis_env)
    assert (code, err) == (1, "")
    assert f"Run {run_id} failed in " in out
    assert "cli_explode: ValueError: cannot take 3" in out
    assert "Traceback" not in out

    code, out, err = invoke("runs", "cancel", run_id, env=redis_env)
    assert_one_line_error(code, out, err, f"run {run_id} has already failed")


@pytest.mark.redis
@pytest.mark.parametrize("backend", list(Backend))
def test_watch_follows_a_running_run_until_it_ends(
    redis_env: dict[str, str | None], tmp_path: Path, backend: Backend
) -> None:
    gate = tmp_path / "gate"
    other = "trio" if backend is Backend.asyncio else "asyncio"
    proc, run_id = start_ticking(redis_env, gate, backend=other)
    try:
        code, out, _ = invoke("runs", "list", env=redis_env)
        assert re.search(rf"{run_id} .* (pending|running) +0/2", out)
        timer = threading.Timer(0.6, gate.touch)
        timer.start()
        began = time.monotonic()
        code, out, err = invoke(
            "watch", run_id, "--interval", "0.1", "--backend", backend, env=redis_env
        )
        took = time.monotonic() - began
        timer.join()
    finally:
        out_of_run, err_of_run = finish(proc, gate)
    assert (code, err) == (0, "")
    assert took >= 0.4  # it waited for the run to end
    assert f"Run {run_id} succeeded in " in out
    assert re.search(r"ticks +cli_ticker +\d+ +cli_tally \d+ +0 +avg \d+/s +ended", out)
    assert proc.returncode == 0, err_of_run
    assert int(out_of_run) > 0  # the ticks the tally counted


@pytest.mark.redis
def test_runs_cancel_stops_a_run_in_another_process(
    redis_env: dict[str, str | None], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    proc, run_id = start_ticking(redis_env, gate)
    try:
        # Still running: not among the finished runs.
        code, out, _ = invoke("runs", "purge", "--finished", env=redis_env)
        assert (code, out.strip()) == (0, f"No runs to purge in {store_of(redis_env)}.")
        code, out, err = invoke("runs", "cancel", run_id, env=redis_env)
        assert (code, err) == (0, "")
        assert out.startswith(f"Cancelled run {run_id};")
        _, err_of_run = proc.communicate(timeout=30)
    finally:
        finish(proc, gate)
    assert proc.returncode == 1
    assert f"Run {run_id} cancelled in " in err_of_run

    code, out, _ = invoke("watch", run_id, "--backend", "trio", env=redis_env)
    assert code == 1
    assert f"Run {run_id} cancelled in " in out
    code, out, _ = invoke("runs", "cancel", run_id, env=redis_env)
    assert (code, out.strip()) == (0, f"Run {run_id} was already cancelled")


@pytest.mark.redis
@pytest.mark.parametrize("backend", list(Backend))
def test_runs_resume_mends_a_failed_run(
    redis_env: dict[str, str | None], tmp_path: Path, backend: Backend
) -> None:
    b = ("--backend", backend.value)
    marker = tmp_path / "marker"
    code, out, err = invoke(
        "run", "flows_for_cli:mending", "-i", f"marker={marker}", *b, env=redis_env
    )
    assert code == 1
    assert out == "0\n1\n"
    run_id = run_id_of(err)

    marker.touch()  # mended: the processor runs again in `runs resume` itself
    code, out, err = invoke("runs", "resume", run_id, *b, env=redis_env)
    assert (code, err) == (0, "")
    assert out.strip() == f"Resumed run {run_id} (cli_mending): succeeded"

    code, out, _ = invoke("runs", "show", run_id, *b, env=redis_env)
    assert code == 0
    assert "succeeded" in out
    code, out, err = invoke("runs", "resume", run_id, *b, env=redis_env)
    assert_one_line_error(code, out, err, "has no failed, lost or cancelled")

    async def values() -> list[int]:
        config = {
            "url": redis_env["DATAGRAPH_REDIS_URL"],
            "prefix": redis_env["DATAGRAPH_PREFIX"],
        }
        async with Supervisor(redis_config=config) as supervisor:
            run = await supervisor.get_run(run_id)
            return await run["mended"].collect()

    assert anyio.run(values) == [0, 1, 2, 3, 4]  # none lost, none twice


@pytest.mark.redis
@pytest.mark.parametrize("backend", list(Backend))
def test_ctrl_c_on_run_cancels_the_run(
    redis_env: dict[str, str | None], tmp_path: Path, backend: Backend
) -> None:
    gate = tmp_path / "gate"
    proc, run_id = start_ticking(redis_env, gate, backend=backend.value)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        finish(proc, gate)
    assert proc.returncode == 130
    assert out == ""
    assert "Traceback" not in err
    assert err.splitlines() == [f"Interrupted: run {run_id} cancelled"]
    _, out, _ = invoke("runs", "list", env=redis_env)
    assert re.search(rf"{run_id} .* cancelled +0/2", out)


@pytest.mark.redis
def test_runs_purge_picks_runs_and_asks_first(redis_env: dict[str, str | None]) -> None:
    for _ in range(2):
        code, _, _ = invoke(
            "run", "flows_for_cli:squares", "-i", "count=1", env=redis_env
        )
        assert code == 0
    store = store_of(redis_env)

    code, _, err = invoke("runs", "purge", "--finished", env=redis_env, stdin="n\n")
    assert code == 1
    assert f"Delete 2 runs from {store}? [y/N]" in err
    assert "Error: not confirmed: nothing deleted" in err
    code, _, err = invoke("runs", "purge", "--all", env=redis_env)  # no answer
    assert code == 1
    assert err.endswith(
        "Error: not confirmed: nothing deleted (pass --yes to skip the question)\n"
    )
    code, out, _ = invoke("runs", "list", env=redis_env)
    assert "2 run(s) in" in out

    code, out, err = invoke("runs", "purge", "--all", env=redis_env, stdin="y\n")
    assert code == 0
    assert out.splitlines()[-1] == f"Deleted 2 runs from {store}"  # after the echo
    code, out, _ = invoke("runs", "purge", "--all", "--yes", env=redis_env)
    assert (code, out.strip()) == (0, f"No runs to purge in {store}.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "purge"], "name the runs to purge, or pass --all or --finished"),
        (["runs", "purge", "abc", "--all"], "not both"),
        (["runs", "purge", "nope", "other"], "no run 'nope' in RedisStore("),
        (["runs", "show", "nope"], "no run 'nope' in RedisStore("),
        (["runs", "cancel", "nope"], "no run 'nope' in RedisStore("),
        (["watch", "nope"], "no run 'nope' in RedisStore("),
    ],
)
@pytest.mark.redis
def test_run_management_errors_are_one_red_line(
    redis_env: dict[str, str | None], args: list[str], message: str
) -> None:
    code, out, err = invoke(*args, env=redis_env)
    assert_one_line_error(code, out, err, message)


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "abc"],
        ["runs", "list"],
        ["runs", "show", "abc"],
        ["runs", "cancel", "abc"],
        ["runs", "purge", "--all"],
    ],
)
def test_run_management_needs_a_redis_url(args: list[str]) -> None:
    code, out, err = invoke(*args, env={"DATAGRAPH_REDIS_URL": None})
    command = " ".join(args[:2] if args[0] == "runs" else args[:1])
    assert_one_line_error(
        code,
        out,
        err,
        f"'datagraph {command}' needs a Redis URL",
        "--redis-url",
        "DATAGRAPH_REDIS_URL",
    )


def test_an_unreachable_store_is_one_line() -> None:
    """valkey-glide's own log line about the failed connection is kept quiet too."""
    result = subprocess.run(
        [EXE, "runs", "list", "--redis-url", "redis://127.0.0.1:1/0"],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert_one_line_error(
        result.returncode,
        result.stdout,
        result.stderr,
        "cannot reach Redis at redis://127.0.0.1:1/0 to list runs",
    )


# ================================================================== dashboard


def test_dashboard_serves_the_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Supervisor, dict[str, object]]] = []
    stub = types.ModuleType("datagraph.dashboard")
    stub.serve = lambda supervisor, **options: calls.append((supervisor, options))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datagraph.dashboard", stub)
    code, out, err = invoke(
        "dashboard", "--port", "8123", "--backend", "trio",
        env={"DATAGRAPH_REDIS_URL": None},
    )  # fmt: skip
    assert (code, out) == (0, "")
    assert "in-memory store" in err
    [(supervisor, options)] = calls
    assert isinstance(supervisor.store, MemoryStore)
    assert options == {
        "host": "127.0.0.1",
        "port": 8123,
        "backend": "trio",
        "allowed_hosts": (),
    }


def test_dashboard_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datagraph.dashboard", None)
    code, out, err = invoke("dashboard")
    assert_one_line_error(code, out, err, "the dashboard is not available")
