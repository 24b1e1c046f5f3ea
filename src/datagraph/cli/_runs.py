"""``datagraph runs``: list, show, cancel, resume and delete the runs of a store."""

from __future__ import annotations

import contextlib
import datetime
import importlib
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from .. import viz
from ..exceptions import (
    CorruptRunError,
    RunFailedError,
    RunNotFoundError,
    StoreConnectionError,
    StoreError,
)
from ._common import (
    Backend,
    BackendOption,
    CliError,
    RunIdArgument,
    SharedRedisUrlOption,
    opened_supervisor,
    reported_errors,
    require_redis,
    run_async,
    stderr_console,
    stdout_console,
)
from ._figures import state_style
from ._summary import render_errors
from ._view import render_snapshot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..exceptions import UpstreamError
    from ..run import Run
    from ..snapshot import RunSnapshot
    from ..supervisor import Supervisor

__all__ = ("runs_app",)


runs_app = typer.Typer(
    name="runs",
    help="List, show, cancel and delete the runs in a store (needs --redis-url).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


async def _created(run: Run) -> float | None:
    """When a run was started, if its record says (a corrupt one may not)."""
    try:
        return await run.created()
    except StoreError:
        return None


def _local_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@runs_app.command("list")
def runs_list(
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """List the runs in the store, oldest first: id, start, status, progress."""
    from rich import box
    from rich.table import Table

    with reported_errors():
        url = require_redis(redis_url, "runs list")

        async def body() -> tuple[str, list[tuple[str, str, str, str]]]:
            rows: list[tuple[str, str, str, str]] = []
            async with opened_supervisor(url) as supervisor:
                for run in await supervisor.list_runs():
                    try:
                        snapshot = await run.snapshot()
                    except CorruptRunError:  # listed, marked, never in the way
                        created = _local_time(await _created(run))
                        rows.append((run.id, created, "corrupt", "-"))
                        continue
                    except RunNotFoundError:
                        continue  # deleted since it was listed
                    procs = snapshot.processors.values()
                    done = sum(p.status == "done" for p in procs)
                    rows.append(
                        (
                            run.id,
                            _local_time(snapshot.created),
                            snapshot.phase,
                            f"{done}/{len(procs)}",
                        )
                    )
                return repr(supervisor.store), rows

        store, rows = run_async(body, backend)
        console = stdout_console()
        if not rows:
            console.print(f"No runs in {store}.", markup=False, soft_wrap=True)
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("run id", style="cyan", no_wrap=True)
        table.add_column("created", no_wrap=True)
        table.add_column("status")
        table.add_column("done", justify="right")
        for run_id, created, status, done in rows:
            shown = Text(status, state_style(status))
            table.add_row(run_id, created, shown, done)
        console.print(table)
        console.print(f"{len(rows)} run(s) in {store}", style="dim", soft_wrap=True)
        corrupt = [row[0] for row in rows if row[2] == "corrupt"]
        if corrupt:
            console.print(
                f"{len(corrupt)} corrupt run(s): their record does not decode; "
                f"delete them with datagraph runs purge {' '.join(corrupt)}",
                style="red",
                markup=False,
                soft_wrap=True,
            )


@runs_app.command("show")
def runs_show(
    run_id: RunIdArgument,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Show a run once: its streams, processors, graph, and errors in full."""
    with reported_errors():
        url = require_redis(redis_url, "runs show")

        async def body() -> tuple[RunSnapshot, dict[str, UpstreamError], viz.FlowGraph]:
            async with opened_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                snapshot = await run.snapshot()
                failures = await run.errors()
                return snapshot, failures, viz.to_graph(run.plan)

        snapshot, failures, graph = run_async(body, backend)
        console = stdout_console()
        created = _local_time(snapshot.created)
        console.print(f"Created {created}", style="dim", markup=False)
        console.print(render_snapshot(snapshot, graph, shape=True))
        errors = render_errors(snapshot, failures)
        if errors is not None:
            console.print()
            console.print(errors)


@runs_app.command("cancel")
def runs_cancel(
    run_id: RunIdArgument,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Cancel a run, wherever its processors run.

    Processors not yet started never start; running ones stop at their next read
    or write. Cancelling a cancelled run again does nothing; a run that has
    already succeeded or failed cannot be cancelled (exit status 1).
    """
    with reported_errors():
        url = require_redis(redis_url, "runs cancel")

        async def body() -> str:
            async with opened_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                status = await run.status()
                if status == "cancelled":
                    return f"Run {run_id} was already cancelled"
                if status in ("succeeded", "failed"):
                    msg = f"run {run_id} has already {status}: nothing to cancel"
                    raise CliError(msg)
                await run.cancel()
                return (
                    f"Cancelled run {run_id}; its running processors stop at their "
                    "next read or write"
                )

        stdout_console().print(run_async(body, backend), markup=False, soft_wrap=True)


@runs_app.command("resume")
def runs_resume(
    run_id: RunIdArgument,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            metavar="MODULE",
            help="Import this module first: the one that attaches your services' "
            "Supervisor (with, say, a CeleryExecutor), or that implements the "
            "processors to run here.",
        ),
    ] = None,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Run again the processors of a run that failed, were lost or cancelled.

    Completed streams are kept and partly written ones go on by position. With
    --service naming a module that attaches a Supervisor, its executor
    dispatches them (to Celery workers, say); otherwise they run in this command,
    which then waits for the run to end.
    """
    with reported_errors():
        url = require_redis(redis_url, "runs resume")
        if service is not None:
            _import_service(service)

        async def body() -> str:
            async with _service_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                resumed = await run.resume()
                if not resumed:
                    msg = f"run {run_id} has no failed, lost or cancelled processor"
                    raise CliError(msg)
                if supervisor.executor.takes_over:
                    return f"Resumed run {run_id}: dispatched {', '.join(resumed)}"
                with contextlib.suppress(RunFailedError):
                    await run.wait()
                status = await run.status()
                return f"Resumed run {run_id} ({', '.join(resumed)}): {status}"

        stdout_console().print(run_async(body, backend), markup=False, soft_wrap=True)


def _import_service(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        msg = f"cannot import the service module {module!r}: {exc}"
        raise CliError(msg) from exc


@contextlib.asynccontextmanager
async def _service_supervisor(redis_url: str) -> AsyncIterator[Supervisor]:
    """The supervisor a --service module attached, else one of the command's own."""
    from ..supervisor import Supervisor

    attached = Supervisor._attached
    if attached is None:
        async with opened_supervisor(redis_url) as supervisor:
            yield supervisor
        return
    yield attached


@runs_app.command("purge")
def runs_purge(
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN_ID]...", help="Runs to delete.", show_default=False
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Delete every run in the store.")
    ] = False,
    finished: Annotated[
        bool,
        typer.Option(
            "--finished",
            help="Delete every run that has ended (succeeded, failed or cancelled).",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Do not ask for confirmation (with --all, --finished)."
        ),
    ] = False,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Delete runs from the store: their streams, states and claims.

    Name the runs, or pick them with [cyan]--finished[/] or [cyan]--all[/] (which
    ask for confirmation first, unless [cyan]--yes[/]).
    """
    with reported_errors():
        url = require_redis(redis_url, "runs purge")
        if run_ids and (every or finished):
            msg = "name runs to purge, or pass --all or --finished, not both"
            raise CliError(msg)
        if not run_ids and not (every or finished):
            msg = "name the runs to purge, or pass --all or --finished"
            raise CliError(msg)

        async def select() -> tuple[str, list[str], int, list[str]]:
            async with opened_supervisor(url) as supervisor:
                chosen: list[str] = []
                going, corrupt = 0, []
                if run_ids:
                    runs = []
                    for run_id in dict.fromkeys(run_ids):
                        try:
                            runs.append(await supervisor.get_run(run_id))
                        except (StoreConnectionError, RunNotFoundError):
                            raise
                        except StoreError:  # corrupt: named, so deleted as it is
                            chosen.append(run_id)
                else:
                    runs = await supervisor.list_runs()
                for run in runs:
                    try:
                        ended = (await run.snapshot()).finished
                    except CorruptRunError:
                        # Named or --all: deleted. --finished: it may still be
                        # running for all anyone can tell, so it is left.
                        if finished:
                            corrupt.append(run.id)
                        else:
                            chosen.append(run.id)
                        continue
                    if finished and not ended:
                        continue
                    chosen.append(run.id)
                    going += not ended
                return repr(supervisor.store), chosen, going, corrupt

        store, chosen, going, corrupt = run_async(select, backend)
        console = stdout_console()
        if corrupt:
            stderr_console().print(
                f"Left {len(corrupt)} corrupt run(s), which may not have ended; "
                f"delete them by id: datagraph runs purge {' '.join(corrupt)}",
                style="yellow",
                markup=False,
                soft_wrap=True,
            )
        if not chosen:
            console.print(f"No runs to purge in {store}.", markup=False, soft_wrap=True)
            return
        count = f"{len(chosen)} run{'' if len(chosen) == 1 else 's'}"
        if not run_ids and not yes:
            still = f", {going} of them still running" if going else ""
            try:
                confirmed = typer.confirm(
                    f"Delete {count} from {store}{still}?", err=True
                )
            except typer.Abort:  # no answer: stdin is closed, or Ctrl+C
                confirmed = False
            if not confirmed:
                msg = "not confirmed: nothing deleted (pass --yes to skip the question)"
                raise CliError(msg)

        async def delete() -> int:
            deleted = 0
            async with opened_supervisor(url) as supervisor:
                for run_id in chosen:
                    with contextlib.suppress(RunNotFoundError):  # gone meanwhile
                        await supervisor.delete_run(run_id)
                        deleted += 1
            return deleted

        deleted = run_async(delete, backend)
        console.print(
            f"Deleted {deleted} run{'' if deleted == 1 else 's'} from {store}",
            markup=False,
            soft_wrap=True,
        )
