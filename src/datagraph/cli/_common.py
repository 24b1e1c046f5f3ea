"""What every ``datagraph`` command shares: the app, options, consoles and errors.

Every command reports a user's mistake (a bad import path, a flow with a cycle, an
unknown run, an unreachable store) as one red line on stderr and exits with status
1, never with a traceback: it wraps its body in ``reported_errors()``. Commands
find flows by import path (``locate_flow``), reach stores through the supervisor of
``--redis-url`` (``opened_supervisor``) and run async code on the backend of
``--backend`` (``run_async``, or ``run_until_interrupted`` where Ctrl+C must say
what it stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import inspect
import os
import re
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

try:
    import typer
    from rich.console import Console
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    _msg = f"the datagraph command needs typer and rich ({exc}); install them with "
    raise ImportError(_msg + "pip install 'datagraph[cli]'") from exc

from ..exceptions import DatagraphError
from ..flow import Flow
from ..processor import Processor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from ..snapshot import RunSnapshot
    from ..supervisor import Supervisor

__all__ = (
    "Backend",
    "BackendOption",
    "CliError",
    "FlowArgument",
    "IntervalOption",
    "RedisUrlOption",
    "RunIdArgument",
    "SharedRedisUrlOption",
    "app",
    "exit_status",
    "fail",
    "is_cancellation",
    "locate_flow",
    "make_supervisor",
    "opened_supervisor",
    "reported_errors",
    "require_redis",
    "run_async",
    "run_until_interrupted",
    "stderr_console",
    "stdout_console",
    "unwrap",
)

T = TypeVar("T")

app = typer.Typer(
    name="datagraph",
    help="Draw, run and watch Datagraph flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ---------------------------------------------------------------------------- errors


class CliError(Exception):
    """A problem to report to the user in one line, without a traceback."""


def fail(message: str) -> NoReturn:
    """Print ``Error: <message>`` in red on stderr, as one line, and exit with 1.

    Raises:
        typer.Exit: always, with code 1.
    """
    line = " ".join(message.split())  # one line, whatever the message holds
    stderr_console().print(f"Error: {line}", style="bold red", markup=False)
    raise typer.Exit(1)


def stderr_console() -> Console:
    """Return a console on stderr for messages: no wrapping, no auto-highlighting.

    Created per call so it writes to whatever ``sys.stderr`` is at the time (tests
    swap it).
    """
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one red line and exit status 1.

    Wrap the body of every command in it: ``CliError``, every ``DatagraphError``
    (a cycle, an unknown run, an unreachable store...) and ``OSError`` (a file
    that cannot be written) are reported; anything else is a bug and keeps its
    traceback.
    """
    try:
        yield
    except (CliError, DatagraphError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)


# ------------------------------------------------------------------- finding a flow


