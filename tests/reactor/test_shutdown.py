"""Graceful shutdown: SIGTERM to a serving process drains, closes and exits 0."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from fastsock.transports import Protocol
from fastsock.transports.tcp import create_tcp_connection, create_tcp_server

PAYLOAD = 8 * 1024 * 1024

SERVER = textwrap.dedent(f"""
    import sys
    from fastsock.reactor import Reactor
    from fastsock.transports.tcp import create_tcp_server

    class Sender:
        # answers "go" with {PAYLOAD} bytes, more than the kernel buffers hold
        def connection_made(self, t): self.t = t
        def data_received(self, d):
            if d == b"go":
                self.t.write(b"s" * {PAYLOAD})
                print("SENDING", self.t.get_write_buffer_size() > 0, flush=True)
        def connection_lost(self, exc): print("LOST", exc, self.t.bytes_sent, flush=True)

    r = Reactor()
    r.add_shutdown_hook(lambda deadline: print("HOOK", flush=True))
    server = create_tcp_server(r, Sender, "127.0.0.1", 0)
    r.install_shutdown_signals(float(sys.argv[1]))
    print("PORT", server.addresses[0][1], flush=True)
    r.run_forever()
    r.close()
    print("EXIT", flush=True)
""")


def _start(timeout: float) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(timeout)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    assert line.startswith("PORT"), (line, proc.stderr.read())
    return proc, int(line.split()[1])


def _recv_all(sock: socket.socket, limit: float) -> tuple[int, BaseException | None]:
    total = 0
    sock.settimeout(limit)
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return total, None
            total += len(chunk)
    except OSError as exc:
        return total, exc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_pending_writes_then_exits_zero(sig):
    proc, port = _start(timeout=10.0)
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(b"go")
        assert proc.stdout.readline().strip() == "SENDING True"  # data is waiting in user space
        proc.send_signal(sig)
        assert proc.stdout.readline().strip() == "HOOK"
        # the listening socket is gone: no new clients
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the server kept accepting after the signal")
        total, err = _recv_all(client, limit=20)
        client.close()
        assert (total, err) == (PAYLOAD, None)  # everything flushed, then a clean FIN
        out, errout = proc.communicate(timeout=20)
        assert proc.returncode == 0, errout
        assert out.split() == ["LOST", "None", str(PAYLOAD), "EXIT"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_deadline_aborts_what_cannot_drain():
    proc, port = _start(timeout=0.5)
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(b"go")
        assert proc.stdout.readline().strip() == "SENDING True"
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, errout = proc.communicate(timeout=20)   # the client never reads
        assert proc.returncode == 0, errout
        assert time.monotonic() - start < 10
        hook, lost, exc, sent, end = out.split()
        assert (hook, lost, exc, end) == ("HOOK", "LOST", "None", "EXIT")
        assert int(sent) < PAYLOAD  # aborted at the deadline, not drained
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_second_signal_stops_at_once():
    proc, port = _start(timeout=60.0)
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(b"go")
        assert proc.stdout.readline().strip() == "SENDING True"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "HOOK"
        proc.send_signal(signal.SIGTERM)
        out, errout = proc.communicate(timeout=20)   # far sooner than the 60 s deadline
        assert proc.returncode == 0, errout
        assert "EXIT" in out
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_shutdown_in_process_flushes_and_closes_every_transport(reactor):
    class Quiet(Protocol):
        def connection_made(self, transport):
            self.transport = transport

    server = create_tcp_server(reactor, Quiet, "127.0.0.1", 0)
    fut = create_tcp_connection(reactor, Quiet, *server.addresses[0])
    transport, _ = reactor.run_until_complete(fut, timeout=10)
    assert reactor.run_until(lambda: len(reactor.transports) == 2, timeout=10)
    reactor.shutdown(timeout=5)   # not running: runs the loop until drained
    assert not reactor.transports
    assert not server.is_serving()
    assert transport.is_closing()


class Greeter(Protocol):
    """Greets in connection_made and closes: a server that answers at once."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        transport.write(b"hello\n")
        transport.close()


def test_shutdown_lets_a_connection_accepted_just_before_it_be_answered(reactor) -> None:
    """A connection accepted in the turn the shutdown starts (its connection_made
    still queued) is answered, then closed: an old worker in a rolling reload
    must not drop a client it has already accepted."""
    from fastsock.transports.stream import StreamTransport

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        conn, _ = listener.accept()
        conn.setblocking(False)
        StreamTransport(reactor, conn, Greeter())   # connection_made is now queued
        reactor.shutdown(2.0)                       # ...and the shutdown starts before it runs
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(64)
            assert chunk, f"closed before the greeting (got {data!r})"
            data += chunk
        assert data == b"hello\n"
        assert client.recv(64) == b""               # then a clean close
    finally:
        client.close()
        listener.close()
