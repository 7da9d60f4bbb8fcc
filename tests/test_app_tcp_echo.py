"""``python -m fastsock serve tcp-echo`` in a subprocess, over real sockets, on
each loop; and EchoProtocol's back-pressure with a fake transport."""
from __future__ import annotations

import importlib.util
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from fastsock.apps.tcp_echo import EchoProtocol

PYTHON = sys.executable
READY = re.compile(r"^fastsock (\S+) listening on tcp://(\[[^\]]+\]|[^:]+):(\d+)$")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_TIMEOUT = 60.0  # generous: the machine is shared and may be loaded
IO_TIMEOUT = 30.0


LOOPS = [
    "fastsock",
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(
        importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")),
]


class Server:
    """A ``serve`` subprocess; waits for its ready line."""

    def __init__(self, *args: str, preexec_fn: Any = None) -> None:
        # the checkout's package, even when not installed and pytest runs elsewhere
        path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "fastsock", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn,
        )
        self.line = self._read_line(STARTUP_TIMEOUT)
        match = READY.match(self.line)
        if match is None:
            self.kill()
            raise AssertionError(f"no ready line; got {self.line!r}; stderr: {self.stderr_text!r}")
        self.app, host, port = match.groups()
        self.host = host.strip("[]")
        self.port = int(port)

    def _read_line(self, timeout: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                self.kill()
                raise AssertionError(f"server printed nothing in {timeout}s: {self.stderr_text!r}")
        finally:
            sel.close()
        return self.proc.stdout.readline().decode().rstrip("\n")

    @property
    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def connect(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        sock.connect((self.host, self.port))
        return sock

    def stop(self, sig: int) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server ignored signal {sig}") from None
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(IO_TIMEOUT)


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(*args: str, preexec_fn: Any = None) -> Server:
        server = Server(*args, preexec_fn=preexec_fn)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(65536, n - got))
        if not chunk:
            raise AssertionError(f"EOF after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket, limit: int) -> bytes:
    chunks, got = [], 0
    while got <= limit:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        got += len(chunk)
    raise AssertionError(f"more than {limit} bytes before EOF")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_echo_and_clean_stop(servers, loop, sig):
    server = servers("tcp-echo", "--port", "0", "--loop", loop)
    assert server.app == "tcp-echo" and server.host == "127.0.0.1" and server.port > 0

    with server.connect() as sock:
        for size in (1, 64, 4096, 1 << 20):
            payload = os.urandom(size)
            # in steps, so that neither side's buffers can fill up and stall us
            for at in range(0, size, 65536):
                sock.sendall(payload[at:at + 65536])
                assert recv_exactly(sock, min(65536, size - at)) == payload[at:at + 65536]

    # many connections at once, interleaved
    socks = [server.connect() for _ in range(20)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"hello %d" % i)
        for i, sock in enumerate(socks):
            expected = b"hello %d" % i
            assert recv_exactly(sock, len(expected)) == expected
    finally:
        for sock in socks:
            sock.close()

    # an idle client is still connected when the signal arrives
    idle = server.connect()
    idle.sendall(b"x")
    assert recv_exactly(idle, 1) == b"x"
    code, out, err = server.stop(sig)
    assert code == 0, err
    assert out == ""  # the ready line was the only stdout line
    assert "Traceback" not in err
    # the limits summary at start, exactly once
    assert err.count("server connections (") == 1, err
    assert idle.recv(10) == b""  # the server closed it on the way out
    idle.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_half_close_receives_the_whole_echo(servers, loop):
    server = servers("tcp-echo", "--port", "0", "--loop", loop, "--quiet")
    payload = os.urandom(300_000)
    with server.connect() as sock:
        def send_then_half_close() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        # send from a thread while this one reads: the echo can be larger
        # than what the socket buffers between us hold
        sender = threading.Thread(target=send_then_half_close, daemon=True)
        sender.start()
        assert recv_until_eof(sock, len(payload)) == payload
        sender.join(IO_TIMEOUT)
        assert not sender.is_alive()
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert "limits:" not in err  # --quiet leaves out the INFO summary


@pytest.mark.parametrize("loop", LOOPS)
def test_ipv6_host_in_brackets(servers, loop):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    server = servers("tcp-echo", "--host", "::1", "--port", "0", "--loop", loop, "--quiet")
    assert server.line.startswith("fastsock tcp-echo listening on tcp://[::1]:")
    with server.connect() as sock:
        sock.sendall(b"six")
        assert recv_exactly(sock, 3) == b"six"
    assert server.stop(signal.SIGINT)[0] == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_stop_waits_for_a_slow_reader_then_cuts_it(servers, loop):
    """A client that stops reading: the server pauses reading from it (bounded
    memory) and on SIGTERM waits at most --shutdown-timeout before cutting it."""
    server = servers("tcp-echo", "--port", "0", "--loop", loop, "--quiet",
                     "--shutdown-timeout", "0.5")
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    sent, chunk = 0, b"z" * 65536
    deadline = time.monotonic() + IO_TIMEOUT
    # Fill both directions until the server stops reading from us.
    stalled_since = None
    while time.monotonic() < deadline:
        try:
            sent += sock.send(chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    assert stalled_since is not None, "the server never pushed back"
    assert sent < 64 << 20, "the server kept buffering without bound"
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    sock.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_warns_once_before_running_out_of_descriptors(servers, loop):
    """With a soft RLIMIT_NOFILE of 64 the server warns once at 80% (51)."""
    soft_limit = 64

    def low_limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, hard))

    server = servers("tcp-echo", "--port", "0", "--loop", loop, preexec_fn=low_limit)
    socks = []
    try:
        # 50 clients plus the server's own ~8 descriptors: past 51, below 64
        for i in range(50):
            sock = server.connect()
            socks.append(sock)
            sock.sendall(b"%d;" % i)  # the echo proves the server holds it
            assert recv_exactly(sock, len(b"%d;" % i)) == b"%d;" % i
    finally:
        for sock in socks:
            sock.close()
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "has crossed 80%" in line]
    assert len(warnings) == 1, err
    assert f"of the soft RLIMIT_NOFILE {soft_limit};" in warnings[0]
    assert "raise it with:" in warnings[0]
    assert "EMFILE" not in err.replace("fail with EMFILE", "")  # never actually ran out


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def test_echo_protocol_with_a_fake_transport():
    transport = FakeTransport()
    proto = EchoProtocol()
    proto.connection_made(transport)
    proto.data_received(b"abc")
    proto.data_received(b"")
    assert transport.written == [b"abc", b""]
    proto.pause_writing()
    assert transport.reading is False
    proto.resume_writing()
    assert transport.reading is True
    assert proto.eof_received() is False  # close once the echo is flushed
    proto.connection_lost(None)
    assert proto.transport is None
