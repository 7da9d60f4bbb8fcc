"""``serve chat|broadcast --pubsub redis://...``: rooms and broadcasts across
processes (two servers on different ports, and two workers on one port)."""
from __future__ import annotations

import contextlib
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

pytest.importorskip("redis")
import redis  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^fastsock (\S+) listening on ws://(\S+):(\d+)$")
RECV = 5.0


@contextlib.contextmanager
def serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", "serve", *args, "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline().strip() if sel.select(30) else ""
        sel.close()
        m = READY.match(line)
        assert m, f"no ready line: {line!r}"
        yield proc, int(m.group(3))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def wait_subscribed(port: int, channel: str, count: int) -> None:
    r = redis.Redis(port=port)
    deadline = time.monotonic() + RECV
    while int(dict(r.pubsub_numsub(channel))[channel.encode()]) != count:
        assert time.monotonic() < deadline, f"{channel} never had {count} subscribers"
        time.sleep(0.02)


def wait_presence(port: int, topic: str, count: int) -> None:
    """Until the processes' presence counts for ``topic`` in Redis add up to ``count``."""
    r = redis.Redis(port=port)
    deadline = time.monotonic() + RECV
    while sum(int(v) for v in r.hvals(f"fastsock:p:{topic}")) != count:
        assert time.monotonic() < deadline, f"presence of {topic} never reached {count}"
        time.sleep(0.02)


def recv_until(ws: ClientConnection, wanted: str) -> list[str]:
    """Messages up to and including ``wanted`` (joins may come first)."""
    got: list[str] = []
    while wanted not in got:
        got.append(ws.recv(timeout=RECV))
    return got


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop_b", ["fastsock", "uvloop"])
def test_chat_rooms_across_two_processes(redis_process: Any, loop_b: str) -> None:
    """Process A on fastsock's loop; B on fastsock's or on uvloop (the hub runs
    on whichever loop the server runs on)."""
    url = redis_process.url
    with serve("chat", "--pubsub", url) as (_, port_a), \
            serve("chat", "--pubsub", url, "--loop", loop_b) as (_, port_b), \
            contextlib.ExitStack() as stack:
        ann = stack.enter_context(connect(f"ws://127.0.0.1:{port_a}/chat/kitchen"))
        first = ann.recv(timeout=RECV)
        m = re.fullmatch(r"\* (guest-1-[0-9a-f]{4}) joined \(1 here\)", first)
        assert m, first
        wait_subscribed(redis_process.port, "fastsock:t:chat:kitchen", 1)
        wait_presence(redis_process.port, "chat:kitchen", 1)
        bob = stack.enter_context(connect(f"ws://127.0.0.1:{port_b}/chat/kitchen"))
        joined = bob.recv(timeout=RECV)
        assert re.fullmatch(r"\* guest-1-[0-9a-f]{4} joined \(2 here\)", joined), joined
        assert ann.recv(timeout=RECV) == joined          # across processes
        other = stack.enter_context(connect(f"ws://127.0.0.1:{port_b}/chat"))   # the lobby
        assert re.match(r"\* guest-2-[0-9a-f]{4} joined \(1 here\)", other.recv(timeout=RECV))
        wait_subscribed(redis_process.port, "fastsock:t:chat:kitchen", 2)
        bob_name = joined.split()[1]
        bob.send("hello kitchen")
        assert bob.recv(timeout=RECV) == f"{bob_name}: hello kitchen"
        assert ann.recv(timeout=RECV) == f"{bob_name}: hello kitchen"
        ann.send("hi bob")
        assert ann.recv(timeout=RECV) == f"{m.group(1)}: hi bob"
        assert recv_until(bob, f"{m.group(1)}: hi bob")[-1] == f"{m.group(1)}: hi bob"
        with pytest.raises(TimeoutError):                 # rooms are separate
            other.recv(timeout=0.5)
        bob.close()
        assert ann.recv(timeout=RECV) == f"* {bob_name} left"
        # a path that is no room is refused before the upgrade
        from websockets.exceptions import InvalidStatus
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{port_a}/elsewhere").close()
        assert info.value.response.status_code == 404


