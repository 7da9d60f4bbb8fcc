"""TCP on the reactor: the stream transport, the server and the client connector.

Hot path, per readable event: one ``recv_into`` into the reactor-owned buffer
and one ``bytes`` copy of the filled part for ``data_received`` -- or, for a
compiled ``ChunkReceiver`` (``fastsock/_receive.pxd``, e.g. the WebSocket
core), the filled part parsed in place with no copy; for a
``BufferedProtocol``, ``recv_into`` straight into the protocol's buffer. The
read path is chosen once, in ``set_protocol``. Writes go out at once with
``send``; only what the kernel did not take is buffered, and only then is the
socket watched for writability. Queued data leaves with ``sendmsg`` (gather,
at most ``IOV_MAX`` buffers per call).
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections import deque
from itertools import islice
from typing import Any, Callable, Iterable, Sequence

from ..exceptions import ConnectTimeoutError
from ..reactor import Future, Reactor
from .base import BaseTransport, is_buffered_protocol

__all__ = ["TCPTransport", "TCPServer", "create_tcp_server", "create_tcp_connection"]

logger = logging.getLogger("fastsock.transports.tcp")

try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
    _IOV_MAX = 16
_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")

# Compiled raw send/recv (fastsock/transports/_sockio.pyx) unless it is not
# built or FASTSOCK_PURE=1 (the codec's switch). Read when a transport is created.
_SockIO: Any = None
_StreamFastPath: Any = None
if os.environ.get("FASTSOCK_PURE") != "1":
    try:
        from ._sockio import SockIO as _SockIO, StreamFastPath as _StreamFastPath
        from .._receive import receiver_for as _receiver_for
    except ImportError:
        _SockIO = _StreamFastPath = None
        pass
IMPLEMENTATION = "python" if _SockIO is None else "cython"

# After this many writes to a lost connection, say so once (asyncio does too).
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

# accept() errors that mean "out of descriptors/memory": back off, don't spin
_EXHAUSTED = frozenset(e for e in (
    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM) if e is not None)
# accept() errors about one connection that died in the queue: skip it
_TRANSIENT = frozenset(getattr(errno, n) for n in (
    "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN",
    "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "EINTR") if hasattr(errno, n))

ACCEPT_RETRY_MIN = 0.05   # first back-off after EMFILE (seconds)
ACCEPT_RETRY_MAX = 1.0    # cap of the doubling back-off


_NO_QUEUE: tuple[()] = ()  # empty and falsy, like an empty deque


class _SocketIO:
    """The pure twin of ``_sockio.SockIO``: the same three calls, made on the
    socket object."""

    __slots__ = ("_sock", "_reactor")

    def __init__(self, sock: socket.socket, reactor: Any) -> None:
        self._sock = sock
        self._reactor = reactor

    def send(self, data: Any) -> int:
        return self._sock.send(data)

    def recv_into(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)

    def recv_bytes(self, buffer: Any) -> bytes:
        # recv_into the loop's buffer and copy out what arrived (recv(256 KiB)
        # would allocate that much per read)
        view: memoryview = self._reactor.recv_view
        n = self._sock.recv_into(view)
        return view[:n].tobytes()


class _ClosedIO:
    """What a transport's ``_io`` becomes once its socket is closed."""

    __slots__ = ()

    def _closed(self, data: Any) -> Any:
        raise OSError(errno.EBADF, "the transport's socket is closed")

    send = recv_into = recv_bytes = _closed


_CLOSED_IO = _ClosedIO()


def _unset(data: bytes) -> None:
    raise RuntimeError("the protocol has no data_received()")


def _set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # e.g. the peer already reset the connection


