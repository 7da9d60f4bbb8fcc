"""UDP endpoints on the reactor, with batched system calls.

:func:`create_udp_endpoint` returns ``(transport, protocol)`` with asyncio's
datagram shape: the protocol gets ``connection_made(transport)``,
``datagram_received(data, addr)``, ``error_received(exc)``,
``connection_lost(exc)`` (and ``pause_writing``/``resume_writing``); the
transport offers ``sendto(data, addr=None)``, ``close``, ``abort``,
``get_extra_info``, write-buffer watermarks, ``is_closing``. So the same
protocol class runs on asyncio's and uvloop's ``create_datagram_endpoint``.

Where the time goes, and what this module does about it:

* **Receive.** One readiness event reads up to ``batch`` datagrams with one
  ``recvmmsg`` (Cython, ``_mmsg.Receiver``) into a reused slab; the fallback
  (not Linux, extension not built, ``FASTSOCK_PURE=1``) is a bounded loop of
  ``recvfrom_into`` into one reused buffer. asyncio's loop reads one datagram
  per wake-up.
* **Send.** ``sendto`` outside a receive batch goes out at once (one
  ``sendto``). Inside ``datagram_received`` it is *corked*: replies are queued
  and the whole batch leaves with one ``sendmmsg`` when the batch has been
  delivered, so an echo costs two system calls per batch, not one per datagram.
  What the kernel refuses (EAGAIN) waits in a bounded queue flushed with
  ``sendmmsg`` when the socket is writable; past ``max_write_buffer_size`` new
  datagrams are dropped and counted (UDP is best-effort; a producer that wants
  no drops honours ``pause_writing``).
* **Errors** never close the endpoint: ICMP port unreachable (a connected
  socket's ``ECONNREFUSED``), ``EMSGSIZE``, truncated datagrams (longer than
  ``max_datagram_size``; dropped, never delivered cut) are counted in
  :attr:`UDPTransport.stats` and reported through ``error_received``.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import struct
import sys
from collections import deque
from typing import Any, Callable

from .._switch import PURE
from .base import BaseTransport

__all__ = ["IMPLEMENTATION", "UDPTransport", "create_udp_endpoint"]

try:
    from . import _mmsg as _mmsg_ext
except ImportError:  # not built: the pure-Python path below
    _mmsg_ext = None  # type: ignore[assignment]

# The module the transports use; None selects the fallback (tests set it).
_mmsg: Any = (
    _mmsg_ext
    if _mmsg_ext is not None and _mmsg_ext.AVAILABLE and not PURE
    else None
)
#: "mmsg" (recvmmsg/sendmmsg batching) or "python" (recvfrom_into loop).
IMPLEMENTATION = "mmsg" if _mmsg is not None else "python"

# Sender.send results, the same values as _mmsg.WOULD_BLOCK / _mmsg.SLOW_PATH.
WOULD_BLOCK = -1
SLOW_PATH = -2

# Per queued datagram on top of its payload, as asyncio counts it (3.12+): an
# empty datagram still occupies the queue.
_HEADER_SIZE = 8
_MAX_BATCH = 1024
_MAX_DATAGRAM = 65535
_TRANSIENT = (BlockingIOError, InterruptedError)

# Linux values (the socket module does not export them): ask the kernel to
# queue ICMP errors with the address they concern (see report_unreachable).
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
# struct sock_extended_err: ee_errno, origin, type, code, pad, info, data
_EXTENDED_ERR = struct.Struct("=IBBBBII")
# Error-queue entries read per readiness event (the queue is bounded by the
# socket's receive buffer; the rest is read on the next event).
_ERRQUEUE_BATCH = 64


class _PyReceiver:
    """Fallback twin of ``_mmsg.Receiver``: up to ``batch`` ``recvfrom_into`` calls."""

    __slots__ = ("_sock", "_batch", "_size", "_buf", "_view", "nbytes", "truncated", "error",
                 "syscalls")

    def __init__(self, sock: socket.socket, batch: int, bufsize: int) -> None:
        self._sock = sock
        self._batch = batch
        self._size = bufsize
        # One spare byte: a datagram that fills it was longer than bufsize.
        # This detects truncation on every platform, with or without MSG_TRUNC.
        self._buf = bytearray(bufsize + 1)
        self._view = memoryview(self._buf)
        self.nbytes = 0
        self.truncated: list[Any] | None = None
        self.error: OSError | None = None
        self.syscalls = 0

    def recv(self) -> list[tuple[bytes, Any]]:
        out: list[tuple[bytes, Any]] = []
        total = 0
        size = self._size
        view = self._view
        recv_into = self._sock.recvfrom_into
        buf = self._buf
        self.truncated = None
        self.error = None
        for _ in range(self._batch):
            self.syscalls += 1
            try:
                n, addr = recv_into(buf)
            except _TRANSIENT:
                break
            except OSError as exc:
                if not out:
                    raise
                # recvfrom consumed the error: hand it over after this batch.
                self.error = exc
                break
            if n > size:
                if self.truncated is None:
                    self.truncated = []
                self.truncated.append(addr)
                continue
            total += n
            out.append((bytes(view[:n]), addr))
        self.nbytes = total
        return out


class _PySender:
    """Fallback twin of ``_mmsg.Sender``: up to ``cap`` ``sendto`` calls."""

    __slots__ = ("_sock", "_cap", "nbytes", "syscalls")

    def __init__(self, sock: socket.socket, cap: int) -> None:
        self._sock = sock
        self._cap = cap
        self.nbytes = 0
        self.syscalls = 0

    def send(self, items: Any) -> int:
        sock = self._sock
        cap = self._cap
        count = 0
        total = 0
        self.nbytes = 0
        for data, addr in items:
            if count == cap:
                break
            self.syscalls += 1
            try:
                if addr is None:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except _TRANSIENT:
                break
            except OSError:
                if not count:
                    raise
                break  # the next call meets this datagram first and reports it
            count += 1
            total += len(data)
        self.nbytes = total
        return count if count else WOULD_BLOCK


class UDPTransport(BaseTransport, asyncio.DatagramTransport, asyncio.Transport):
    """One UDP socket on the reactor (asyncio's ``DatagramTransport`` shape).

    Attributes beyond asyncio's: :attr:`stats`, :attr:`implementation`,
    multicast helpers (:meth:`join_group`, :meth:`leave_group`,
    :meth:`set_multicast_ttl`, :meth:`set_multicast_loopback`,
    :meth:`set_multicast_interface`), :meth:`pause_reading`/
    :meth:`resume_reading`.
    """

    def __init__(self, reactor: Any, sock: socket.socket, protocol: Any,
                 address: Any = None, *, connected: bool | None = None, batch: int = 64,
                 max_datagram_size: int = _MAX_DATAGRAM,
                 max_write_buffer_size: int = 1024 * 1024,
                 report_unreachable: bool = False) -> None:
        super().__init__(reactor, protocol, {"socket": sock})
        self._sock = sock
        self._fileno = sock.fileno()
        self._address = address
        # a unix datagram pair is connected with an empty peer name
        self._connected = address is not None if connected is None else connected
        self._max_datagram_size = max_datagram_size
        self._errqueue = report_unreachable
        self._max_buffer = max_write_buffer_size
        family = sock.family
        self._unix = family == getattr(socket, "AF_UNIX", None)  # addresses are paths
        if _mmsg is not None:
            self._rx: Any = _mmsg.Receiver(self._fileno, batch, max_datagram_size)
            self._tx: Any = _mmsg.Sender(self._fileno, family, batch)
            self.implementation = "mmsg"
        else:
            self._rx = _PyReceiver(sock, batch, max_datagram_size)
            self._tx = _PySender(sock, batch)
            self.implementation = "python"
        self._queue: deque[tuple[bytes, Any]] = deque()
        self._writing = False      # writer registered with the reactor
        self._reading = False      # reader registered
        self._want_reading = True  # pause_reading() not in effect
        self._halted = False       # closing or reading paused: stop delivering a batch
        self._corked = False       # inside a receive batch: sendto only queues
        self._held: list[tuple[bytes, Any]] | None = None  # rest of a batch cut by pause_reading
        self._lost_pending = False  # connection_lost scheduled
        self._lost = False
        # counters (plain attributes: cheaper than a dict on the hot path)
        self._datagrams_in = 0
        self._bytes_in = 0
        self._datagrams_out = 0
        self._bytes_out = 0
        self._direct_sends = 0
        self._max_batch = 0
        self._dropped_out = 0
        self._truncated_in = 0
        self._oversized_out = 0
        self._errors = 0
        self._unreachable = 0
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        self._extra["peername"] = address
        track = getattr(reactor, "_track", None)
        if track is not None:
            track(self)  # graceful shutdown closes (and drains) us too
        reactor.call_soon(self._start, protocol)

    # ------------------------------------------------------------ lifecycle
    def _start(self, protocol: Any) -> None:
        if self._lost:
            return
        try:
            protocol.connection_made(self)
        except Exception as exc:
            self._fatal_error(exc, "protocol.connection_made() failed")
            return
        if not self._closing and self._want_reading:
            self._add_reader()

    def _add_reader(self) -> None:
        if not self._reading:
            self._reactor.add_reader(self._fileno, self._on_readable)
            self._reading = True

    def _remove_reader(self) -> None:
        if self._reading:
            self._reactor.remove_reader(self._fileno)
            self._reading = False

    def close(self) -> None:
        """Stop receiving; send what is queued, then ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self._halted = True
        self._held = None
        self._remove_reader()
        if not self._queue:
            self._schedule_lost(None)

    def _force_close(self, exc: BaseException | None) -> None:
        # abort(): close now, dropping anything queued (counted in dropped_out).
        if self._lost:
            return
        if self._queue:
            self._dropped_out += len(self._queue)
            self._queue.clear()
            self._buffer_size = 0
        if self._writing:
            self._reactor.remove_writer(self._fileno)
            self._writing = False
        self._closing = True
        self._halted = True
        self._held = None
        self._remove_reader()
        self._schedule_lost(exc)

    def _schedule_lost(self, exc: BaseException | None) -> None:
        if not self._lost_pending:
            self._lost_pending = True
            self._reactor.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._remove_reader()
        if self._writing:
            self._reactor.remove_writer(self._fileno)
            self._writing = False
        try:
            self._protocol.connection_lost(exc)
        finally:
            # Unregistered above before the close: see reactor/_epoll.py.
            self._sock.close()
            untrack = getattr(self._reactor, "_untrack", None)
            if untrack is not None:
                untrack(self)

    # --------------------------------------------------------------- receive
    def _on_readable(self) -> None:
        rx = self._rx
        try:
            items = rx.recv()
        except OSError as exc:
            # With IP_RECVERR the bare error (sk_err) comes with a queued
            # message that names the unreachable peer: report that instead.
            if not (self._errqueue and self._read_errqueue()):
                self._report(exc)
            return
        if not items and self._errqueue:
            # EPOLLERR stays up while the error queue is not empty.
            self._read_errqueue()
        if items:
            n = len(items)
            self._datagrams_in += n
            self._bytes_in += rx.nbytes
            if n > self._max_batch:
                self._max_batch = n
            self._deliver(items)
        if rx.truncated:
            self._report_truncated(rx.truncated)
        if rx.error is not None:
            self._report(rx.error)

    def _read_errqueue(self) -> int:
        """Report queued ICMP errors with the peer they concern; returns how many."""
        recvmsg = self._sock.recvmsg
        n = 0
        for _ in range(_ERRQUEUE_BATCH):
            try:
                _, ancdata, _, addr = recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except OSError:
                break  # EAGAIN: empty
            for level, kind, data in ancdata:
                if (level, kind) not in ((socket.IPPROTO_IP, _IP_RECVERR),
                                         (socket.IPPROTO_IPV6, _IPV6_RECVERR)):
                    continue
                if len(data) < _EXTENDED_ERR.size:
                    continue
                code = _EXTENDED_ERR.unpack_from(data)[0]
                if not code:
                    continue
                n += 1
                self._unreachable += 1
                exc = OSError(code, f"{os.strerror(code)}: {addr!r}")  # the subclass for code
                exc.address = addr  # type: ignore[attr-defined]
                self._report(exc)
        return n

    def _deliver(self, items: list[tuple[bytes, Any]]) -> None:
        received = self._protocol.datagram_received
        self._corked = True
        stopped_at = -1
        try:
            for i, (data, addr) in enumerate(items):
                try:
                    received(data, addr)
                except Exception as exc:
                    self._callback_error(exc, "datagram_received")
                if self._halted:  # close() or pause_reading() inside the callback
                    stopped_at = i + 1
                    break
        finally:
            self._corked = False
        if 0 <= stopped_at < len(items) and not self._closing:
            # pause_reading() inside the batch: keep the rest for resume_reading().
            self._held = items[stopped_at:]
        if self._queue and not self._writing:
            self._flush()

    def pause_reading(self) -> None:
        """Stop delivering datagrams; the kernel queues (then drops) new ones."""
        if self._closing or not self._want_reading:
            return
        self._want_reading = False
        self._halted = True
        self._remove_reader()

    def resume_reading(self) -> None:
        if self._closing or self._want_reading:
            return
        self._want_reading = True
        self._halted = False
        held = self._held
        if held:
            self._held = None
            self._reactor.call_soon(self._deliver_held, held)
        self._add_reader()

    def _deliver_held(self, held: list[tuple[bytes, Any]]) -> None:
        if self._closing:
            return
        if not self._want_reading:  # paused again before we ran
            self._held = held + (self._held or [])
            return
        self._deliver(held)

    def is_reading(self) -> bool:
        return self._want_reading and not self._closing

    # ------------------------------------------------------------------ send
    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send one datagram to ``addr`` (``None`` on a connected endpoint)."""
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"data must be bytes, bytearray or memoryview, "
                                f"not {type(data).__name__}")
            data = bytes(data)  # the caller may reuse its buffer once we return
        if self._connected:
            if addr is not None and addr != self._address and \
                    tuple(addr[:2]) != tuple(self._address[:2]):
                raise ValueError(f"invalid address: must be None or {self._address}")
            addr = None
        elif type(addr) is not tuple:
            if addr is None:
                raise ValueError("this endpoint is not connected: sendto() needs an address")
            if not (self._unix and isinstance(addr, (str, bytes))):
                raise TypeError(f"addr must be a (host, port) tuple, not {type(addr).__name__}")
        if self._closing:
            self._dropped_out += 1
            return
        if self._corked:
            # inside a receive batch: queue; the batch leaves with one sendmmsg
            size = len(data) + _HEADER_SIZE
            if self._buffer_size + size > self._max_buffer:
                self._dropped_out += 1
                return
            self._queue.append((data, addr))
            self._buffer_size += size
            return
        if self._queue:
            self._enqueue(data, addr)
            return
        try:
            if addr is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except _TRANSIENT:
            self._enqueue(data, addr)
            return
        except OSError as exc:
            if self._errqueue and self._read_errqueue():
                # A pending ICMP error for some other peer failed this send
                # (the kernel reports sk_err on the next call): it is
                # reported now; this datagram goes out through the queue.
                self._enqueue(data, addr)
                return
            self._send_failed(exc, addr)
            return
        self._direct_sends += 1
        self._datagrams_out += 1
        self._bytes_out += len(data)

    def _enqueue(self, data: bytes, addr: Any) -> None:
        size = len(data) + _HEADER_SIZE
        if self._buffer_size + size > self._max_buffer:
            self._dropped_out += 1
            return
        self._queue.append((data, addr))
        self._buffer_size += size
        if not self._corked:
            if not self._writing:
                self._reactor.add_writer(self._fileno, self._flush)
                self._writing = True
            self._maybe_pause_protocol()

    def _flush(self) -> None:
        """Send as much of the queue as the kernel takes, one sendmmsg per batch."""
        queue = self._queue
        tx = self._tx
        # Every round sends something, drops one datagram or (a bounded number
        # of times) reads ICMP errors that failed the send: bounded.
        retries = 8
        while queue:
            try:
                n = tx.send(queue)
            except OSError as exc:
                if self._errqueue and retries and self._read_errqueue():
                    retries -= 1  # someone else's ICMP error: retry this datagram
                    continue
                data, addr = queue.popleft()
                self._buffer_size -= len(data) + _HEADER_SIZE
                self._send_failed(exc, addr)
                continue
            if n == WOULD_BLOCK:
                break
            if n == SLOW_PATH:
                # A name or unusual address: the socket module resolves it.
                data, addr = queue[0]
                try:
                    self._sock.sendto(data, addr)
                except _TRANSIENT:
                    break
                except (OSError, OverflowError, TypeError, ValueError) as exc:
                    queue.popleft()
                    self._buffer_size -= len(data) + _HEADER_SIZE
                    self._send_failed(exc, addr)
                    continue
                queue.popleft()
                self._buffer_size -= len(data) + _HEADER_SIZE
                self._datagrams_out += 1
                self._bytes_out += len(data)
                continue
            self._datagrams_out += n
            self._bytes_out += tx.nbytes
            self._buffer_size -= tx.nbytes + n * _HEADER_SIZE
            if n == len(queue):
                queue.clear()
            else:
                popleft = queue.popleft
                for _ in range(n):
                    popleft()
        if queue:
            if not self._writing and not self._lost:
                self._reactor.add_writer(self._fileno, self._flush)
                self._writing = True
            self._maybe_pause_protocol()
            return
        if self._writing:
            self._reactor.remove_writer(self._fileno)
            self._writing = False
        self._maybe_resume_protocol()
        if self._closing:
            self._schedule_lost(None)

    def get_write_buffer_size(self) -> int:
        """Bytes queued (payload + 8 per datagram, as asyncio counts them)."""
        return self._buffer_size

    # ---------------------------------------------------------------- errors
    def _send_failed(self, exc: BaseException, addr: Any) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EMSGSIZE:
            self._oversized_out += 1
        self._report(exc)

    def _report_truncated(self, addrs: list[Any]) -> None:
        self._truncated_in += len(addrs)
        for addr in addrs:
            self._report(OSError(
                errno.EMSGSIZE,
                f"datagram from {addr!r} is longer than max_datagram_size="
                f"{self._max_datagram_size} bytes; dropped"))

    def _report(self, exc: BaseException) -> None:
        self._errors += 1
        try:
            self._protocol.error_received(exc)
        except Exception as cb_exc:
            self._callback_error(cb_exc, "error_received")

    def _callback_error(self, exc: BaseException, where: str) -> None:
        self._reactor.call_exception_handler({
            "message": f"exception in {type(self._protocol).__name__}.{where}()",
            "exception": exc,
            "transport": self,
            "protocol": self._protocol,
        })

    # ---------------------------------------------------------- information
    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of this endpoint's counters.

        datagrams/bytes in and out; ``recv_calls``/``send_calls``: system calls
        (with batching, ``datagrams_in / recv_calls`` is the mean batch);
        ``max_recv_batch``; ``dropped_out``: datagrams we dropped because the
        queue was full or the endpoint closing; ``truncated_in``; ``oversized_out``
        (EMSGSIZE); ``unreachable``: ICMP errors read with ``report_unreachable``;
        ``errors``: everything reported to ``error_received``; ``kernel_drops``:
        datagrams the kernel dropped because the receive queue was full
        (Linux, from /proc/net/udp; -1 elsewhere).
        """
        return {
            "datagrams_in": self._datagrams_in,
            "bytes_in": self._bytes_in,
            "datagrams_out": self._datagrams_out,
            "bytes_out": self._bytes_out,
            "recv_calls": self._rx.syscalls,
            "send_calls": self._tx.syscalls + self._direct_sends,
            "max_recv_batch": self._max_batch,
            "queued": len(self._queue),
            "dropped_out": self._dropped_out,
            "truncated_in": self._truncated_in,
            "oversized_out": self._oversized_out,
            "unreachable": self._unreachable,
            "errors": self._errors,
            "kernel_drops": self._kernel_drops(),
        }

    def _kernel_drops(self) -> int:
        """Datagrams the kernel dropped for this socket (receive queue full),
        from /proc/net/udp{,6}; -1 where that is not available."""
        if self._lost or self._sock.family not in (socket.AF_INET, socket.AF_INET6):
            return -1
        try:
            inode = str(os.fstat(self._fileno).st_ino)
        except OSError:
            return -1
        table = "/proc/net/udp6" if self._sock.family == socket.AF_INET6 else "/proc/net/udp"
        try:
            with open(table) as f:
                next(f, None)  # header
                for line in f:
                    fields = line.split()
                    # ... uid timeout inode ref pointer drops
                    if len(fields) >= 13 and fields[9] == inode:
                        return int(fields[-1])
        except (OSError, ValueError):
            pass
        return -1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``socket``, ``sockname``, ``peername``; ``rcvbuf``/``sndbuf``: the
        buffer sizes the kernel granted (Linux doubles a request and caps it
        at net.core.rmem_max/wmem_max)."""
        if name in ("rcvbuf", "sndbuf") and not self._lost:
            opt = socket.SO_RCVBUF if name == "rcvbuf" else socket.SO_SNDBUF
            return self._sock.getsockopt(socket.SOL_SOCKET, opt)
        return self._extra.get(name, default)

    # ------------------------------------------------------------- multicast
    def _membership(self, group: str, interface: str | int | None, join: bool) -> None:
        try:
            ip = ipaddress.ip_address(group)
        except ValueError:
            raise ValueError(f"{group!r} is not an IP address") from None
        if not ip.is_multicast:
            raise ValueError(f"{group} is not a multicast address")
        if ip.version == 4:
            if self._sock.family != socket.AF_INET:
                raise ValueError(f"cannot join IPv4 group {group} on an IPv6 endpoint")
            if interface is None:
                iface = "0.0.0.0"
            elif isinstance(interface, int):
                raise ValueError("IPv4 multicast takes the interface's address, not an index")
            else:
                iface = interface
            mreq = ip.packed + socket.inet_aton(iface)
            opt = socket.IP_ADD_MEMBERSHIP if join else socket.IP_DROP_MEMBERSHIP
            self._sock.setsockopt(socket.IPPROTO_IP, opt, mreq)
        else:
            if self._sock.family != socket.AF_INET6:
                raise ValueError(f"cannot join IPv6 group {group} on an IPv4 endpoint")
            index = _interface_index(interface)
            mreq6 = ip.packed + struct.pack("@I", index)
            opt = socket.IPV6_JOIN_GROUP if join else socket.IPV6_LEAVE_GROUP
            self._sock.setsockopt(socket.IPPROTO_IPV6, opt, mreq6)

    def join_group(self, group: str, interface: str | int | None = None) -> None:
        """Receive multicast group ``group`` (IPv4: on the interface with
        address ``interface``; IPv6: interface name or index; None: the
        kernel's choice)."""
        self._membership(group, interface, True)

    def leave_group(self, group: str, interface: str | int | None = None) -> None:
        self._membership(group, interface, False)

    def set_multicast_ttl(self, ttl: int) -> None:
        """Hops outgoing multicast may travel (IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS)."""
        if not 0 <= ttl <= 255:
            raise ValueError(f"ttl must be in 0..255, got {ttl}")
        if self._sock.family == socket.AF_INET6:
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
        else:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)

    def set_multicast_loopback(self, enabled: bool) -> None:
        """Whether our own multicast comes back to sockets on this host."""
        if self._sock.family == socket.AF_INET6:
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(enabled))
        else:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(enabled))

    def set_multicast_interface(self, interface: str | int) -> None:
        """Send multicast out of ``interface`` (IPv4: its address; IPv6: name or index)."""
        if self._sock.family == socket.AF_INET6:
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                                  _interface_index(interface))
        else:
            if not isinstance(interface, str):
                raise ValueError("IPv4 multicast takes the interface's address, not an index")
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                  socket.inet_aton(interface))

    def __repr__(self) -> str:
        state = "closed" if self._lost else ("closing" if self._closing else "open")
        return (f"<UDPTransport {state} fd={self._fileno} sockname={self._extra['sockname']} "
                f"peername={self._address} {self.implementation}>")


