"""The stream transport: one connected stream socket (TCP or Unix) on the loop.

Hot path, per readable event: one ``recv_into`` into the loop-owned buffer
and one ``bytes`` copy of the filled part for ``data_received`` -- or, for a
compiled ``ChunkReceiver`` (``fastsock/_receive.pxd``, e.g. the WebSocket
core), the filled part parsed in place with no copy; for a
``BufferedProtocol`` (asyncio's TLS protocol is one), ``recv_into`` straight
into the protocol's buffer. The read path is chosen once, in
``set_protocol``. Writes go out at once with ``send``; only what the kernel
did not take is buffered, and only then is the socket watched for
writability. Queued data leaves with ``sendmsg`` (gather, at most
``IOV_MAX`` buffers per call).

It keeps asyncio's transport contract (``_SelectorSocketTransport``'s): the
loop creates it for ``create_connection``, ``create_server``,
``connect_accepted_socket``, ``start_tls`` and ``sendfile``; ``waiter`` is
resolved with ``None`` after ``connection_made``; ``server._attach()`` /
``server._detach()`` count it on its server.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import warnings
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterable

from asyncio import constants as _aio_constants, trsock
from asyncio.transports import _FlowControlMixin
from .._switch import compiled
from .base import BaseTransport, is_buffered_protocol

if TYPE_CHECKING:
    from ..reactor import Reactor

__all__ = ["StreamTransport", "TCPTransport"]

logger = logging.getLogger("fastsock.transports.stream")

try:
    _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
    _IOV_MAX = 16
_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")

# Compiled raw send/recv (fastsock/transports/_sockio.pyx) unless it is not
# built or FASTSOCK_PURE=1 (the codec's switch). Read when a transport is created.
_sockio = compiled("._sockio", __package__)
_receive = compiled("fastsock._receive")
_SockIO: Any = _sockio.SockIO if _sockio is not None and _receive is not None else None
_StreamFastPath: Any = _sockio.StreamFastPath if _sockio is not None and _SockIO is not None else None
_receiver_for: Any = _receive.receiver_for if _receive is not None else None
IMPLEMENTATION = "python" if _SockIO is None else "cython"

# After this many writes to a lost connection, say so once (asyncio does too).
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

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


class StreamTransport(BaseTransport, _FlowControlMixin):
    """A connected stream socket driven by the loop (asyncio's ``Transport``)."""

    # what asyncio's loop checks before start_tls() and sendfile()
    _start_tls_compatible = True
    _sendfile_compatible = _aio_constants._SendfileMode.TRY_NATIVE

    def __init__(self, reactor: Reactor, sock: socket.socket, protocol: Any,
                 extra: dict[str, Any] | None = None, *,
                 server: Any = None, waiter: Any = None) -> None:
        super().__init__(reactor, protocol, extra)
        self._loop = reactor  # asyncio's name (its sendfile fallback reads it)
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
                and type(self).write is StreamTransport.write
                and type(self).writelines is StreamTransport.writelines):
            # read_ready/write/writelines per message in C (docs/bench-tcp.md);
            # the instance attributes shadow the methods, so protocols calling
            # transport.write reach C straight away
            self._fast = _StreamFastPath(self, self._fd, self._buffer, reactor.recv_buffer,
                                         StreamTransport.write, StreamTransport.writelines)
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
        reactor._stream_transports[self._fd] = self
        if server is not None:
            _server_attach(server, self)
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
                waiter.set_result(None)

    # ------------------------------------------------------------ protocol
    def set_protocol(self, protocol: Any) -> None:
        """Switch protocols; the read path (bytes or buffered) is chosen here, once."""
        self._protocol = protocol
        fast = self._fast
        if is_buffered_protocol(protocol):
            read_ready = self._read_ready_buffered
            if fast is not None:
                fast.receiver = None
                read_ready = fast.read_ready_buffered  # the same, in C
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
        sock = self._sock
        if name == "socket":
            # asyncio's wrapper: the socket's options and names, but no
            # recv/send/close that would go behind the loop's back
            wrapped = self._extra["socket"] = trsock.TransportSocket(sock)
            return wrapped
        if name in ("sockname", "peername") and sock is not None and sock.fileno() >= 0:
            try:
                value = sock.getsockname() if name == "sockname" else sock.getpeername()
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
            waiters = self._reactor._empty_waiters
            if waiters:
                _resolve_empty_waiter(waiters.pop(self, None), None)
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
            _keep_names(self._sock, self._extra)
            self._sock.close()
            # the fd number may be reused at once: nothing may touch it now
            self._io = _CLOSED_IO
            if self._fast is not None:
                self._fast.detach()
            # as asyncio does: the transport refers to itself (bound methods
            # in _read_ready), so while it held the protocol a closed TLS
            # connection's SSLProtocol, 256 KiB buffer and context would wait
            # for the cyclic GC
            self._protocol = None
            self._data_received = _unset
            reactor._untrack(self)
            if reactor._stream_transports.get(self._fd) is self:
                del reactor._stream_transports[self._fd]
            server = self._server
            if server is not None:
                self._server = None
                _server_detach(server, self)
            waiters = reactor._empty_waiters
            if waiters:
                _resolve_empty_waiter(waiters.pop(self, None), exc)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(exc or ConnectionError("connection closed before it was made"))
                self._waiter = None

    # ----------------------------------------------- asyncio's loop internals
    @property
    def _sock_fd(self) -> int:
        return self._fd

    def _make_empty_waiter(self) -> Any:
        """A future resolved once the write buffer is empty (sendfile waits on it)."""
        waiters = self._reactor._empty_waiters
        if self in waiters:
            raise RuntimeError("Empty waiter is already set")
        waiter = self._reactor.create_future()
        if self._buffer:
            waiters[self] = waiter
        else:
            waiter.set_result(None)
        # os.sendfile writes to the socket until _reset_empty_waiter: a write
        # now would interleave with the file's bytes (asyncio refuses it too)
        self.write = self.writelines = _refuse_during_sendfile  # type: ignore[method-assign,assignment]
        return waiter

    def _reset_empty_waiter(self) -> None:
        self._reactor._empty_waiters.pop(self, None)
        fast = self._fast
        if fast is not None:
            self.write = fast.write  # type: ignore[method-assign]
            self.writelines = fast.writelines  # type: ignore[method-assign]
        else:
            self.__dict__.pop("write", None)
            self.__dict__.pop("writelines", None)

    def __repr__(self) -> str:
        state = "closed" if self._conn_lost else ("closing" if self._closing else "open")
        return f"<StreamTransport fd={self._fd} {state}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # asyncio's ResourceWarning for a transport never closed (its loop was
        # closed under it, or it was dropped before connection_made)
        sock = getattr(self, "_sock", None)
        if sock is not None and not self._conn_lost:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()  # a no-op when the collector finalised the socket first


