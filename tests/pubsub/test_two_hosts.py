"""Two hosts: two network namespaces joined by a veth pair (10.77.x.1 and
10.77.x.2), ``serve chat --pubsub`` in each, redis-server in the first. A client
in the second namespace talks to both servers: a room spans the two "hosts".

Skips, with the reason, where the machine does not let this test create
network namespaces (no root, no ``ip``, or a container without CAP_SYS_ADMIN).
Everything this test creates is named with its PID and removed afterwards."""
from __future__ import annotations

import contextlib
import os
import random
import re
import selectors
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_PORT = 6379          # the namespaces are fresh: nothing else listens there
START_TIMEOUT = 30.0
READY = re.compile(r"^fastsock chat listening on ws://(\S+):(\d+)$")

pytestmark = [pytest.mark.needs_redis, pytest.mark.slow, pytest.mark.timeout(120)]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def two_hosts() -> Iterator[tuple[str, str, str, str]]:
    """Yields (namespace A, address A, namespace B, address B)."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (Debian's iproute2)")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"fsA{tag}", f"fsB{tag}"
    veth_a, veth_b = f"fsva{tag}", f"fsvb{tag}"
    subnet = random.randrange(1, 250)
    addr_a, addr_b = f"10.77.{subnet}.1", f"10.77.{subnet}.2"
    created: list[str] = []
    try:
        try:
            _ip("netns", "add", ns_a)
            created.append(ns_a)
            _ip("netns", "add", ns_b)
            created.append(ns_b)
            _ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        except (subprocess.CalledProcessError, PermissionError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"cannot create network namespaces and a veth pair here: "
                        f"{stderr.decode(errors='replace').strip() or exc}")
        _ip("link", "set", veth_a, "netns", ns_a)
        _ip("link", "set", veth_b, "netns", ns_b)
        for ns, dev, addr in ((ns_a, veth_a, addr_a), (ns_b, veth_b, addr_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield ns_a, addr_a, ns_b, addr_b
    finally:
        for ns in created:          # deleting a namespace deletes its end of the veth
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@contextlib.contextmanager
def in_ns(ns: str, argv: list[str], tmp: Path, name: str) -> Iterator[subprocess.Popen[str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with open(tmp / f"{name}.log", "w") as err:
        # `ip netns exec` execs the command: the PID is the server's
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def ready_port(proc: subprocess.Popen[str], tmp: Path, name: str) -> int:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    line = proc.stdout.readline().strip() if sel.select(START_TIMEOUT) else ""
    sel.close()
    m = READY.match(line)
    assert m, f"{name}: no ready line {line!r}: {(tmp / f'{name}.log').read_text()[-1500:]}"
    return int(m.group(2))


CLIENT = textwrap.dedent('''
    import sys, time
    from websockets.sync.client import connect
    url_a, url_b = sys.argv[1], sys.argv[2]
    with connect(url_a + "/chat/two-hosts") as on_a:
        assert on_a.recv(timeout=5).endswith("joined (1 here)")
        time.sleep(0.5)      # A writes its presence count one round trip after the join
        with connect(url_b + "/chat/two-hosts") as on_b:
            joined = on_b.recv(timeout=5)
            assert joined.endswith("joined (2 here)"), joined   # counted across the hosts
            assert on_a.recv(timeout=5) == joined    # B's announcement crossed to A
            name_b = joined.split()[1]
            on_b.send("hello from host B")
            assert on_b.recv(timeout=5) == name_b + ": hello from host B"
            assert on_a.recv(timeout=5) == name_b + ": hello from host B"
            on_a.send("and back from host A")
            got = on_a.recv(timeout=5)
            assert on_b.recv(timeout=5) == got
    print("ok")
''')


def test_a_room_spans_two_hosts_through_redis(tmp_path: Path) -> None:
    redis = shutil.which("redis-server")
    if redis is None:
        pytest.skip("no redis-server binary (scripts/ensure-system-deps.sh)")
    with two_hosts() as (ns_a, addr_a, ns_b, addr_b):
        with in_ns(ns_a, [redis, "--port", str(REDIS_PORT), "--bind", addr_a, "--save", "",
                          "--appendonly", "no", "--dir", str(tmp_path), "--protected-mode", "no"],
                   tmp_path, "redis"):
            deadline = time.monotonic() + START_TIMEOUT
            while subprocess.run(["ip", "netns", "exec", ns_b, "redis-cli", "-h", addr_a, "-p",
                                  str(REDIS_PORT), "ping"], capture_output=True, text=True,
                                 timeout=10).stdout.strip() != "PONG":
                assert time.monotonic() < deadline, (tmp_path / "redis.log").read_text()
                time.sleep(0.1)
            url = f"redis://{addr_a}:{REDIS_PORT}"       # host B reaches Redis over the veth
            serve = [sys.executable, "-m", "fastsock", "serve", "chat", "--port", "0",
                     "--pubsub", url]
            with in_ns(ns_a, [*serve, "--host", addr_a], tmp_path, "chat-a") as chat_a, \
                    in_ns(ns_b, [*serve, "--host", addr_b], tmp_path, "chat-b") as chat_b:
                port_a = ready_port(chat_a, tmp_path, "chat-a")
                port_b = ready_port(chat_b, tmp_path, "chat-b")
                client = tmp_path / "client.py"
                client.write_text(CLIENT)
                env = dict(os.environ, PYTHONPATH=str(ROOT))
                run = subprocess.run(["ip", "netns", "exec", ns_b, sys.executable, str(client),
                                      f"ws://{addr_a}:{port_a}", f"ws://{addr_b}:{port_b}"],
                                     capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
                assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
                # the client in B could not have reached A's server without the veth: prove
                # the namespaces are separate hosts (A's address is not local in B)
                local_b = subprocess.run(["ip", "-n", ns_b, "-o", "addr"], capture_output=True,
                                         text=True, timeout=10).stdout
                assert addr_a not in local_b and addr_b in local_b
