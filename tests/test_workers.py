"""fastsock.workers: N worker processes on one SO_REUSEPORT port, over real sockets.

The supervisor runs as a subprocess (tests/workers_app.py, or the CLI with
``--workers``); each worker answers a connection with its PID.
"""
from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = Path(__file__).with_name("workers_app.py")
START_TIMEOUT = 30.0
CLI_READY = re.compile(r"^fastsock (\S+) listening on (\w+)://(\S+):(\d+)$")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if sel.select(timeout):
            return proc.stdout.readline().strip()
        return ""
    finally:
        sel.close()


@contextlib.contextmanager
def supervisor(cmd: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a supervisor; yield it and its first stdout line; kill it (by PID) after."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = _first_line(proc, START_TIMEOUT)
        assert line, f"no ready line; exit={proc.poll()}"
        yield proc, line
    finally:
        children = []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(proc.pid).children()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for child in children:   # its workers die with it (PDEATHSIG); make sure
            with contextlib.suppress(psutil.NoSuchProcess):
                child.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def pid_app(workers: int) -> contextlib.AbstractContextManager[tuple[subprocess.Popen[str], str]]:
    return supervisor([sys.executable, str(APP), str(workers)])


def port_of(line: str) -> int:
    m = re.fullmatch(r"ready (\d+)", line)
    assert m, line
    return int(m.group(1))


def ask_pid(port: int, timeout: float = 5.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(64)
            if not chunk:
                raise ConnectionResetError("closed before the PID line")
            data += chunk
    return int(data)


def worker_pids(proc: subprocess.Popen[str]) -> set[int]:
    """Live children of the supervisor (a draining one may exit while we look)."""
    pids = set()
    for child in psutil.Process(proc.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
    return pids


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.timeout(60)
def test_two_workers_on_one_port_both_serve() -> None:
    with pid_app(2) as (proc, line):
        port = port_of(line)
        pids = worker_pids(proc)
        assert len(pids) == 2
        seen: dict[int, int] = {}
        for _ in range(60):   # the kernel spreads connections by 4-tuple hash
            pid = ask_pid(port)
            seen[pid] = seen.get(pid, 0) + 1
        assert set(seen) == pids, f"connections went to {seen}, workers are {pids}"
        assert min(seen.values()) >= 5, seen   # 60 connections: both get a real share


@pytest.mark.timeout(60)
def test_killed_worker_is_restarted_and_logged() -> None:
    with pid_app(2) as (proc, line):
        port = port_of(line)
        before = worker_pids(proc)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(proc) - before) == 1 and len(worker_pids(proc)) == 2,
                 10, "a replacement worker")
        replacement = (worker_pids(proc) - before).pop()
        # The replacement serves: some connection reaches it (it shares the slot's queue).
        seen = set()
        deadline = time.monotonic() + 10
        while replacement not in seen and time.monotonic() < deadline:
            seen.add(ask_pid(port))
        assert replacement in seen and victim not in seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert re.search(rf"worker \d: pid {victim} killed by SIGKILL; restarting in [\d.]+s", log), log


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["fastsock", "asyncio", "uvloop"])
def test_sigterm_drains_every_worker_with_1001(loop: str) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    cmd = [sys.executable, "-m", "fastsock", "serve", "echo", "--workers", "2", "--port", "0",
           "--shutdown-timeout", "3", "--loop", loop]
    with supervisor(cmd) as (proc, line):
        m = CLI_READY.match(line)
        assert m and m.group(1) == "echo", line
        port = int(m.group(4))
        workers = worker_pids(proc)
        assert len(workers) == 2
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/")) for _ in range(12)]
            for i, ws in enumerate(clients):
                ws.send(f"m{i}")
                assert ws.recv(timeout=5) == f"m{i}"
            # Every worker holds some of them (each client's server side is in one worker).
            held = {c.pid for c in psutil.net_connections("tcp")
                    if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
                    and c.pid in workers}
            assert held == workers
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for ws in clients:
                with pytest.raises(ConnectionClosed) as info:
                    ws.recv(timeout=5)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            assert proc.wait(20) == 0
            assert time.monotonic() - started < 3 + 2 + 1   # shutdown timeout + kill grace + slack
        for pid in workers:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