TCPTransport = StreamTransport  # the name fastsock used before Unix sockets came in


def _keep_names(sock: socket.socket, extra: dict[str, Any]) -> None:
    """Read the socket's names before it closes: asyncio's transports answer
    get_extra_info("sockname"/"peername") after close, having read them at
    creation; fastsock reads them on first use, so at the latest here."""
    for name, read in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
        if name not in extra:
            try:
                extra[name] = read()
            except OSError:
                pass  # e.g. ENOTCONN after a reset


def _refuse_during_sendfile(data: Any) -> None:
    raise RuntimeError("unable to write; sendfile is in progress")


def _resolve_empty_waiter(waiter: Any, exc: BaseException | None) -> None:
    if waiter is None or waiter.done():
        return
    if exc is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(exc)


# asyncio's Server counts its transports: _attach()/_detach() with no argument
# up to 3.12, with the transport from 3.13 on; fastsock's TCPServer takes it.
_HOOK_TAKES_TRANSPORT: dict[type, bool] = {}


def _takes_transport(server: Any) -> bool:
    kind = type(server)
    known = _HOOK_TAKES_TRANSPORT.get(kind)
    if known is None:
        code = getattr(getattr(kind, "_attach", None), "__code__", None)
        known = _HOOK_TAKES_TRANSPORT[kind] = code is not None and code.co_argcount >= 2
    return known


def _server_attach(server: Any, transport: StreamTransport) -> None:
    if _takes_transport(server):
        server._attach(transport)
    else:
        server._attach()


def _server_detach(server: Any, transport: StreamTransport) -> None:
    if _takes_transport(server):
        server._detach(transport)
    else:
        server._detach()
