"""Shared fixtures: a fresh reactor per test, on each backend where asked."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from fastsock.reactor import Reactor


def _make(backend: str | None) -> Reactor:
    reactor = Reactor(backend=backend)
    # Every error a callback raises is kept for assertions (and still logged).
    errors: list[dict[str, Any]] = []

    def handler(loop: Reactor, context: dict[str, Any]) -> None:
        errors.append(context)
        loop.default_exception_handler(context)

    reactor.set_exception_handler(handler)
    reactor.errors = errors  # type: ignore[attr-defined]
    return reactor


def _finish(reactor: Reactor) -> None:
    for transport in list(reactor.transports):
        transport.abort()
    if not reactor.is_closed():
        reactor.run_until(timeout=0.01)  # deliver connection_lost, close sockets
        reactor.close()


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    """A reactor on the default backend (epoll on Linux), closed after the test."""
    r = _make(None)
    yield r
    _finish(r)


@pytest.fixture(params=["epoll", "selectors"])
def any_reactor(request: pytest.FixtureRequest) -> Iterator[Reactor]:
    """The same test on each backend."""
    try:
        r = _make(request.param)
    except ValueError as exc:
        pytest.skip(str(exc))
    yield r
    _finish(r)


# ---------------------------------------------------------------------------
# asyncio event loops: the same test on asyncio's loop, uvloop and fastsock's
# (tests/reactor/test_loop_real_libraries.py, tests/transports/test_tls_loop.py)

import ssl  # noqa: E402

from loop_runner import LOOP_KINDS, LoopRunner  # noqa: E402  (a module of its own: importable by name)


@pytest.fixture(params=LOOP_KINDS)
def aio(request: pytest.FixtureRequest) -> Iterator[LoopRunner]:
    """A LoopRunner on asyncio's loop, uvloop and fastsock's loop in turn."""
    runner = LoopRunner(request.param)
    try:
        yield runner
    finally:
        runner.close()


# ----------------------------------------------------------- TLS (trustme)

TLS_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
TLS_ALT_HOSTNAME = "alt.fastsock.test"   # a second identity, for SNI


class TLSFixture:
    """A test CA, a server identity per name, and contexts built from them."""

    def __init__(self) -> None:
        import trustme
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()   # one no client trusts
        self.server_cert = self.ca.issue_cert(*TLS_HOSTNAMES)
        self.alt_cert = self.ca.issue_cert(TLS_ALT_HOSTNAME)
        self.untrusted_cert = self.other_ca.issue_cert(*TLS_HOSTNAMES)

    def server_context(self, cert: Any = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (cert or self.server_cert).configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        # create_default_context: CERT_REQUIRED and check_hostname, as users get
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture(scope="session")
def tls() -> TLSFixture:
    return TLSFixture()   # trustme is in the test extra: no skip without it


# ---------------------------------------------------------------------------
# A plain-TCP redis-server per test that the test may stop and start again on
# the same port (tests/pubsub/). Started on a free port, stopped by its PID.
# tests/reactor/conftest.py keeps its session-wide TLS one.

import shutil  # noqa: E402
import socket as _socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REDIS_UP_TIMEOUT = 10.0     # seconds for redis-server to answer PING
REDIS_DOWN_TIMEOUT = 5.0    # seconds between SIGTERM and SIGKILL


def _redis_pings(port: int) -> bool:
    try:
        with _socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """``start()``/``stop()`` a redis-server on ``port`` (kept across restarts)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not self.port:
            with _socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        with open(self.workdir / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
                 "--loglevel", "warning"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + REDIS_UP_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            if _redis_pings(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start: {(self.workdir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()          # SIGTERM to this PID only
            try:
                proc.wait(REDIS_DOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary: scripts/ensure-system-deps.sh installs Debian's "
                    "redis-server, which needs root and apt-get")
    server = RedisProcess(binary, tmp_path)
    last: Exception | None = None
    for _ in range(3):          # the free port can be taken between probe and bind
        try:
            server.start()
            break
        except RuntimeError as exc:
            server.port = 0
            last = exc
    else:
        raise RuntimeError("redis-server failed 3 times") from last
    try:
        yield server
    finally:
        server.stop()
