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
import threading
import time
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest

from _redis_servers import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0


def _pids_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


class _Log:
    """Lines of a subprocess's output, read by a thread, with waits on them."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream_file = stream
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        """Wait until a line contains ``text``; False if the output ended first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def close(self) -> None:
        """Wait for the output to end (the process exited), then close it."""
        self._thread.join(10)
        self._stream_file.close()

    def text(self) -> str:
        """Everything read so far."""
        with self._changed:
            return "\n".join(self.lines)


@dataclasses.dataclass
class Worker:
    """A running worker process (``celery -A <app> worker``...) and its start.

    ``ready`` is the text of the output line that says it consumes.
    """

    app: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[str]
    log: _Log
    ready: str = " ready."

    @property
    def pid(self) -> int:
        """The worker's main process."""
        return self.process.pid

    @property
    def name(self) -> str:
        """The worker's node name (``-n``)."""
        return self.argv[self.argv.index("-n") + 1]

    def children(self) -> list[int]:
        """The pids of the pool's child processes (none for threads and solo)."""
        return sorted(_pids_by_parent().get(self.pid, []))

    def kill_child(self, pid: int) -> None:
        """SIGKILL one pool child (the prefork pool then starts a new one)."""
        if pid not in self.children():
            msg = f"{pid} is not a pool child of worker {self.name} ({self.pid})"
            raise ValueError(msg)
        os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole worker: the main process and its pool children."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()  # else a killed worker's pipe stays open: ResourceWarning

    def stop(self, timeout: float = 15) -> None:
        """Shut the worker down warmly (SIGTERM), or kill it after ``timeout``."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()  # whatever is left of the group
        self.log.close()

    def restart(self, *, wait: bool = True) -> Worker:
        """Start a new worker with the same arguments (after kill or stop)."""
        self.stop()
        return start_process(
            self.app, self.argv, env=self.env, ready=self.ready, wait=wait
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Worker:
        """Wait until Celery says the worker consumes; fail the test if it won't."""
        if not self.log.wait_for(self.ready, timeout):
            self.kill()
            pytest.fail(
                f"worker {self.app} did not become ready; its output:\n"
                f"{self.log.text()}",
                pytrace=False,
            )
        return self


def stop_workers(*workers: Worker, timeout: float = 15) -> None:
    """Stop several workers at once (each warm shutdown takes seconds)."""
    for worker in workers:
        if worker.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
    for worker in workers:
        worker.stop(timeout)


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
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: kill() takes the pool too
    )
    assert process.stdout is not None
    worker = Worker(app, argv, env, process, _Log(process.stdout), ready)
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
