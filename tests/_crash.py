"""Killing workers during a run and timing their recovery (test_crash_recovery.py).

Works with any engine's worker handle (``_worker_processes.WorkerProcess``): it
lists its pool children, SIGKILLs one of them or the whole worker, and starts it
again; the Celery handles of tests/_workers.py and the Dramatiq ones of
tests/_dramatiq_workers.py are both such handles.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections import Counter
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.to_thread

from crash_services import flow

if TYPE_CHECKING:
    from pathlib import Path

    from _worker_processes import WorkerProcess as Worker
    from datagraph import Run
    from datagraph._plan import JobRecord

CHILD, WHOLE = "pool child", "whole worker"


@dataclasses.dataclass
class Kill:
    """One SIGKILL: what was killed, what ran there, and when each came back."""

    number: int
    worker: str
    kind: str
    pid: int
    at: float  # wall clock, comparable with the states' times (one machine)
    #: The processors that were running in the killed process(es), and their epoch.
    epochs: dict[str, int]
    #: Seconds from the kill until each of them ran again (taken over).
    recovered: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def service(self) -> str:
        """The service of the killed worker ("A" or "B")."""
        return self.worker[0]

    def describe(self) -> str:
        """One line of the report."""
        back = ", ".join(f"{p} in {s:.2f}s" for p, s in sorted(self.recovered.items()))
        return (
            f"kill {self.number:2d}: {self.kind:12s} of worker {self.worker} "
            f"(pid {self.pid}) running {sorted(self.epochs)} -> back: {back}"
        )


class Crasher:
    """SIGKILLs the workers of two services during one run, as a chaos monkey.

    A killed worker is started again in the background while the other worker of
    its service (each service runs two) serves the jobs taken over meanwhile.

    Args:
        run: the run under test.
        workers: the workers by name: the service's letter and a number ("A1").
        crash_dir: where the processors write their pids (``DG_CRASH_DIR``).
        respawns_children: whether the engine's main process replaces a killed
            pool child itself (Celery's prefork pool); otherwise a killed child
            takes its main process down and the worker is restarted.
        lease: the workers' lease (seconds).
        rng: the source of the random moments and targets.
    """

    def __init__(
        self,
        run: Run,
        workers: dict[str, Worker],
        crash_dir: Path,
        *,
        respawns_children: bool,
        lease: float,
        rng: random.Random,
    ) -> None:
        self.run = run
        self.workers = workers
        self.crash_dir = crash_dir
        self.respawns_children = respawns_children
        self.lease = lease
        self.rng = rng
        self.kills: list[Kill] = []
        self._restarts: anyio.abc.TaskGroup
        self._restarting: dict[str, anyio.Event] = {}  # workers starting again

    def _pid_of(self, processor: str) -> int | None:
        try:
            return int((self.crash_dir / processor).read_text())
        except (OSError, ValueError):
            return None

    def _service_of(self, pid: int) -> tuple[str, bool] | None:
        """The worker that holds ``pid``, and whether it is a pool child."""
        for name, worker in self.workers.items():
            if pid in worker.children():
                return name, True
            if pid == worker.pid:
                return name, False
        return None

    async def _states(self) -> dict[str, JobRecord]:
        return await self.run.states()

    async def wait_running(self, *processors: str, timeout: float = 30) -> None:
        """Wait until each processor runs in a live worker process we know."""
        seen = ""
        try:
            with anyio.fail_after(timeout):
                while True:
                    states = await self._states()
                    pids = {p: self._pid_of(p) for p in processors}
                    where = {
                        p: pid and self._service_of(pid) for p, pid in pids.items()
                    }
                    seen = f"states {states}, pids {pids}, workers {where}"
                    if all(
                        states[p].status == "running" and where[p] for p in processors
                    ):
                        return
                    await anyio.sleep(0.02)
        except TimeoutError:
            msg = f"{processors} did not run within {timeout}s; last seen: {seen}"
            raise AssertionError(msg) from None

    async def kill(self, processor: str, kind: str) -> Kill:
        """SIGKILL the process running ``processor`` (or its whole worker).

        A whole worker is started again at once, as a process manager would.
        Returns once every processor that ran in the killed process(es) is
        running again, with the seconds each took. One failure at a time: a
        service is hit again only once its workers are all back.
        """
        with anyio.fail_after(60):
            for back in self._restarting_in(processor):
                await back.wait()
        await self.wait_running(processor)
        pid = self._pid_of(processor)
        assert pid is not None
        where = self._service_of(pid)
        assert where is not None, f"{processor} runs in pid {pid}, in no worker"
        name, is_child = where
        worker = self.workers[name]
        if kind == CHILD and not is_child:
            kind = WHOLE  # a pool without children (solo): the process is the worker
        doomed = {pid} if kind == CHILD else {worker.pid, *worker.children()}
        states = await self._states()
        epochs = {
            p: states[p].epoch
            for p in states
            if states[p].status == "running" and self._pid_of(p) in doomed
        }
        at = time.time()
        if kind == CHILD:
            worker.kill_child(pid)
        else:
            worker.kill()
        kill = Kill(len(self.kills) + 1, name, kind, pid, at, epochs)
        self.kills.append(kill)
        if kind == WHOLE or not self.respawns_children:
            self._restarting[name] = anyio.Event()
            self._restarts.start_soon(self._restart, name, worker)
        await self._wait_recovered(kill)
        return kill

    def _restarting_in(self, processor: str) -> list[anyio.Event]:
        """The restarts in flight of the workers of ``processor``'s service."""
        service = "A" if processor in flow.SERVICE_A else "B"
        return [e for name, e in self._restarting.items() if name[0] == service]

    async def _restart(self, name: str, worker: Worker) -> None:
        try:
            self.workers[name] = await anyio.to_thread.run_sync(worker.restart)
        finally:
            self._restarting.pop(name).set()

    async def _wait_recovered(self, kill: Kill) -> None:
        # Past lease + 5 s the test fails anyway; wait a little longer to say by how
        # much.
        with anyio.fail_after(self.lease + 15):
            while len(kill.recovered) < len(kill.epochs):
                states = await self._states()
                for processor, epoch in list(kill.epochs.items()):
                    state = states[processor]
                    if state.epoch == epoch and state.status == "done":
                        del kill.epochs[processor]  # it had finished: nothing lost
                        continue
                    if processor in kill.recovered or state.epoch <= epoch:
                        continue
                    # A takeover bumps the epoch; the new run records its start.
                    started = state.started
                    if state.status in ("running", "done") and started is not None:
                        assert started > kill.at, (processor, state)
                        kill.recovered[processor] = started - kill.at
                await anyio.sleep(0.02)

    async def chaos(self, kills: int) -> None:
        """Make ``kills`` kills at random moments, each once the last recovered.

        The first kill takes the whole worker running the source while its
        consumer is mid-stream, the second the pool child running the consumer;
        the others pick a running processor and a kind at random.
        """
        first = [(flow.source.name, WHOLE), (flow.double.name, CHILD)]
        async with anyio.create_task_group() as self._restarts:
            for number in range(kills):
                await anyio.sleep(self.rng.uniform(0.1, 0.8))  # a random moment
                if number < len(first):
                    processor, kind = first[number]
                else:
                    states = await self._states()
                    running = sorted(p for p, s in states.items() if s.live)
                    # Rather a service whose workers are all up (no waiting).
                    ready = [p for p in running if not self._restarting_in(p)]
                    processor = self.rng.choice(ready or running)
                    kind = self.rng.choice([CHILD, WHOLE])
                await self.kill(processor, kind)

    def report(self) -> str:
        """Every kill and its recovery, one a line."""
        return "\n".join(k.describe() for k in self.kills)


def expected(n: int) -> Counter[int]:
    """The whole multiset of values the crash flow must produce."""
    return Counter(2 * i + 1 for i in range(n))


def crash_env(crash_dir: Path, lease: float) -> dict[str, str]:
    """The settings of every process of the crash test (workers and the test)."""
    return {
        "DG_CRASH_DIR": str(crash_dir),
        "DATAGRAPH_LEASE": str(lease),
        "DATAGRAPH_READ_TIMEOUT": "0.2",
        # The source stays at most this far ahead of its reader, so it lives as
        # long as the slowed consumer does.
        "DATAGRAPH_WINDOW": "500",
    }


def slow_down(crash_dir: Path) -> None:
    """Make the consumer take 2 ms a value (until ``speed_up``)."""
    (crash_dir / "slow").touch()


def speed_up(crash_dir: Path) -> None:
    """Let the consumer run at full speed."""
    os.unlink(crash_dir / "slow")
