"""The TCP client connector: resolve, connect each address in turn, time out.

:func:`create_tcp_connection` is fastsock's callback-style connect (the
WebSocket client uses it): it returns a future for ``(transport, protocol)``
at once. asyncio's ``create_connection`` on fastsock's loop reaches the same
:class:`~fastsock.transports.stream.StreamTransport`.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable

from ..exceptions import ConnectTimeoutError
from .listener import _check_port
from .stream import StreamTransport, _set_nodelay

if TYPE_CHECKING:
    from ..reactor import Reactor

__all__ = ["create_tcp_connection"]

Future = asyncio.Future


class _Connector:
    """One non-blocking connect attempt over the resolved addresses, in order."""

    def __init__(self, reactor: Reactor, factory: Callable[[], Any], host: str, port: int,
                 timeout: float | None, nodelay: bool, future: Future[Any]) -> None:
        self._reactor = reactor
        self._factory = factory
        self._host = host
        self._port = port
        self._nodelay = nodelay
        self._future = future
        self._sock: socket.socket | None = None
        self._addrs: list[Any] = []
        self._errors: list[OSError] = []
        self._timer = reactor.call_later(timeout, self._timed_out, timeout) if timeout is not None else None
        future.add_done_callback(self._future_done)

    @property
    def _where(self) -> str:
        return f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"

    def start(self) -> None:
        try:
            infos = socket.getaddrinfo(self._host, self._port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                       0, socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
        except socket.gaierror:
            # a name: resolve it off-thread so the loop never blocks on DNS
            threading.Thread(target=self._resolve, name=f"fastsock-dns-{self._host}",
                             daemon=True).start()
            return
        self._resolved(infos)

    def _resolve(self) -> None:
        try:
            result: Any = socket.getaddrinfo(self._host, self._port, socket.AF_UNSPEC,
                                             socket.SOCK_STREAM)
        except socket.gaierror as exc:
            result = OSError(exc.errno, f"cannot resolve host {self._host!r}: {exc.strerror}")
        except OSError as exc:
            result = exc
        try:
            self._reactor.call_soon_threadsafe(self._resolved, result)
        except Exception:
            pass  # the reactor was closed meanwhile

    def _resolved(self, result: Any) -> None:
        if self._future.done():
            return
        if isinstance(result, BaseException):
            self._fail(result)
            return
        self._addrs = [(family, type_, proto, addr) for family, type_, proto, _c, addr in result]
        self._next()

    def _next(self) -> None:
        while self._addrs:
            family, type_, proto, addr = self._addrs.pop(0)
            try:
                sock = socket.socket(family, type_, proto)
            except OSError as exc:
                self._errors.append(exc)
                continue
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                self._sock = sock
                if err == 0:
                    self._connected()
                else:
                    self._reactor._add_writer_raw(sock.fileno(), self._writable, ())
                return
            sock.close()
            self._errors.append(OSError(err, f"cannot connect to {self._where}: {os.strerror(err).lower()}"))
        self._fail(self._combined_error())

    def _combined_error(self) -> OSError:
        errors = self._errors
        if not errors:
            return OSError(errno.EADDRNOTAVAIL, f"no address to connect to for {self._where}")
        if len(errors) == 1 or len({e.errno for e in errors}) == 1:
            return errors[0]
        return OSError(errors[0].errno, f"cannot connect to {self._where}: "
                       + "; ".join(str(e) for e in errors))

    def _writable(self) -> None:
        sock = self._sock
        assert sock is not None
        self._reactor._remove_writer_raw(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            self._sock = None
            if err == errno.ECONNREFUSED:
                self._errors.append(ConnectionRefusedError(err, f"connection to {self._where} refused"))
            else:
                self._errors.append(OSError(err, f"cannot connect to {self._where}: {os.strerror(err).lower()}"))
            self._next()
            return
        self._connected()

    def _connected(self) -> None:
        sock = self._sock
        assert sock is not None
        self._sock = None
        if self._timer is not None:
            self._timer.cancel()
        if self._nodelay:
            _set_nodelay(sock)
        try:
            protocol = self._factory()
        except (SystemExit, KeyboardInterrupt):
            sock.close()
            raise
        except BaseException as exc:
            sock.close()
            self._future.set_exception(exc)
            return
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        extra = {"peername": peer} if peer is not None else {}
        waiter = self._reactor.create_future()
        transport = StreamTransport(self._reactor, sock, protocol, extra, waiter=waiter)
        waiter.add_done_callback(lambda w: self._made(w, transport, protocol))

    def _made(self, waiter: Future[None], transport: StreamTransport, protocol: Any) -> None:
        future = self._future
        if future.done():
            if not waiter.cancelled() and waiter.exception() is None:
                transport.close()  # nobody is waiting for it any more
            return
        if waiter.cancelled():
            future.cancel()
        elif waiter.exception() is not None:
            future.set_exception(waiter.exception())  # type: ignore[arg-type]
        else:
            future.set_result((transport, protocol))

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        self._fail(ConnectTimeoutError(f"connect to {self._where} timed out after {timeout:g} s"))

    def _fail(self, exc: BaseException) -> None:
        self._cleanup()
        if not self._future.done():
            self._future.set_exception(exc)

    def _cleanup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._addrs = []
        sock = self._sock
        if sock is not None:
            self._sock = None
            self._reactor._remove_writer_raw(sock.fileno())
            sock.close()

    def _future_done(self, future: Future[Any]) -> None:
        if future.cancelled():
            self._cleanup()


def create_tcp_connection(reactor: Reactor, protocol_factory: Callable[[], Any], host: str,
                          port: int, *, timeout: float | None = 10.0,
                          tcp_nodelay: bool = True) -> Future[Any]:
    """Connect to ``host``:``port``; the future resolves to ``(transport, protocol)``
    after ``connection_made``.

    Errors: ``ConnectionRefusedError``, ``fastsock.exceptions.ConnectTimeoutError``
    (a ``TimeoutError``) after ``timeout`` seconds, ``OSError`` naming the host
    for unreachable networks and names that do not resolve. Names are resolved
    in a helper thread; literal addresses are not.
    """
    port = _check_port(port)
    if not isinstance(host, str) or not host:
        raise ValueError(f"invalid host {host!r}: expected a name or an IP address")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"invalid timeout {timeout!r}: must be > 0 or None")
    future: Future[Any] = reactor.create_future()
    _Connector(reactor, protocol_factory, host, port, timeout, tcp_nodelay, future).start()
    return future
