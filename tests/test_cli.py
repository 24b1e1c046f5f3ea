"""The ``datagraph`` command: drawing flows found by import path, and clean errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import datagraph
from datagraph import MemoryStore, viz
from datagraph.cli import (
    Backend,
    CliError,
    app,
    locate_flow,
    make_supervisor,
    run_async,
)
from flows_for_cli import etl, shapes

TESTS = Path(__file__).resolve().parent
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
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
    monkeypatch.setattr("datagraph.cli.shutil.which", lambda _name: None)
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
    "args", [["--help"], ["-h"], ["graph", "--help"], ["version", "--help"]]
)
def test_help_everywhere(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Usage: datagraph" in result.output
    assert "Traceback" not in result.output


def test_no_command_shows_help() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2  # click's "usage" status, as for a bad option
    assert "graph" in result.output
    assert "version" in result.output


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


@pytest.mark.parametrize("backend", list(Backend))
def test_run_async_on_each_backend(backend: Backend) -> None:
    async def which() -> str:
        import sniffio

        return sniffio.current_async_library()

    assert run_async(which, backend) == backend.value