class TCPTransport(BaseTransport):
    """A connected stream socket driven by the reactor."""

    def __init__(self, reactor: Reactor, sock: socket.socket, protocol: Any,
                 extra: dict[str, Any] | None = None, *,
                 server: TCPServer | None = None, waiter: Future[Any] | None = None) -> None:
        if extra is None:
            extra = {}
        extra["socket"] = sock
        super().__init__(reactor, protocol, extra)
        self._sock = sock
        self._fd = sock.fileno()
        # bound once: these run for every message. The compiled SockIO makes
        # the syscalls without the socket module's per-call overhead (see
        # docs/bench-tcp.md); the socket methods are the pure-Python twin.
        # The write queue is created on the first partial send: most
        # connections never queue, and an empty deque costs ~0.75 KiB each.
        self._buffer: Any = _NO_QUEUE
        self._fast: Any = None
        # One object, not three bound methods: each bound method is another
        # GC-tracked object per connection that every collection walks.
        self._io: Any = _SockIO(self._fd) if _SockIO is not None else _SocketIO(sock, reactor)
        if (_SockIO is not None and _StreamFastPath is not None
                and type(self).write is TCPTransport.write
                and type(self).writelines is TCPTransport.writelines):
            # read_ready/write/writelines per message in C (docs/bench-tcp.md);
            # the instance attributes shadow the methods, so protocols calling
            # transport.write reach C straight away
            self._fast = _StreamFastPath(self, self._fd, self._buffer, reactor.recv_buffer,
                                         TCPTransport.write, TCPTransport.writelines)
            # Plain attribute stores. Keep TCPTransport under 30 instance
            # attributes: past CPython's shared-keys limit every instance gets
            # its own dict, about 1.3 KiB more per connection (C10k RSS); that
            # is why the loop's receive buffer is read from the reactor.
            self.write = self._fast.write  # type: ignore[method-assign]
            self.writelines = self._fast.writelines  # type: ignore[method-assign]
        self._conn_lost = 0
        self._eof = False            # write_eof() called
        self._eof_seen = False       # the peer half-closed
        self._paused = False         # pause_reading()
        self._started = False        # connection_made() called
        self._server = server
        self._waiter = waiter
        self._bytes_received = 0
        self._bytes_sent = 0
        self._read_ready: Callable[[], None] = self._read_ready_data
        self._data_received: Callable[[bytes], Any] = _unset
        self.set_protocol(protocol)
        reactor._track(self)
        reactor.call_soon(self._start)

    def _start(self) -> None:
        if self._conn_lost:
            return
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._started = True
            self._fatal_error(exc, "protocol.connection_made() failed")
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(exc)
            return
        self._started = True
        if not self._closing and not self._paused:
            self._reactor._add_reader_raw(self._fd, self._read_ready, ())
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if waiter.cancelled():
                self.close()
            elif not waiter.done():
                waiter.set_result((self, self._protocol))

    # ------------------------------------------------------------ protocol
    def set_protocol(self, protocol: Any) -> None:
        """Switch protocols; the read path (bytes or buffered) is chosen here, once."""
        self._protocol = protocol
        fast = self._fast
        if is_buffered_protocol(protocol):
            read_ready = self._read_ready_buffered
            if fast is not None:
                fast.receiver = None
        else:
            # bound once: data_received is the hottest call there is
            self._data_received = getattr(protocol, "data_received", _unset)
            if fast is not None:
                fast.data_received = self._data_received
                fast.receiver = _receiver_for(protocol)
                read_ready = fast.read_ready
            else:
                read_ready = self._read_ready_data
        self._read_ready = read_ready
        if self._started and self.is_reading():
            self._reactor._add_reader_raw(self._fd, read_ready, ())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        try:
            return self._extra[name]
        except KeyError:
            pass
        if name in ("sockname", "peername") and self._sock is not None and self._sock.fileno() >= 0:
            try:
                value = self._sock.getsockname() if name == "sockname" else self._sock.getpeername()
            except OSError:
                return default
            self._extra[name] = value
            return value
        return default

    @property
    def bytes_received(self) -> int:
        fast = self._fast
        return self._bytes_received + (fast.bytes_received if fast is not None else 0)

    @property
    def bytes_sent(self) -> int:
        fast = self._fast
        return self._bytes_sent + (fast.bytes_sent if fast is not None else 0)

    @property
    def stats(self) -> dict[str, int]:
        return {"bytes_received": self.bytes_received, "bytes_sent": self.bytes_sent,
                "write_buffer": self._buffer_size}

    # ---------------------------------------------------------------- read
    def _read_ready_data(self) -> None:
        try:
            data = self._io.recv_bytes(self._reactor.recv_buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._read_eof()
            return
        self._bytes_received += len(data)
        try:
            self._data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _read_ready_buffered(self) -> None:
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            n = self._io.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not n:
            self._read_eof()
            return
        self._bytes_received += n
        try:
            self._protocol.buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def _read_eof(self) -> None:
        self._eof_seen = True
        self._reactor._remove_reader_raw(self._fd)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading`` (the kernel
        buffer then fills and TCP flow control slows the peer down)."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._reactor._remove_reader_raw(self._fd)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._started and not self._eof_seen:
            self._reactor._add_reader_raw(self._fd, self._read_ready, ())

    def is_reading(self) -> bool:
        return not self._paused and not self._closing and not self._eof_seen

    # --------------------------------------------------------------- write
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` now if possible; buffer only what the kernel did not take."""
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
            if isinstance(data, memoryview) and (data.format != "B" or data.itemsize != 1):
                data = data.cast("B")
        if self._eof:
            raise RuntimeError("cannot write after write_eof()")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = self._io.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            self._bytes_sent += n
            if n == len(data):
                return
            if type(data) is not bytes:
                # copy the rest: the caller may reuse its buffer
                data = bytes(memoryview(data)[n:])
                n = 0
            self._queue_rest(data, n)
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._queue().append(data)
        self._buffer_size += len(data)
        self._maybe_pause_protocol()

    def _queue(self) -> deque[Any]:
        """The write queue, created on first use (and shared with the C path)."""
        buf = self._buffer
        if buf is _NO_QUEUE:
            buf = self._buffer = deque()
            if self._fast is not None:
                self._fast.queue = buf
        return buf  # type: ignore[no-any-return]

    def _queue_rest(self, data: bytes, n: int) -> None:
        """The kernel took ``n`` bytes of ``data`` and the queue was empty:
        queue the rest and watch for writability (also the C write's way back)."""
        rest: Any = memoryview(data)[n:] if n else data
        self._reactor._add_writer_raw(self._fd, self._write_ready, ())
        self._queue().append(rest)
        self._buffer_size += len(rest)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Queue several buffers and send them with one gathering ``sendmsg``."""
        if self._eof:
            raise RuntimeError("cannot write after write_eof()")
        if self._conn_lost:
            self._conn_lost += 1
            return
        was_empty = not self._buffer
        buf = self._queue()
        added = 0
        for data in list_of_data:
            if type(data) is not bytes:
                if not isinstance(data, (bytearray, memoryview)):
                    raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
                data = bytes(data)
            if data:
                buf.append(data)
                added += len(data)
        if not added:
            return
        self._buffer_size += added
        if was_empty:
            self._flush()
            if self._buffer and not self._conn_lost:
                self._reactor._add_writer_raw(self._fd, self._write_ready, ())
        self._maybe_pause_protocol()

    def _queue_rest_of(self, list_of_data: list[bytes], n: int) -> None:
        """The C writelines sent ``n`` bytes of ``list_of_data`` (all bytes,
        the queue was empty): queue the rest and watch for writability."""
        buf = self._queue()
        added = 0
        for data in list_of_data:
            size = len(data)
            if n >= size:
                n -= size
                continue
            rest: Any = memoryview(data)[n:] if n else data
            n = 0
            buf.append(rest)
            added += len(rest)
        self._buffer_size += added
        self._reactor._add_writer_raw(self._fd, self._write_ready, ())
        self._maybe_pause_protocol()

    def _flush(self) -> bool:
        """Send as much of the queue as the kernel takes. False on a fatal error."""
        buf = self._buffer
        try:
            if len(buf) == 1 or not _HAS_SENDMSG:
                n = self._io.send(buf[0])
            else:
                n = self._sock.sendmsg(islice(buf, _IOV_MAX))
        except (BlockingIOError, InterruptedError):
            return True
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._reactor._remove_writer_raw(self._fd)
            buf.clear()
            self._buffer_size = 0
            self._fatal_error(exc, "Fatal write error on socket transport")
            return False
        self._bytes_sent += n
        self._buffer_size -= n
        while n:
            head = buf[0]
            size = len(head)
            if n >= size:
                buf.popleft()
                n -= size
            else:
                buf[0] = memoryview(head)[n:]
                break
        return True

    def _write_ready(self) -> None:
        if not self._buffer or not self._flush():
            return
        self._maybe_resume_protocol()
        if not self._buffer:
            self._reactor._remove_writer_raw(self._fd)
            if self._closing:
                self._conn_lost += 1
                self._call_connection_lost(None)
            elif self._eof:
                self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc, "Fatal error on shutdown(SHUT_WR)")

    def write_eof(self) -> None:
        """Half-close: send FIN once the buffer is flushed; reading goes on."""
        if self._closing or self._eof:
            return
        self._eof = True
        if self._fast is not None:
            self._fast.direct = False
        if not self._buffer:
            self._shutdown_write()

    def can_write_eof(self) -> bool:
        return True

    # --------------------------------------------------------------- close
    def close(self) -> None:
        """Stop reading, flush the write buffer, then close and call ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        if self._fast is not None:
            self._fast.direct = False
        self._reactor._remove_reader_raw(self._fd)
        if not self._buffer:
            self._conn_lost += 1
            self._reactor.call_soon(self._call_connection_lost, None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._fast is not None:
            self._fast.direct = False
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._reactor._remove_writer_raw(self._fd)
        if not self._closing:
            self._closing = True
            self._reactor._remove_reader_raw(self._fd)
        self._conn_lost += 1
        self._reactor.call_soon(self._call_connection_lost, exc)

    def abort(self) -> None:
        """Close now, dropping anything still buffered."""
        self._force_close(None)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        reactor = self._reactor
        # unregister before closing: see the stale-fd essay in reactor/_epoll.py
        reactor._remove_reader_raw(self._fd)
        reactor._remove_writer_raw(self._fd)
        try:
            if self._started:
                self._protocol.connection_lost(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as err:
            reactor.call_exception_handler({
                "message": "protocol.connection_lost() failed", "exception": err,
                "transport": self, "protocol": self._protocol,
            })
        finally:
            self._sock.close()
            # the fd number may be reused at once: nothing may touch it now
            self._io = _CLOSED_IO
            if self._fast is not None:
                self._fast.detach()
            reactor._untrack(self)
            server = self._server
            if server is not None:
                self._server = None
                server._detach(self)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(exc or ConnectionError("connection closed before it was made"))
                self._waiter = None

    def __repr__(self) -> str:
        state = "closed" if self._conn_lost else ("closing" if self._closing else "open")
        return f"<TCPTransport fd={self._fd} {state}>"


# ====================================================================== server
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
        self._connections: set[TCPTransport] = set()
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
    def connections(self) -> frozenset[TCPTransport]:
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
        for _ in range(self._backlog):
            try:
                conn, addr = lsock.accept()
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
            self._connection(conn, addr)

    def _connection(self, conn: socket.socket, addr: Any) -> None:
        try:
            conn.setblocking(False)
            if self._nodelay:
                _set_nodelay(conn)
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
        transport = TCPTransport(self._reactor, conn, protocol, {"peername": addr}, server=self)
        self._connections.add(transport)
        stats = self.stats
        stats["accepted"] += 1
        stats["active"] += 1
        if self._watch is not None:
            self._watch.opened()

    def _detach(self, transport: TCPTransport) -> None:
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


# ====================================================================== client
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
        TCPTransport(self._reactor, sock, protocol, extra, waiter=self._future)

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