@pytest.mark.needs_redis
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_broadcast_with_two_workers_on_one_port_reaches_every_client(redis_process: Any) -> None:
    """Connections spread over 2 worker processes; each message reaches all of them."""
    import psutil

    with serve("broadcast", "--workers", "2", "--pubsub", redis_process.url) as (proc, port), \
            contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/")) for _ in range(16)]
        workers = {c.pid for c in psutil.Process(proc.pid).children()}
        held = {c.pid for c in psutil.net_connections("tcp")
                if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED}
        assert held == workers and len(workers) == 2    # both workers hold clients
        wait_subscribed(redis_process.port, "fastsock:t:broadcast", 2)
        for i, sender in enumerate(clients[:4]):
            sender.send(f"from {i}")
            for ws in clients:
                assert ws.recv(timeout=RECV) == f"from {i}"
        clients[5].send(b"\x00binary")
        for ws in clients:
            assert ws.recv(timeout=RECV) == b"\x00binary"


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_bad_pubsub_url_is_a_usage_error(workers: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "fastsock", "serve", "chat", "--pubsub",
                           "kafka://x", "--port", "0", *workers], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("fastsock: error: --pubsub: unknown pub/sub URL")
    assert "worker" not in proc.stderr          # refused before any worker started


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["fastsock", "asyncio", "uvloop"])
def test_a_stopped_app_closes_its_hub_cleanly(redis_process: Any, loop: str) -> None:
    """SIGTERM: the hub's tasks end and its connections close before the loop
    does (no 'Task was destroyed', no traceback), and the process takes its
    presence and liveness keys out of Redis."""
    r = redis.Redis(port=redis_process.port)
    with serve("chat", "--pubsub", redis_process.url, "--loop", loop) as (proc, port):
        with connect(f"ws://127.0.0.1:{port}/chat/room") as ws:
            assert ws.recv(timeout=RECV).endswith("joined (1 here)")
            deadline = time.monotonic() + RECV
            while not (r.keys("fastsock:alive:*") and r.hvals("fastsock:p:chat:room")):
                assert time.monotonic() < deadline, "presence never written"
                time.sleep(0.02)
            proc.send_signal(15)
            assert proc.wait(20) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
    assert "Traceback" not in log and "Task was destroyed" not in log, log
    assert r.keys("fastsock:alive:*") == [] and r.hvals("fastsock:p:chat:room") == [], log


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
def test_the_hubs_counters_and_pubsub_lag_are_in_the_metrics(redis_process: Any) -> None:
    """Process A publishes N messages; B's /metrics (parsed with prometheus_client)
    counts N received and delivered, and its lag histogram has N observations."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    count = 5
    url = redis_process.url
    with serve("broadcast", "--pubsub", url) as (_, port_a), \
            serve("broadcast", "--pubsub", url, "--metrics", "/metrics") as (_, port_b), \
            connect(f"ws://127.0.0.1:{port_a}/") as sender, \
            connect(f"ws://127.0.0.1:{port_b}/") as listener:
        wait_subscribed(redis_process.port, "fastsock:t:broadcast", 2)
        for i in range(count):
            sender.send(f"message {i}")
        assert [listener.recv(timeout=RECV) for _ in range(count)] == [f"message {i}" for i in range(count)]
        with urllib.request.urlopen(f"http://127.0.0.1:{port_b}/metrics", timeout=RECV) as answer:
            text = answer.read().decode()
    samples = {s.name: s for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["fastsock_pubsub_received_total"].value == count
    assert samples["fastsock_pubsub_delivered_total"].value == count
    assert samples["fastsock_pubsub_published_total"].value == 0     # B published nothing
    assert samples["fastsock_pubsub_connected"].value == 1
    assert samples["fastsock_pubsub_lag_seconds_count"].value == count
    # one host, one clock: each message took well under a second from A to B
    assert 0 <= samples["fastsock_pubsub_lag_seconds_sum"].value < count * 1.0