def locate_flow(target: str) -> Flow:
    """Find a flow by its import path, ``package.module:attribute``.

    The attribute may be dotted (``module:Flows.etl``) and is either a ``Flow``
    or a callable taking no arguments that returns one. The current directory is
    importable, as for ``python -m``. An unresolved flow is resolved.

    Args:
        target: ``module:attribute``.

    Returns:
        The resolved flow.

    Raises:
        CliError: the path is malformed, the module cannot be imported, the
            attribute is missing, or it is not a flow.
        FlowError: resolving the flow failed (a cycle, two producers of a stream).
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        msg = (
            f"{target!r} is not an import path of a flow: write MODULE:ATTRIBUTE, "
            "e.g. myapp.flows:etl"
        )
        raise CliError(msg)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(f"{exc.name}.")
        ):
            msg = (
                f"cannot import module {module_name!r} (from {target!r}): no module "
                f"named {exc.name!r}; check the spelling, and run from the directory "
                "that contains it or install it"
            )
            raise CliError(msg) from exc
        msg = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise CliError(msg) from exc
    except Exception as exc:  # the user's module raised while being imported
        msg = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise CliError(msg) from exc
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            msg = f"{module_name!r} has no attribute {attr!r} (from {target!r})"
            raise CliError(msg) from None
    if isinstance(found, Processor):
        msg = (
            f"{target} is a Processor, not a Flow; make a flow of it, e.g. "
            f"flow = Flow.from_processors({attr.rpartition('.')[2]}, ...)"
        )
        raise CliError(msg)
    if not isinstance(found, Flow) and callable(found) and not isinstance(found, type):
        try:
            inspect.signature(found).bind()
        except TypeError as exc:
            msg = f"{target} must be a Flow or a function taking no arguments: {exc}"
            raise CliError(msg) from exc
        except ValueError:  # no signature to check (some builtins): just call it
            pass
        try:
            found = found()
        except DatagraphError:
            raise
        except Exception as exc:  # the user's factory failed
            msg = f"calling {target}() failed: {type(exc).__name__}: {exc}"
            raise CliError(msg) from exc
    if not isinstance(found, Flow):
        msg = (
            f"{target} is {type(found).__name__} {found!r:.60}, not a datagraph Flow "
            "(or a function returning one)"
        )
        raise CliError(msg)
    if not found.resolved:
        found.resolve()
    return found


# ------------------------------------------------- options shared by the commands

#: ``--redis-url``: where runs live; commands that reach a store take it.
RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="DATAGRAPH_REDIS_URL",
        help="Redis/Valkey URL of the store (default: the in-memory store).",
        show_default=False,
    ),
]


class Backend(enum.StrEnum):
    """The async library a command runs on."""

    asyncio = "asyncio"
    trio = "trio"


#: ``--backend``: the async library commands that run async code use.
BackendOption = Annotated[
    Backend,
    typer.Option("--backend", help="The async library to run on."),
]


def make_supervisor(redis_url: str | None) -> Supervisor:
    """Create the supervisor a command works with.

    Args:
        redis_url: a Redis/Valkey URL (``RedisUrlOption``); None for a new
            in-memory store.

    Returns:
        The supervisor (not attached to the process); ``await supervisor.aclose()``
        when done.

    Raises:
        CliError: the URL names no known store, or the ``redis`` extra is missing.
    """
    # Imported on use: --help and `graph` need no store.
    from ..stores import MemoryStore
    from ..supervisor import Supervisor

    try:
        if redis_url:
            _quiet_glide()
            return Supervisor(redis_config={"url": redis_url})
        return Supervisor(store=MemoryStore())
    except (LookupError, ImportError, ValueError, TypeError) as exc:
        raise CliError(_PASSWORD.sub(r"\1***@", str(exc))) from exc


#: The password of a URL quoted in a message: ``scheme://user:PASSWORD@``.
_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _quiet_glide() -> None:
    """Keep the Redis client's own log lines off the terminal.

    valkey-glide logs connection failures to stdout by itself; commands report
    them as one line (a ``StoreConnectionError``), and stdout may carry a run's
    outputs. A logger configured by the user's own code is left as it is.
    """
    with contextlib.suppress(ImportError):
        from glide import Logger, LogLevel

        Logger.init(LogLevel.OFF)


def run_async(func: Callable[[], Awaitable[T]], backend: Backend) -> T:
    """Run an async function to completion on ``backend`` (from a sync command)."""
    import anyio

    async def call() -> T:
        return await func()

    return anyio.run(call, backend=backend.value)


def run_until_interrupted(
    func: Callable[[], Awaitable[T]],
    backend: Backend,
    interrupted: Callable[[], str],
    style: str | None = None,
) -> T:
    """Like ``run_async``, but Ctrl+C prints ``interrupted()`` and exits with 130."""
    try:
        return run_async(func, backend)
    except BaseException as exc:
        if not isinstance(unwrap(exc), KeyboardInterrupt):
            raise
        stderr_console().print(interrupted(), style=style, markup=False)
        raise typer.Exit(130) from None


# ---------------------------------------------------- options of run, watch, runs
#
# ``run`` starts a flow in this process (on any store); ``watch`` and ``runs``
# reach runs started by any process, so they need a store shared between
# processes: Redis/Valkey.

#: ``--redis-url`` of the commands that only make sense with a shared store.
SharedRedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="DATAGRAPH_REDIS_URL",
        help="Redis/Valkey URL of the store the runs live in. [bold]Required[/]: "
        "runs in the in-memory store exist only inside the process running them.",
        show_default=False,
    ),
]

#: ``--interval``: how often the live view takes a snapshot of the run.
IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval",
        min=0.05,
        help="Seconds between two snapshots of the run.",
    ),
]

RunIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN_ID",
        help="The id of a run, as printed by [cyan]datagraph run[/] or "
        "[cyan]datagraph runs list[/].",
        show_default=False,
    ),
]

FlowArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODULE:FLOW",
        help="Import path of a Flow, or of a function returning one, "
        "e.g. [cyan]myapp.flows:etl[/].",
        show_default=False,
    ),
]

#: What a run's status is once it has ended.
_ENDED = ("succeeded", "failed", "cancelled")


def require_redis(redis_url: str | None, command: str) -> str:
    """Return the Redis URL a command needs, or explain why there must be one.

    Raises:
        CliError: no URL was given (nor set in ``DATAGRAPH_REDIS_URL``).
    """
    if not redis_url:
        msg = (
            f"'datagraph {command}' needs a Redis URL: pass --redis-url "
            "redis://HOST:6379/0 or set DATAGRAPH_REDIS_URL (runs in the in-memory "
            "store exist only inside the process that started them)"
        )
        raise CliError(msg)
    return redis_url


def stdout_console() -> Console:
    """Return a console on stdout for views: no auto-highlighting.

    Created per call so it writes to whatever ``sys.stdout`` is at the time.
    """
    return Console(highlight=False)


@contextlib.asynccontextmanager
async def opened_supervisor(redis_url: str | None) -> AsyncIterator[Supervisor]:
    """Make a supervisor (``make_supervisor``) and close its store afterwards."""
    import anyio

    supervisor = make_supervisor(redis_url)
    try:
        yield supervisor
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await supervisor.aclose()


def exit_status(snapshot: RunSnapshot) -> int:
    """The exit status for a run that ended: 0 if it succeeded, else 1."""
    return 0 if snapshot.status == "succeeded" else 1


# ------------------------------------------------------------------------ Ctrl+C


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def unwrap(exc: BaseException) -> BaseException:
    """Return the one exception that an exception group (of a task group) stands for.

    ``KeyboardInterrupt`` first, then the first exception that is not a
    cancellation, then the first cancellation; anything but a group is returned
    as it is.
    """
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    for leaf in leaves:
        if not is_cancellation(leaf):
            return leaf
    return leaves[0] if leaves else exc


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncio's or trio's cancellation (no event loop needed)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)
