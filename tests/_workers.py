"""Real Celery workers and a throwaway RabbitMQ node, for the distributed tests.

``start_worker(...)`` runs ``celery -A <module> worker`` as a subprocess (its own
process group) and returns a ``Worker`` handle once Celery says it is ready: its
pid, its pool children's pids, its log, and ``kill()`` / ``kill_child()`` /
``restart()`` / ``stop()``. ``start_rabbitmq(...)`` starts a RabbitMQ node of its
own (own node name, ports, epmd, data and log directories). The ``broker_url``
fixture gives both brokers (``redis``, ``rabbitmq``) to the tests that use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pytest

from _redis_servers import free_port
from _worker_processes import ROOT, WorkerProcess
from _worker_processes import stop_workers as stop_workers

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

READY_TIMEOUT = 60.0


class Worker(WorkerProcess):
    """A running ``celery -A <app> worker`` (or another engine's worker command)."""

    @property
    def name(self) -> str:
        """The worker's node name (``-n``)."""
        return self.argv[self.argv.index("-n") + 1]

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Self:
        """Wait until Celery says the worker consumes; fail the test if it won't."""
        return super().wait_ready(timeout)


def restart_workers(*workers: Worker) -> list[Worker]:
    """Stop several workers at once, then start each again (side by side)."""
    stop_workers(*workers)
    fresh = [w.restart(wait=False) for w in workers]
    return [w.wait_ready() for w in fresh]


def start_worker(
    app: str,
    *,
    pool: str = "prefork",
    concurrency: int | None = 2,
    queues: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    wait: bool = True,
) -> Worker:
    """Start ``celery -A app worker`` and wait until it consumes.

    Args:
        app: the module Celery loads (``-A``), e.g. ``tests.services.svc_a``.
        pool: ``prefork`` (Celery's default), ``threads`` or ``solo``.
        concurrency: ``--concurrency``; None leaves Celery's default.
        queues: ``-Q`` (empty: the queues the service chooses).
        env: extra environment variables of the worker.
        args: more command-line options.
        wait: wait until it is ready (else call ``wait_ready()``: start several
            workers first, then wait for them all).
    """
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "--pool", pool, "--loglevel", "INFO", "--without-gossip",
        "--without-mingle", "--without-heartbeat",
        "-n", f"{app.rpartition('.')[2]}-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip
    if concurrency is not None and pool != "solo":
        argv += ["--concurrency", str(concurrency)]
    if queues:
        argv += ["-Q", ",".join(queues)]
    argv += list(args)
    pythonpath = os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p
    )
    full_env = {**os.environ, "PYTHONPATH": pythonpath, **(env or {})}
    return start_process(app, argv, env=full_env, wait=wait)


def start_process(
    app: str,
    argv: list[str],
    *,
    env: dict[str, str],
    ready: str = " ready.",
    wait: bool = True,
) -> Worker:
    """Start any worker command (another engine's too) as a ``Worker`` handle.

    Args:
        app: what it serves, for messages.
        argv: the command line.
        env: its whole environment.
        ready: text of the output line that says it consumes.
        wait: wait for that line.
    """
    worker = Worker(app, argv, env, ready=ready)
    return worker.wait_ready() if wait else worker


# ---------------------------------------------------------------------- RabbitMQ


def _answers_amqp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1)[:1] == b"\x01"  # a Connection.Start frame
    except OSError:
        return False


@dataclasses.dataclass
class RabbitMQ:
    """A throwaway RabbitMQ node and the epmd it registers with."""

    url: str
    server: subprocess.Popen[bytes]
    epmd: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop the node and its epmd."""
        for proc in (self.server, self.epmd):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def rabbitmq_server() -> str | None:
    """The rabbitmq-server script that runs as the current user, if installed."""
    for candidate in ("/usr/lib/rabbitmq/bin/rabbitmq-server",):
        if Path(candidate).exists():
            return candidate
    return shutil.which("rabbitmq-server")


def start_rabbitmq(workdir: Path, timeout: float = 60) -> RabbitMQ:
    """Start a RabbitMQ node of its own under ``workdir``; return when it serves.

    Nothing is shared with a RabbitMQ already on the machine: the node has its
    own name, AMQP and distribution ports, epmd port, cookie (``HOME``), data,
    logs and configuration.

    Raises:
        RuntimeError: RabbitMQ or Erlang's epmd is missing, or the node did not
            start (the message holds its log).
    """
    server, epmd = rabbitmq_server(), shutil.which("epmd")
    if server is None or epmd is None:
        msg = (
            "the RabbitMQ tests need rabbitmq-server (Debian: apt-get install -y "
            "rabbitmq-server; `make test` installs it when missing)"
        )
        raise RuntimeError(msg)
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    amqp_port, dist_port, epmd_port = free_port(), free_port(), free_port()
    config = workdir / "rabbitmq.conf"
    config.write_text(f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n")
    plugins = workdir / "enabled_plugins"
    plugins.write_text("[].\n")
    log = workdir / "rabbitmq.log"
    env = {
        **os.environ,
        "HOME": str(home),
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": f"dgtest-{uuid.uuid4().hex[:8]}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_CONFIG_FILE": str(config),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
        "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
        "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
    }
    epmd_proc = subprocess.Popen(
        [epmd, "-port", str(epmd_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with log.open("wb") as out:
        server_proc = subprocess.Popen(
            [server],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node = RabbitMQ(
        f"amqp://guest:guest@127.0.0.1:{amqp_port}//", server_proc, epmd_proc, log
    )
    deadline = time.monotonic() + timeout
    while server_proc.poll() is None and time.monotonic() < deadline:
        if _answers_amqp(amqp_port):
            return node
        time.sleep(0.1)  # polling a server we started; it offers nothing to wait on
    node.stop()
    msg = f"RabbitMQ did not start; its log:\n{log.read_text(errors='replace')}"
    raise RuntimeError(msg)


@pytest.fixture(scope="session")
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a throwaway RabbitMQ node, started once per session."""
    if url := os.environ.get("RABBITMQ_URL"):
        yield url
        return
    try:
        node = start_rabbitmq(tmp_path_factory.mktemp("rabbitmq"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node.url
    finally:
        node.stop()


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each Celery broker in turn: the test Redis, then a throwaway RabbitMQ."""
    fixture = "redis_url" if request.param == "redis" else "rabbitmq_url"
    return str(request.getfixturevalue(fixture))