RELOADS = 3
RELOAD_LOOP_MAX_CONNECTIONS = 50_000   # bound on the client loop
RELOAD_LOOP_MAX_SECONDS = 90.0


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sighup_rolling_reload_refuses_and_resets_nothing() -> None:
    """A client connects in a loop through three rolling reloads of 2 workers:
    every connection is accepted and answered, and every worker is replaced."""
    with pid_app(2) as (proc, line):
        port = port_of(line)
        generations = [worker_pids(proc)]
        failures: list[str] = []
        served: dict[int, int] = {}
        done = 0
        started = time.monotonic()
        reload_at = started + 0.3

        def one() -> None:
            nonlocal done
            try:
                pid = ask_pid(port)
                served[pid] = served.get(pid, 0) + 1
            except OSError as exc:   # refused, reset, or closed before the answer
                failures.append(f"{type(exc).__name__}: {exc}")
            done += 1

        while len(generations) <= RELOADS:
            assert done < RELOAD_LOOP_MAX_CONNECTIONS and time.monotonic() - started < RELOAD_LOOP_MAX_SECONDS
            one()
            if reload_at is not None and time.monotonic() >= reload_at:
                proc.send_signal(signal.SIGHUP)
                reload_at = None
                previous = generations[-1]
            if reload_at is None:
                now_pids = worker_pids(proc)
                # the reload is over when both workers are new and the old ones have gone
                if len(now_pids) == 2 and not (now_pids & previous):
                    generations.append(now_pids)
                    reload_at = time.monotonic() + 0.3
        for _ in range(200):  # and some after the last reload
            one()
        assert not failures, f"{len(failures)} of {done} connections failed: {failures[:5]}"
        for a, b in zip(generations, generations[1:]):
            assert not (a & b)
        assert set(served) >= generations[-1]   # the last generation serves
        assert len(set(served)) >= 2 * (RELOADS + 1) - 1, served  # every generation served some
        print(f"\n{done} connections across {RELOADS} reloads, 0 failed; served by {len(served)} pids")


KERNEL_PROBE = r'''
import socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
    f.write(sys.argv[1])
listeners, port = [], 0
for _ in range(2):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    port = s.getsockname()[1]
    listeners.append(s)
# the kernel completes these handshakes into the two accept queues; nobody accepts yet
clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(40)]
listeners[0].close()                     # what a worker closing its own listener does
listeners[1].setblocking(False)
accepted = []
while True:
    try:
        accepted.append(listeners[1].accept()[0])
    except BlockingIOError:
        break
reset = 0
for c in clients:
    c.settimeout(0.2)
    try:
        c.recv(1)                        # the server never writes: a timeout means alive
    except ConnectionResetError:
        reset += 1
    except TimeoutError:
        pass
print(len(accepted), reset)
'''


@pytest.mark.parametrize("migrate", [0, 1])
@pytest.mark.timeout(60)
def test_the_kernel_resets_a_closed_reuseport_listeners_queue_unless_migrated(migrate: int) -> None:
    """Why fastsock.workers keeps each slot's listener open across reloads: closing
    one SO_REUSEPORT listener resets the connections queued on it, unless
    net.ipv4.tcp_migrate_req=1 (checked in a fresh network namespace)."""
    import shutil
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    run = subprocess.run(["unshare", "-n", sys.executable, "-c", KERNEL_PROBE, str(migrate)],
                         capture_output=True, text=True, timeout=30)
    if "tcp_migrate_req" in run.stderr and "No such file" in run.stderr:
        pytest.skip("this kernel has no net.ipv4.tcp_migrate_req (Linux < 5.14)")
    assert run.returncode == 0, run.stderr
    accepted, reset = map(int, run.stdout.split())
    if migrate:
        assert (accepted, reset) == (40, 0)
    else:
        assert reset > 0 and accepted + reset == 40, (accepted, reset)


