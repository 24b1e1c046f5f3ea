"""Throwaway redis-server processes that tests can stall, kill and restart.

Each ``RedisServer`` is a real server of its own (not the session's shared one, see
``conftest.redis_url``), on a free port, with its data in a temporary directory:

- ``pause()`` / ``resume()`` stop and continue the process (SIGSTOP/SIGCONT): the
  port stays open and connections stay up, but nothing is answered, like a
  server stuck in a long command, a fork or a swap storm;
- ``kill()`` ends it at once (SIGKILL) and ``start()`` brings it back on the same
  port; with ``aof=True`` (``appendfsync always``) every write it acknowledged is
  on disk first, so a restart loses nothing it said was written.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

__all__ = ("RedisServer", "free_port")


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            # A server with a password answers, but refuses the PING.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class Started:
    """Started on entering a ``with`` block and stopped on leaving it.

    Also stopped when starting fails half-way, so no process outlives its test.
    """

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer(Started):
    """A redis-server process of one test.

    Args:
        workdir: where its log and (with ``aof``) its append-only file live.
        aof: persist every write before answering (``appendonly yes``,
            ``appendfsync always``), so ``kill()`` then ``start()`` keeps them.
        options: further ``redis-server`` arguments, e.g. ``["--requirepass", "x"]``.
    """

    def __init__(
        self, workdir: Path, *, aof: bool = False, options: list[str] | None = None
    ) -> None:
        exe = shutil.which("redis-server") or shutil.which("valkey-server")
        if exe is None:
            msg = "these tests need redis-server: apt-get install -y redis-server"
            raise RuntimeError(msg)
        self.exe = exe
        self.workdir = workdir
        self.aof = aof
        self.options = list(options or [])
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, wait: float = 10.0) -> None:
        """Start the server (again, on the same port) and wait until it answers."""
        persistence = ["--appendonly", "no"]
        if self.aof:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", str(self.workdir), *persistence,
                *self.options]  # fmt: skip
        log = (self.workdir / "redis.log").open("ab")
        with log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while self.proc.poll() is None and time.monotonic() < deadline:
            if _answers_ping(self.port):
                return
            time.sleep(0.02)  # polling a process we started; no event to wait on
        self.stop()
        text = (self.workdir / "redis.log").read_text(errors="replace")
        msg = f"redis-server on port {self.port} did not start:\n{text[-2000:]}"
        raise RuntimeError(msg)

    def pause(self) -> None:
        """Stop the process (SIGSTOP): connections stay open, nothing is answered."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Continue a paused process (SIGCONT)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """End the process at once (SIGKILL), as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.paused = False

    def restart(self) -> None:
        """Kill the server and start it again on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """End the process if it runs (a paused one too)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
