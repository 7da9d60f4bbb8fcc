"""``python -m fastsock stat`` against a real server process: N established
connections, M in TIME_WAIT on the server's side (the server closes them
first) and a listener whose accept queue is full; every count checked
against ``ss -tan`` for the same ports, and bad input as one line."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from typing import Any, Iterator

import psutil
import pytest

from fastsock.apps._common import EXIT_USAGE
from stat_lab import HAVE_SS, SS_STATES, Lab, fill_accept_queue, ss_counts, ss_rows, wait_until

pytestmark = pytest.mark.timeout(90)
needs_ss = pytest.mark.skipif(not HAVE_SS, reason="ss (iproute2) is not installed")

PYTHON = sys.executable
TIMEOUT = 60.0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
N_ESTABLISHED = 5
M_TIME_WAIT = 3
BACKLOG = 2

# The server: listens on two ports, accepts N + M on the first and closes M
# of them first (server-side TIME_WAIT once the client closes too); never
# accepts on the second. Commands arrive one per line on stdin.
SERVER = f"""
import socket, sys
main = socket.socket(); main.bind(("127.0.0.1", 0)); main.listen(64)
idle = socket.socket(); idle.bind(("127.0.0.1", 0)); idle.listen({BACKLOG})
print(main.getsockname()[1], idle.getsockname()[1], flush=True)
held = []
for line in sys.stdin:
    if line.startswith("accept"):
        held += [main.accept()[0] for _ in range(int(line.split()[1]))]
        print("accepted", flush=True)
    elif line.startswith("close"):
        for _ in range(int(line.split()[1])):
            held.pop(0).close()
        print("closed", flush=True)
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "fastsock", "stat", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, env=ENV)


