"""A real Redis Cluster for the sharded pub/sub tests: three primaries
(redis-server --cluster-enabled yes) on free ports, joined with
``redis-cli --cluster create``; each node can be stopped and started again
on its port, keeping its cluster config. Every process is ended by its PID."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

CLUSTER_NODES = 3
NODE_TIMEOUT_MS = 2000        # cluster-node-timeout: failure detection, kept short for tests
UP_TIMEOUT = 10.0
DOWN_TIMEOUT = 5.0
CREATE_TIMEOUT = 30.0
BUS_PORT_OFFSET = 10_000      # a node's cluster bus listens on its port + 10000


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _cluster_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"CLUSTER INFO\r\n")
            return b"cluster_state:ok" in s.recv(4096)
    except OSError:
        return False


def _free_port_pair() -> int:
    """A port P such that P and its bus port P + 10000 are free now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + BUS_PORT_OFFSET > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + BUS_PORT_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterNodeProcess:
    def __init__(self, binary: str, workdir: Path, port: int) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.proc: Optional[subprocess.Popen[bytes]] = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        with open(self.workdir / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
                 "--loglevel", "warning"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            if _pings(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"cluster node did not start: "
                           f"{(self.workdir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()          # SIGTERM to this PID only
            try:
                proc.wait(DOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RedisClusterProcesses:
    def __init__(self, nodes: list[ClusterNodeProcess]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        """One startup node is enough: the client reads the others from it."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def node(self, port: int) -> ClusterNodeProcess:
        return next(n for n in self.nodes if n.port == port)

    def wait_ok(self, timeout: float = CREATE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(n.port) for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterProcesses]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("no redis-server/redis-cli: scripts/ensure-system-deps.sh installs Debian's "
                    "redis-server and redis-tools, which needs root and apt-get")
    nodes: list[ClusterNodeProcess] = []
    try:
        for i in range(CLUSTER_NODES):
            node = ClusterNodeProcess(server, tmp_path / f"node{i}", _free_port_pair())
            nodes.append(node)
            node.start()
        subprocess.run([cli, "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-yes"],
                       check=True, capture_output=True, timeout=CREATE_TIMEOUT)
        cluster = RedisClusterProcesses(nodes)
        cluster.wait_ok()
        yield cluster
    finally:
        for node in nodes:
            node.stop()
