"""TCP listeners on the reactor: bind, accept, and the EMFILE back-off.

:func:`create_tcp_server` is fastsock's synchronous server API (the
WebSocket server and the example apps use it); asyncio's ``create_server``
on fastsock's loop accepts through ``Reactor._accept_connection`` into the
same :class:`~fastsock.transports.stream.StreamTransport`.
"""
from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .stream import StreamTransport

if TYPE_CHECKING:
    from ..reactor import Reactor

__all__ = ["TCPServer", "create_tcp_server"]

logger = logging.getLogger("fastsock.transports.tcp")

# accept() errors that mean "out of descriptors/memory": back off, don't spin
_EXHAUSTED = frozenset(e for e in (
    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM) if e is not None)
# accept() errors about one connection that died in the queue: skip it
_TRANSIENT = frozenset(getattr(errno, n) for n in (
    "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN",
    "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "EINTR") if hasattr(errno, n))

# TCP_NODELAY is set on accepted sockets of these families
_NODELAY_FAMILIES = (socket.AF_INET, socket.AF_INET6)

ACCEPT_RETRY_MIN = 0.05   # first back-off after EMFILE (seconds)
ACCEPT_RETRY_MAX = 1.0    # cap of the doubling back-off


_summary_logged = False


def _descriptor_watch() -> Any:
    """The process-wide DescriptorWatch from fastsock.limits, if available."""
    try:
        from ..limits import default_watch
    except ImportError:
        return None
    return default_watch()


def _log_limits_once() -> None:
    global _summary_logged
    if _summary_logged:
        return
    _summary_logged = True
    try:
        from ..limits import log_summary
    except ImportError:
        return
    try:
        log_summary(logging.getLogger("fastsock.limits"))
    except Exception:  # the report is advice; never let it stop a server
        logger.debug("limits summary failed", exc_info=True)


class TCPServer:
    """Listening sockets that accept connections into ``protocol_factory()``."""

    def __init__(self, reactor: Reactor, protocol_factory: Callable[[], Any],
                 sockets: Sequence[socket.socket], *, backlog: int = 1024,
                 tcp_nodelay: bool = True) -> None:
        self._reactor = reactor
        self._factory = protocol_factory
        self._sockets = list(sockets)
        self._backlog = backlog
        self._nodelay = tcp_nodelay
        self._connections: set[StreamTransport] = set()
        self._serving = True
        self._accept_paused = False
        self._retry: Any = None
        self._backoff = ACCEPT_RETRY_MIN
        self._exhausted_logged = False
        self._watch = _descriptor_watch()
        self.stats: dict[str, int] = {
            "accepted": 0, "active": 0, "closed": 0, "accept_errors": 0,
            "fd_exhausted": 0, "accept_pauses": 0,
        }
        for sock in self._sockets:
            reactor._add_reader_raw(sock.fileno(), self._accept_ready, (sock,))
        reactor.add_shutdown_hook(self._on_shutdown)
        _log_limits_once()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every listening socket (ports resolved when 0 was asked)."""
        out = []
        for sock in self._sockets:
            name = sock.getsockname()
            out.append((name[0], name[1]))
        return out

    @property
    def connections(self) -> frozenset[StreamTransport]:
        return frozenset(self._connections)

    def is_serving(self) -> bool:
        return self._serving

    def close(self, close_connections: bool = False) -> None:
        """Stop listening. Accepted connections stay open unless ``close_connections``
        (then each is closed gracefully: its buffer is flushed first)."""
        if self._serving:
            self._serving = False
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            for sock in self._sockets:
                if not self._reactor.is_closed():
                    self._reactor._remove_reader_raw(sock.fileno())
                sock.close()
            self._reactor.remove_shutdown_hook(self._on_shutdown)
        if close_connections:
            for transport in list(self._connections):
                transport.close()

    def _on_shutdown(self, deadline: float) -> None:
        self.close()  # the reactor closes the live transports itself

    # -------------------------------------------------------------- accept
    def _accept_ready(self, lsock: socket.socket) -> None:
        # socket.accept() turns the family and type into enums for every
        # connection (~1.6 us of a C10k handshake's ~30); read them once here.
        family = lsock.family
        nodelay = self._nodelay and family in _NODELAY_FAMILIES
        for _ in range(self._backlog):
            try:
                fd, addr = lsock._accept()  # type: ignore[attr-defined]
                conn = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._out_of_descriptors(exc)
                    return
                if exc.errno in _TRANSIENT:
                    continue  # that one connection died in the queue
                self.stats["accept_errors"] += 1
                self._reactor.call_exception_handler({
                    "message": "accept() failed", "exception": exc, "socket": lsock})
                return
            self._backoff = ACCEPT_RETRY_MIN
            self._connection(conn, addr, nodelay)

    def _connection(self, conn: socket.socket, addr: Any, nodelay: bool) -> None:
        try:
            conn.setblocking(False)
            if nodelay:
                try:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass  # e.g. the peer already reset the connection
            protocol = self._factory()
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            self.stats["accept_errors"] += 1
            self._reactor.call_exception_handler({
                "message": "the protocol factory failed; connection dropped",
                "exception": exc, "peername": addr})
            return
        transport = StreamTransport(self._reactor, conn, protocol, {"peername": addr}, server=self)
        stats = self.stats
        stats["accepted"] += 1
        stats["active"] += 1
        if self._watch is not None:
            self._watch.opened()

    def _attach(self, transport: StreamTransport) -> None:
        self._connections.add(transport)

    def _detach(self, transport: StreamTransport) -> None:
        self._connections.discard(transport)
        self.stats["active"] -= 1
        self.stats["closed"] += 1
        if self._watch is not None:
            self._watch.closed()
        if self._accept_paused:
            # one of our descriptors just came free: try again at once
            self._resume_accepting()

    def _out_of_descriptors(self, exc: OSError) -> None:
        """EMFILE/ENFILE/ENOBUFS/ENOMEM: stop watching the listening sockets and
        retry after a doubling back-off, or as soon as one of our connections
        closes. Pending clients wait in the kernel's accept queue meanwhile."""
        self.stats["fd_exhausted"] += 1
        if not self._exhausted_logged:
            self._exhausted_logged = True
            logger.error(
                "accept() failed: %s (%d connections open). Pausing accepts and retrying; "
                "raise the descriptor limit (see `python -m fastsock limits`). "
                "Logged once; see server.stats['fd_exhausted'].",
                exc.strerror or exc, len(self._connections))
        if self._accept_paused or not self._serving:
            return
        self._accept_paused = True
        self.stats["accept_pauses"] += 1
        for sock in self._sockets:
            self._reactor._remove_reader_raw(sock.fileno())
        self._retry = self._reactor.call_later(self._backoff, self._resume_accepting)
        self._backoff = min(self._backoff * 2, ACCEPT_RETRY_MAX)

    def _resume_accepting(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self._accept_paused or not self._serving:
            return
        self._accept_paused = False
        for sock in self._sockets:
            self._reactor._add_reader_raw(sock.fileno(), self._accept_ready, (sock,))

    def __repr__(self) -> str:
        return f"<TCPServer {self.addresses if self._serving else 'closed'} active={self.stats['active']}>"


def _check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise ValueError(f"invalid port {port!r}: expected an integer 0-65535") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port {port}: expected 0-65535")
    return int(port)


def create_tcp_server(reactor: Reactor, protocol_factory: Callable[[], Any],
                      host: str | Sequence[str] | None = "127.0.0.1", port: int = 0, *,
                      backlog: int = 1024, reuse_address: bool = True, reuse_port: bool = False,
                      tcp_nodelay: bool = True, sock: socket.socket | None = None) -> TCPServer:
    """Listen on ``host``:``port`` and serve each connection with ``protocol_factory()``.

    ``host`` None or ``""`` listens on every interface (IPv4 and IPv6, as
    asyncio does); a sequence listens on each. ``port`` 0 picks a free port
    (see ``server.addresses``). ``sock`` serves an existing listening socket.
    """
    if backlog < 1:
        raise ValueError(f"invalid backlog {backlog!r}: must be >= 1")
    if sock is not None:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"a stream socket is required, got {sock!r}")
        sock.setblocking(False)
        return TCPServer(reactor, protocol_factory, [sock], backlog=backlog, tcp_nodelay=tcp_nodelay)
    port = _check_port(port)
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port is not supported on this platform")
    if host == "" or host is None:
        hosts: list[str | None] = [None]
    elif isinstance(host, str):
        hosts = [host]
    else:
        hosts = list(host)
    infos = []
    for h in hosts:
        try:
            infos.extend(socket.getaddrinfo(h, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                            0, socket.AI_PASSIVE))
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot resolve host {h!r}: {exc.strerror}") from None
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, type_, proto, _canon, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            try:
                s = socket.socket(family, type_, proto)
            except OSError:
                if len(infos) > 1:
                    continue  # e.g. IPv6 disabled: serve the other families
                raise
            socks.append(s)
            if reuse_address:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                # one socket per family, as asyncio does
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                host_, port_ = str(addr[0]), int(addr[1])
                where = f"[{host_}]:{port_}" if family == socket.AF_INET6 else f"{host_}:{port_}"
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(exc.errno, f"cannot listen on {where}: {reason}") from None
            s.listen(backlog)
            s.setblocking(False)
        if not socks:
            raise OSError(errno.EADDRNOTAVAIL, f"no address to listen on for host {host!r}")
    except BaseException:
        for s in socks:
            s.close()
        raise
    return TCPServer(reactor, protocol_factory, socks, backlog=backlog, tcp_nodelay=tcp_nodelay)
