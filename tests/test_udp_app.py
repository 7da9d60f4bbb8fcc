"""``python -m fastsock serve udp-echo`` in a subprocess on each loop, the
example client against it, and the app's EchoProtocol on its own."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
from typing import Any, Iterator

import pytest

from fastsock.apps.udp_echo import EchoProtocol

PYTHON = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY = re.compile(r"^fastsock udp-echo listening on udp://(\[[^\]]+\]|[^:]+):(\d+)$")
STARTUP_TIMEOUT = 60.0  # generous: the machine is shared and may be loaded
IO_TIMEOUT = 30.0

LOOPS = [
    "fastsock",
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(
        importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")),
]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)


class Server:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([PYTHON, "-m", "fastsock", "serve", "udp-echo", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        try:
            ready = sel.select(STARTUP_TIMEOUT)
        finally:
            sel.close()
        line = self.proc.stdout.readline().decode().rstrip("\n") if ready else ""  # type: ignore[union-attr]
        match = READY.match(line)
        if match is None:
            self.kill()
            raise AssertionError(f"no ready line; got {line!r}; stderr: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
        self.host = match.group(1).strip("[]")
        self.port = int(match.group(2))

    def stop(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server ignored signal {sig}") from None
        return self.proc.returncode, err.decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(IO_TIMEOUT)


@pytest.fixture
def servers() -> Iterator[Any]:
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.mark.parametrize("loop", LOOPS)
def test_echo_example_client_and_clean_stop(servers: Any, loop: str) -> None:
    server = servers("--port", "0", "--loop", loop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(IO_TIMEOUT)
        # asyncio before 3.12 (and uvloop) silently drop empty datagrams on send
        empty = (b"",) if loop == "fastsock" or sys.version_info >= (3, 12) and loop == "asyncio" else ()
        for payload in (*empty, b"x", os.urandom(1200), os.urandom(65507)):
            sock.sendto(payload, (server.host, server.port))
            data, addr = sock.recvfrom(65536)
            assert data == payload
            assert addr == (server.host, server.port)
    client = subprocess.run(
        [PYTHON, os.path.join(ROOT, "examples", "udp_echo_client.py"), "--host", server.host,
         "--port", str(server.port), "--count", "300", "--inflight", "4", "--timeout", "5",
         "--json"], capture_output=True, text=True, timeout=120, env=_env())
    assert client.returncode == 0, client.stderr
    result = json.loads(client.stdout)
    # loopback with 4 in flight and 5 s to answer: nothing is lost
    assert result["sent"] == result["received"] == 300
    assert result["lost"] == result["errors"] == result["malformed"] == 0
    assert result["rtt_ms"]["max"] >= result["rtt_ms"]["p50"] > 0
    code, err = server.stop(signal.SIGINT)
    assert code == 0, err


def test_ipv6_and_options(servers: Any) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server = servers("--host", "::1", "--port", "0", "--batch", "8", "--rcvbuf", "65536",
                     "--reuse-port")
    assert server.host == "::1"
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(IO_TIMEOUT)
        sock.sendto(b"six", ("::1", server.port))
        assert sock.recv(10) == b"six"
    code, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert "SO_RCVBUF 131072," in err  # Linux doubles the request


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "positive integer"),
    (["--batch", "2000"], "1..1024"),
    (["--rcvbuf", "lots"], "positive integer"),
    (["--port", "70000"], "0..65535"),
])
def test_bad_options_exit_2(args: list[str], message: str) -> None:
    proc = subprocess.run([PYTHON, "-m", "fastsock", "serve", "udp-echo", *args],
                          capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 2
    assert message in proc.stderr


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((data, addr))


def test_echo_protocol_skips_while_paused() -> None:
    proto = EchoProtocol()
    transport = FakeTransport()
    proto.connection_made(transport)
    proto.datagram_received(b"a", ("127.0.0.1", 1))
    proto.pause_writing()
    proto.datagram_received(b"b", ("127.0.0.1", 1))
    proto.resume_writing()
    proto.datagram_received(b"c", ("127.0.0.1", 2))
    proto.error_received(ConnectionRefusedError())
    assert transport.sent == [(b"a", ("127.0.0.1", 1)), (b"c", ("127.0.0.1", 2))]
    assert proto.skipped == 1 and proto.errors == 1
    proto.connection_lost(None)
    assert proto.transport is None