def _interface_index(interface: str | int | None) -> int:
    if interface is None:
        return 0
    if isinstance(interface, int):
        return interface
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise ValueError(f"no network interface named {interface!r}") from None


def _resolve(addr: Any, family: int, passive: bool) -> list[tuple[int, Any]]:
    if not isinstance(addr, tuple) or len(addr) < 2:
        raise TypeError(f"address must be a (host, port) tuple, got {addr!r}")
    host, port = addr[0], addr[1]
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, socket.IPPROTO_UDP,
                                   socket.AI_PASSIVE if passive else 0)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"cannot resolve {host!r}: {exc.strerror}") from None
    out: list[tuple[int, Any]] = []
    for fam, _, _, _, resolved in infos:
        sockaddr: Any = resolved
        if fam == socket.AF_INET6 and len(addr) == 4:
            sockaddr = (resolved[0], resolved[1], addr[2], addr[3])
        if (fam, sockaddr) not in out:
            out.append((fam, sockaddr))
    return out


def create_udp_endpoint(
    reactor: Any,
    protocol_factory: Callable[[], Any],
    local_addr: tuple[Any, ...] | None = None,
    remote_addr: tuple[Any, ...] | None = None,
    *,
    family: int = 0,
    reuse_address: bool = False,
    reuse_port: bool = False,
    allow_broadcast: bool = False,
    rcvbuf: int | None = None,
    sndbuf: int | None = None,
    batch: int = 64,
    max_datagram_size: int = _MAX_DATAGRAM,
    max_write_buffer_size: int = 1024 * 1024,
    report_unreachable: bool = False,
    sock: socket.socket | None = None,
) -> tuple[UDPTransport, Any]:
    """Open a UDP endpoint on ``reactor``; returns ``(transport, protocol)``.

    ``local_addr`` binds (a server, or a client with a fixed port);
    ``remote_addr`` connects (``sendto(data)`` without an address, only that
    peer is received, ICMP errors are reported). ``batch``: datagrams moved
    per system call; ``max_datagram_size``: longer datagrams are dropped and
    reported as truncated. ``rcvbuf``/``sndbuf`` request kernel buffer sizes;
    ``get_extra_info('rcvbuf')`` tells what was granted. ``sock``: an existing
    datagram socket to adopt (the other address options must then be unset).
    ``report_unreachable`` (Linux): ICMP errors reach an *unconnected* endpoint
    too, as ``error_received(exc)`` with ``exc.address`` the peer concerned
    (IP_RECVERR); a connected endpoint always gets them.
    ``connection_made`` runs on the next loop turn, as in asyncio.
    """
    if not isinstance(batch, int) or not 1 <= batch <= _MAX_BATCH:
        raise ValueError(f"batch must be an integer in 1..{_MAX_BATCH}, got {batch!r}")
    if not isinstance(max_datagram_size, int) or not 1 <= max_datagram_size <= _MAX_DATAGRAM:
        raise ValueError(f"max_datagram_size must be in 1..{_MAX_DATAGRAM}, got {max_datagram_size!r}")
    if not isinstance(max_write_buffer_size, int) or max_write_buffer_size < 0:
        raise ValueError(f"max_write_buffer_size must be >= 0, got {max_write_buffer_size!r}")
    for name, value in (("rcvbuf", rcvbuf), ("sndbuf", sndbuf)):
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if report_unreachable and not sys.platform.startswith("linux"):
        raise ValueError("report_unreachable needs Linux (IP_RECVERR)")
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port is not supported on this platform")

    if sock is not None:
        if local_addr is not None or remote_addr is not None or family:
            raise ValueError("sock cannot be combined with local_addr, remote_addr or family")
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"sock must be a datagram socket, got {sock!r}")
        sock.setblocking(False)
        _set_options(sock, reuse_address, reuse_port, allow_broadcast, rcvbuf, sndbuf)
        try:
            peer, connected = sock.getpeername(), True
        except OSError:
            peer, connected = None, False
        if report_unreachable:
            _set_recverr(sock)
        return _make(reactor, protocol_factory, sock, peer, batch, max_datagram_size,
                     max_write_buffer_size, connected, report_unreachable)

    if local_addr is None and remote_addr is None and family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError("give local_addr, remote_addr, or family=AF_INET/AF_INET6")

    remotes = _resolve(remote_addr, family, False) if remote_addr is not None else []
    locals_ = _resolve(local_addr, family, True) if local_addr is not None else []
    # Pair local and remote addresses of one family, remote order first.
    candidates: list[tuple[int, Any, Any]] = []
    if remotes:
        for fam, raddr in remotes:
            if locals_:
                candidates.extend((fam, laddr, raddr) for lfam, laddr in locals_ if lfam == fam)
            else:
                candidates.append((fam, None, raddr))
        if not candidates:
            raise ValueError(f"local_addr {local_addr!r} and remote_addr {remote_addr!r} "
                             f"have no address family in common")
    elif locals_:
        candidates = [(fam, laddr, None) for fam, laddr in locals_]
    else:
        candidates = [(family, None, None)]

    errors: list[OSError] = []
    for fam, laddr, raddr in candidates:
        s = socket.socket(fam, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            s.setblocking(False)
            _set_options(s, reuse_address, reuse_port, allow_broadcast, rcvbuf, sndbuf)
            if report_unreachable:
                _set_recverr(s)
            if laddr is not None:
                s.bind(laddr)
            if raddr is not None:
                s.connect(raddr)
                raddr = s.getpeername()
        except OSError as exc:
            s.close()
            errors.append(exc)
            continue
        except BaseException:
            s.close()
            raise
        return _make(reactor, protocol_factory, s, raddr, batch, max_datagram_size,
                     max_write_buffer_size, raddr is not None, report_unreachable)
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"cannot open a UDP endpoint: {'; '.join(str(e) for e in errors)}")


def _set_options(sock: socket.socket, reuse_address: bool, reuse_port: bool,
                 allow_broadcast: bool, rcvbuf: int | None, sndbuf: int | None) -> None:
    if reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if allow_broadcast:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)


def _set_recverr(sock: socket.socket) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
        try:  # IPv4-mapped peers of a dual-stack socket
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        except OSError:
            pass
    elif sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
    else:
        raise ValueError("report_unreachable needs an IPv4 or IPv6 socket")


def _make(reactor: Any, protocol_factory: Callable[[], Any], sock: socket.socket, peer: Any,
          batch: int, max_datagram_size: int, max_write_buffer_size: int, connected: bool,
          report_unreachable: bool) -> tuple[UDPTransport, Any]:
    try:
        protocol = protocol_factory()
        transport = UDPTransport(reactor, sock, protocol, peer, connected=connected, batch=batch,
                                 max_datagram_size=max_datagram_size,
                                 max_write_buffer_size=max_write_buffer_size,
                                 report_unreachable=report_unreachable)
    except BaseException:
        sock.close()
        raise
    return transport, protocol
