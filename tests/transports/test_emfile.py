"""Descriptor exhaustion: a server limited to 64 descriptors facing 200 clients.

The server runs in a subprocess with RLIMIT_NOFILE lowered. While it is out
of descriptors it must not spin (its CPU time stays low), the connections it
already has must keep working, and queued clients must be served as soon as
descriptors come free.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

psutil = pytest.importorskip("psutil")

LIMIT = 64
CLIENTS = 200

SERVER = textwrap.dedent(f"""
    import json, logging, resource, signal, sys
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, hard))
    from fastsock.reactor import Reactor
    from fastsock.transports.tcp import create_tcp_server

    class Echo:
        def connection_made(self, t): self.t = t
        def data_received(self, d): self.t.write(d)
        def eof_received(self): return False
        def connection_lost(self, exc): pass

    r = Reactor()
    server = create_tcp_server(r, Echo, "127.0.0.1", 0, backlog=1024)
    r.install_shutdown_signals(2.0)
    print("PORT", server.addresses[0][1], flush=True)
    r.run_forever()
    print("STATS", json.dumps(server.stats), flush=True)
""")


def _echoed(clients: list[socket.socket], timeout: float, settle: float = 0.5) -> set[socket.socket]:
    """The clients whose one-byte message came back within ``timeout``; returns
    early once some came back and no more did for ``settle`` seconds."""
    got: set[socket.socket] = set()
    poller = select.poll()
    by_fd = {c.fileno(): c for c in clients}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while len(got) < len(clients):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        events = poller.poll(min(left, settle) * 1000 if got else left * 1000)
        if not events and got:
            break
        for fd, _ in events:
            c = by_fd[fd]
            if c.recv(16) == b"x":
                got.add(c)
            poller.unregister(fd)
    return got


def test_out_of_descriptors_no_busy_loop_and_recovery():
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    clients: list[socket.socket] = []
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT"), (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(line.split()[1])
        for _ in range(CLIENTS):  # the kernel completes these handshakes into the accept queue
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for c in clients:
            c.sendall(b"x")

        served = _echoed(clients, timeout=5)
        # some were accepted and echo; the rest wait in the queue
        assert 0 < len(served) < LIMIT, len(served)
        waiting = [c for c in clients if c not in served]

        # saturated: the server must sleep, not spin on EMFILE
        p = psutil.Process(proc.pid)
        t0 = sum(p.cpu_times()[:2])
        time.sleep(1.0)
        cpu = sum(p.cpu_times()[:2]) - t0
        assert cpu < 0.3, f"server burned {cpu:.2f} CPU-s in 1 s while out of descriptors"

        # existing connections keep working
        probe = next(iter(served))
        probe.sendall(b"x")
        assert _echoed([probe], timeout=5) == {probe}

        # free descriptors batch by batch: queued clients get served
        rounds = 0
        while waiting and rounds < 20:
            rounds += 1
            for c in served:
                c.close()
            served = _echoed(waiting, timeout=5)
            assert served, f"no queued client was served after freeing descriptors ({len(waiting)} waiting)"
            waiting = [c for c in waiting if c not in served]
        assert not waiting

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        # logged once, counted every time
        assert err.count("accept() failed") == 1, err
        # the limits watch warned before the server ran out (it re-arms after
        # use falls back, and this test drains and refills it several times)
        assert err.index("has crossed 80% of the soft RLIMIT_NOFILE") < err.index("accept() failed"), err
        stats = json.loads(out.split("STATS", 1)[1])
        assert stats["accepted"] == CLIENTS
        assert stats["fd_exhausted"] >= 1
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
