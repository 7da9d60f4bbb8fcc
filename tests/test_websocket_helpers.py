"""Helpers for the WebSocket tests (this module holds no tests itself).

- :class:`ServerThread`: a fastsock WebSocket server on a chosen loop
  ("fastsock", "asyncio" or "uvloop") running in a background thread, so a
  blocking peer (the ``websockets`` sync client, a raw socket) can drive it
  from the test thread.
- :class:`FakeTransport` / :class:`FakeLoop`: what the sans-I/O core talks
  to, for tests that need no socket at all.
- :func:`raw_upgrade` / :func:`masked`: raw-socket handshake and client frames.
"""
from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time
from typing import Any, Callable, Optional

from fastsock.frame import build_frame

LOOPS = ["fastsock", "asyncio", "uvloop"]


class ServerThread:
    """``with ServerThread(handler, loop=...) as srv:`` → ``srv.port``, ``srv.state``."""

    def __init__(self, handler: Any, loop: str = "fastsock", host: str = "127.0.0.1",
                 **kwargs: Any) -> None:
        self.handler = handler
        self.kind = loop
        self.host = host
        self.kwargs = kwargs
        self.port = 0
        self.state: Any = None
        self.loop: Any = None
        self.error: Optional[BaseException] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("server thread did not start")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop thread and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn(*args))
            except BaseException as exc:  # handed back to the test thread
                box.append(exc)
            done.set()

        self.loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise TimeoutError("loop thread did not answer")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _run(self) -> None:
        try:
            if self.kind == "fastsock":
                self._run_reactor()
            else:
                self._run_aio()
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def _run_reactor(self) -> None:
        from fastsock.reactor import Reactor
        from fastsock.server import serve

        reactor = Reactor()
        self.loop = reactor
        server = serve(self.handler, self.host, 0, reactor=reactor, **self.kwargs)
        self.state = server.state
        self.port = server.port
        self._ready.set()
        try:
            reactor.run_forever()
        finally:
            server.tcp_server.close()
            for transport in list(reactor.transports):
                transport.abort()
            reactor.run_until(timeout=0.05)
            reactor.close()

    def _run_aio(self) -> None:
        from fastsock.adapters import aio

        loop = aio.new_loop(self.kind)
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(aio.serve(self.handler, self.host, 0, **self.kwargs))
            self.state = server.state
            self.port = server.port
            self._ready.set()
            loop.run_forever()
            server.server.close()
            server.state.abort_all()
            loop.run_until_complete(asyncio.sleep(0.05))
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"


class FakeTransport:
    """Records what the core writes; asyncio transport shape."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted = False
        self.eof = False
        self.reading = True
        self.protocol: Any = None
        self.buffer_size = 0
        # the FakeLoop the protocol runs on: take() ends its turn first, since
        # replies to received bytes are written at the end of the loop turn
        self.loop: Any = None

    def write(self, data: bytes) -> None:
        assert not self.eof, "write after write_eof"
        self.data += data

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.write(c)

    def take(self) -> bytes:
        if self.loop is not None:
            self.loop.run_soon()
        out = bytes(self.data)
        self.data.clear()
        return out

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True
        if self.protocol is not None:
            self.protocol.connection_lost(None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return self.buffer_size

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        self.limits = (high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


class FakeLoop:
    """A manual clock with ``call_later``/``call_soon``; :meth:`advance` fires timers."""

    class _Timer:
        def __init__(self, when: float, cb: Callable[..., Any], args: tuple) -> None:
            self.when, self.cb, self.args, self.cancelled = when, cb, args, False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeLoop._Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, cb: Callable[..., Any], *args: Any) -> "_Timer":
        t = self._Timer(self.now + delay, cb, args)
        self.timers.append(t)
        return t

    def call_soon(self, cb: Callable[..., Any], *args: Any) -> "_Timer":
        return self.call_later(0, cb, *args)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        for _ in range(10000):
            due = [t for t in self.timers if not t.cancelled and t.when <= end]
            if not due:
                break
            t = min(due, key=lambda t: t.when)
            self.timers.remove(t)
            self.now = max(self.now, t.when)
            t.cb(*t.args)
        self.now = end

    def run_soon(self) -> None:
        self.advance(0)

    def create_future(self) -> Any:
        import concurrent.futures
        return concurrent.futures.Future()


def masked(opcode: int, payload: bytes = b"", **kw: Any) -> bytes:
    """A client (masked) frame."""
    return build_frame(opcode, payload, mask=True, **kw)


def upgrade_request(path: str = "/", host: str = "localhost", extra: str = "",
                    key: Optional[str] = None) -> bytes:
    key = key or base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def recv_head(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """Read an HTTP response head; returns (head, bytes after it)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def raw_upgrade(port: int, path: str = "/", host: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    """Open a raw socket and complete the handshake; returns (sock, leftover bytes)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.settimeout(5)
    sock.connect((host, port))
    sock.sendall(upgrade_request(path))
    head, rest = recv_head(sock)
    assert status_of(head) == 101, head
    return sock, rest


def read_frames(sock: socket.socket, leftover: bytes = b"", *, timeout: float = 5.0,
                until_close: bool = True, count: Optional[int] = None) -> list[tuple[int, bytes]]:
    """Read server frames as (opcode, payload) until a close frame (or ``count``
    frames, or EOF, or ``timeout``)."""
    from fastsock.frame import FrameParser

    parser = FrameParser(require_mask=False, validate_utf8=False)
    frames: list[tuple[int, bytes]] = [(f.opcode, f.payload) for f in parser.feed(leftover)]
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout

    def done() -> bool:
        if count is not None and len(frames) >= count:
            return True
        return until_close and any(op == 8 for op, _ in frames)

    while not done() and time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        frames.extend((f.opcode, f.payload) for f in parser.feed(chunk))
    return frames


def eof_after(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True if the server closes the TCP connection within ``timeout``."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False