def stat_json(*args: str) -> dict[str, Any]:
    done = run("--json", *args)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def nonzero(counts: dict[str, int]) -> Counter[str]:
    return Counter({k: v for k, v in counts.items() if v})


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([PYTHON, "-c", SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port, self.idle_port = (int(p) for p in self.ask(None).split())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, command: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def scene() -> Iterator[tuple[Server, Lab, list[socket.socket]]]:
    """The server with N established, M server-side TIME_WAIT and a full accept queue."""
    server = Server()
    lab = Lab()
    try:
        clients = [lab._new() for _ in range(N_ESTABLISHED + M_TIME_WAIT)]
        for c in clients:
            c.settimeout(10)
            c.connect(("127.0.0.1", server.port))
        assert server.ask(f"accept {len(clients)}") == "accepted"
        assert server.ask(f"close {M_TIME_WAIT}") == "closed"
        for c in clients[:M_TIME_WAIT]:   # EOF from the server: close our side too
            assert c.recv(1) == b""
            c.close()
        queued, _stalled = fill_accept_queue(lab, ("127.0.0.1", server.idle_port))
        assert queued
        assert wait_until(lambda: ss_counts(local={server.port})["TIME_WAIT"] == M_TIME_WAIT)
        yield server, lab, queued
    finally:
        lab.close()
        server.stop()


@needs_ss
def test_port_counts_match_ss(scene: tuple[Server, Lab, list[socket.socket]]) -> None:
    server, _, _ = scene
    data = stat_json("--port", str(server.port))
    counts = nonzero(data["summary"]["tcp_states"])
    assert counts == ss_counts(local={server.port})
    assert counts == Counter(LISTEN=1, ESTABLISHED=N_ESTABLISHED, TIME_WAIT=M_TIME_WAIT)
    assert data["summary"]["local_ports"][str(server.port)]["tcp"] == sum(counts.values())
    assert {r["local_port"] for r in data["sockets"]} == {server.port}


@needs_ss
def test_pid_view_has_the_full_accept_queue(scene: tuple[Server, Lab, list[socket.socket]]) -> None:
    server, _, queued = scene
    data = stat_json("--pid", str(server.pid))
    both = {server.port, server.idle_port}
    # Connections waiting in the accept queue are held by no process yet; they
    # count as the server's because they sit on its listening port.
    assert nonzero(data["summary"]["tcp_states"]) == ss_counts(local=both)
    listeners = {r["local_port"]: r for r in data["sockets"] if r["state"] == "LISTEN"}
    assert set(listeners) == both
    idle = listeners[server.idle_port]
    assert (idle["accept_queue"], idle["backlog"]) == (len(queued), BACKLOG)
    ss_listen = [r for r in ss_rows(local={server.idle_port}) if r[0] == "LISTEN"]
    assert [(r[1], r[2]) for r in ss_listen] == [(idle["accept_queue"], idle["backlog"])]
    assert idle["pids"] == [server.pid]
    assert any("is full" in w for w in data["warnings"])
    # descriptor use against the limit, as psutil sees the same process
    (desc,) = data["descriptors"]
    proc = psutil.Process(server.pid)
    assert (desc["pid"], desc["in_use"], desc["soft"]) == (
        server.pid, proc.num_fds(), proc.rlimit(psutil.RLIMIT_NOFILE)[0])
    assert desc["warning"] is None


@needs_ss
def test_peer_port_shows_the_client_side(scene: tuple[Server, Lab, list[socket.socket]]) -> None:
    server, _, _ = scene
    data = stat_json("--peer-port", str(server.port))
    counts = nonzero(data["summary"]["tcp_states"])
    assert counts == ss_counts(peer={server.port}) == Counter(ESTABLISHED=N_ESTABLISHED)
    assert all(r["pids"] == [os.getpid()] for r in data["sockets"])


def test_state_filter(scene: tuple[Server, Lab, list[socket.socket]]) -> None:
    server, _, _ = scene
    data = stat_json("--port", str(server.port), "--state", "time-wait")
    assert [r["state"] for r in data["sockets"]] == ["TIME_WAIT"] * M_TIME_WAIT
    assert all(r["inode"] == 0 and r["pids"] == [] for r in data["sockets"])
    both = stat_json("--port", str(server.port), "--state", "LISTEN,ESTAB")
    assert Counter(r["state"] for r in both["sockets"]) == Counter(
        LISTEN=1, ESTABLISHED=N_ESTABLISHED)


def test_table_text(scene: tuple[Server, Lab, list[socket.socket]]) -> None:
    server, _, queued = scene
    done = run("--pid", str(server.pid))
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].split("  ")[0:1] == ["Proto"] and "Foreign Address" in lines[0]
    idle_row = next(line for line in lines if f"127.0.0.1:{server.idle_port} " in line
                    and "LISTEN" in line)
    assert f"{len(queued)} of {BACKLOG} FULL" in idle_row and f"{server.pid}/python" in idle_row
    assert any(line.startswith("  TIME_WAIT") and "this side closed first" in line
               for line in lines)
    assert any(line.startswith(f"  {server.pid}/python") and "in use of" in line
               for line in lines)
    assert any(line.startswith("warning: accept queue of") for line in lines)


def test_watch_prints_until_interrupted(scene: tuple[Server, Lab, list[socket.socket]]) -> None:
    server, _, _ = scene
    proc = subprocess.Popen([PYTHON, "-m", "fastsock", "stat", "--port", str(server.port),
                             "--json", "--watch", "0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        snapshots = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    times = [s["time"] for s in snapshots]
    assert times == sorted(times) and times[-1] - times[0] >= 0.15
    assert all(s["summary"]["tcp_states"]["TIME_WAIT"] == M_TIME_WAIT for s in snapshots)


def test_watching_a_process_that_exits() -> None:
    child = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(1.5)"])
    proc = subprocess.run([PYTHON, "-m", "fastsock", "stat", "--pid", str(child.pid), "--watch",
                           "0.2", "--json"], capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
    child.wait(timeout=30)
    assert proc.returncode == 1
    assert proc.stderr == f"fastsock: error: no process with PID {child.pid}\n"
    assert len(proc.stdout.splitlines()) >= 2


def gone_pid() -> int:
    child = subprocess.Popen([PYTHON, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


@pytest.mark.parametrize("args, needle", [
    (("--pid", "GONE"), "no process with PID GONE"),
    (("--pid", "abc"), "PID must be a number, got 'abc'"),
    (("--pid", "0"), "PID must be positive, got 0"),
    (("--port", "0"), "port must be in 1..65535, got 0"),
    (("--port", "http"), "port must be a number 1..65535, got 'http'"),
    (("--pid", "1", "--port", "80"), "give --pid or --port/--peer-port, not both"),
    (("--state", "NAPPING"), "unknown state 'NAPPING'"),
    (("--watch", "0"), "SECONDS must be > 0, got 0"),
    (("--watch", "nan"), "SECONDS must be > 0, got nan"),
    (("--bogus",), "unrecognized arguments: --bogus"),
])
def test_usage_errors_are_one_line(args: tuple[str, ...], needle: str) -> None:
    if "GONE" in args:
        pid = str(gone_pid())
        args = tuple(pid if a == "GONE" else a for a in args)
        needle = needle.replace("GONE", pid)
    done = run(*args)
    assert done.returncode == EXIT_USAGE, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsock: error: "), done.stderr
    assert needle in lines[0]
    assert done.stdout == ""


def test_ss_state_names_cover_every_state() -> None:
    from fastsock.limits.table import TCP_STATES
    assert set(SS_STATES.values()) == set(TCP_STATES)
