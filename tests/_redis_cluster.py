"""A throwaway 3-node Redis Cluster: cluster-enabled redis-server processes.

``RedisCluster`` starts three masters on free ports, each in a directory of its own
(a node writes its ``nodes.conf`` there), joins them with ``redis-cli --cluster
create`` (no replicas) and waits until every node says ``cluster_state:ok``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import TYPE_CHECKING

from _redis_servers import RedisServer, Started, free_port

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("RedisCluster",)

_NODES = 3


def _cli() -> str:
    exe = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if exe is None:
        msg = "the cluster tests need redis-cli: apt-get install -y redis-tools"
        raise RuntimeError(msg)
    return exe


class RedisCluster(Started):
    """Three cluster-enabled redis-server masters of one test session.

    Args:
        workdir: where each node's directory (log, ``nodes.conf``) is made.
    """

    def __init__(self, workdir: Path) -> None:
        self.cli = _cli()
        self.nodes: list[RedisServer] = []
        for i in range(_NODES):
            home = workdir / f"node{i}"
            home.mkdir()
            # The bus port is chosen too: port + 10000 may be taken or too high.
            options = ["--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                       "--cluster-config-file", str(home / "nodes.conf"),
                       "--cluster-node-timeout", "5000"]  # fmt: skip
            self.nodes.append(RedisServer(home, options=options))

    @property
    def url(self) -> str:
        """The store URL naming every node: ``redis+cluster://h:p,h:p,h:p``."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{seeds}"

    def _info(self, node: RedisServer) -> str:
        return subprocess.run(
            [self.cli, "-p", str(node.port), "CLUSTER", "INFO"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip

    def start(self, *, wait: float = 30.0) -> None:
        """Start the nodes, create the cluster and wait until every node is ok."""
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [self.cli, "--cluster", "create", *addresses,
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in self._info(node) for node in self.nodes):
                return
            time.sleep(0.05)  # polling processes we started; no event to wait on
        states = {node.port: self._info(node) for node in self.nodes}
        self.stop()
        msg = f"the Redis Cluster did not reach cluster_state:ok: {states}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """End every node."""
        for node in self.nodes:
            node.stop()