def read_log_until(proc: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    """stderr lines up to the first matching ``pattern`` (bounded in time). Raw
    reads: a buffered readline() could take several lines and leave select() silent."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *done, pending = pending.split(b"\n")
            for raw in done:
                lines.append(raw.decode(errors="replace"))
                if re.search(pattern, lines[-1]):
                    return lines
    finally:
        sel.close()
    pytest.fail(f"no log line matching {pattern!r} in {timeout}s: {lines[-10:]}")


@pytest.mark.timeout(60)
def test_sigusr1_logs_connections_and_limits_per_worker_and_in_total() -> None:
    from websockets.sync.client import connect

    cmd = [sys.executable, "-m", "fastsock", "serve", "echo", "--workers", "2", "--port", "0"]
    with supervisor(cmd) as (proc, line):
        port = int(CLI_READY.match(line).group(4))  # type: ignore[union-attr]
        # the report logged once every worker accepts: nobody connected yet
        read_log_until(proc, r"workers on 127\.0\.0\.1:\d+: 0 connections in total", 10)
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/")) for _ in range(12)]
            for ws in clients:
                ws.send("x")
                assert ws.recv(timeout=5) == "x"
            held: dict[int, int] = {}
            for c in psutil.net_connections("tcp"):
                if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED and c.pid:
                    held[c.pid] = held.get(c.pid, 0) + 1
            proc.send_signal(signal.SIGUSR1)
            lines = read_log_until(proc, r"workers on 127\.0\.0\.1:\d+: \d+ connections in total", 10)
        per_worker = {}
        for text in lines:
            m = re.search(r"worker \d: pid (\d+), (\d+) connections, (\d+) of (\d+) descriptors "
                          r"\(room for (\d+) more\), accept queue (\d+)", text)
            if m:
                pid, conns, fds, soft, room, queue = map(int, m.groups())
                per_worker[pid] = conns
                assert fds >= conns and room == soft - fds and queue == 0
        assert per_worker == held and sum(per_worker.values()) == 12
        assert re.search(r"12 connections in total, room for \d+ more; 0 reloads", lines[-1]), lines[-1]


@pytest.mark.timeout(60)
def test_a_reload_whose_replacement_fails_keeps_the_old_workers(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    env = dict(_env(), WORKERS_APP_BROKEN_IF=str(broken))
    proc = subprocess.Popen([sys.executable, str(APP), "2"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = port_of(_first_line(proc, START_TIMEOUT))
        before = worker_pids(proc)
        broken.write_text("the new code does not start")
        proc.send_signal(signal.SIGHUP)
        lines = read_log_until(proc, r"reload aborted", 20)
        assert re.search(r"replacement pid \d+ exit status 3 before it accepted; reload aborted, "
                         r"pid (\d+) keeps serving", lines[-1]), lines[-1]
        assert worker_pids(proc) >= before
        assert {ask_pid(port) for _ in range(30)} <= before   # still served, by the old ones
        broken.unlink()
        proc.send_signal(signal.SIGHUP)                      # fixed: the next reload goes through
        wait_for(lambda: len(worker_pids(proc)) == 2 and not (worker_pids(proc) & before), 20,
                 "a complete reload")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["fastsock", "uvloop"])
def test_tcp_echo_workers_serve_on_the_slot_listeners(loop: str) -> None:
    cmd = [sys.executable, "-m", "fastsock", "serve", "tcp-echo", "--workers", "2", "--port", "0",
           "--loop", loop]
    with supervisor(cmd) as (proc, line):
        m = CLI_READY.match(line)
        assert m and m.group(1) == "tcp-echo" and m.group(2) == "tcp", line
        port = int(m.group(4))
        workers = worker_pids(proc)
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
                     for _ in range(16)]
            for i, s in enumerate(socks):
                s.sendall(b"%d\n" % i)
                assert s.recv(64) == b"%d\n" % i
            held = {c.pid for c in psutil.net_connections("tcp")
                    if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
                    and c.pid in workers}
            assert held == workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


UDP_DATAGRAMS = 40        # from as many source ports: the kernel spreads them by 4-tuple


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_udp_echo_workers_both_receive_datagrams(loop: str) -> None:
    """``serve udp-echo --workers 2``: each worker has a bound UDP socket of the
    port's SO_REUSEPORT group; datagrams from many source ports reach both
    (on fastsock's loop each worker logs its own counters when it stops)."""
    cmd = [sys.executable, "-m", "fastsock", "serve", "udp-echo", "--workers", "2", "--port", "0",
           "--loop", loop]
    with supervisor(cmd) as (proc, line):
        m = CLI_READY.match(line)
        assert m and m.group(1) == "udp-echo" and m.group(2) == "udp", line
        port = int(m.group(4))
        workers = worker_pids(proc)
        assert len(workers) == 2
        bound = {c.pid for c in psutil.net_connections("udp")
                 if c.laddr and c.laddr.port == port and c.pid in workers}
        assert bound == workers                   # one socket of the group in each worker
        for i in range(UDP_DATAGRAMS):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # a new source port
                s.settimeout(5)
                s.sendto(b"datagram %d" % i, ("127.0.0.1", port))
                assert s.recvfrom(64)[0] == b"datagram %d" % i
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
    assert "Traceback" not in log, log
    if loop == "fastsock":
        counts = [int(n) for n in re.findall(r"udp-echo stopped: datagrams_in=(\d+)", log)]
        assert len(counts) == 2 and sum(counts) == UDP_DATAGRAMS and min(counts) > 0, counts


@pytest.mark.timeout(60)
def test_workers_0_means_one_per_core() -> None:
    cores = len(os.sched_getaffinity(0))
    cmd = [sys.executable, "-m", "fastsock", "serve", "echo", "--workers", "0", "--port", "0"]
    with supervisor(cmd) as (proc, line):
        assert CLI_READY.match(line), line
        assert len(worker_pids(proc)) == cores
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_bad_workers_values_are_usage_errors() -> None:
    for value, message in (("-1", "workers must be >= 0"), ("two", "workers must be a number")):
        run = subprocess.run([sys.executable, "-m", "fastsock", "serve", "echo", "--workers", value],
                             cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=30)
        assert run.returncode == 2 and message in run.stderr, run.stderr


@pytest.mark.timeout(60)
def test_workers_that_never_start_make_the_supervisor_give_up(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("no worker can start")
    run = subprocess.run([sys.executable, str(APP), "2"], cwd=ROOT,
                         env=dict(_env(), WORKERS_APP_BROKEN_IF=str(broken)),
                         capture_output=True, text=True, timeout=40)
    assert run.returncode == 1 and run.stdout == ""          # never announced ready
    assert re.search(r"exit status 3; 5 attempts failed before any worker accepted: giving up",
                     run.stderr), run.stderr[-2000:]
    assert "restarting in 0.10s" in run.stderr and "restarting in 0.80s" in run.stderr
