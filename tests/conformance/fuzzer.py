"""A minimal RFC 6455 fuzzing client over a raw socket.

This is a deliberately independent second opinion on fastsock's codec: it
builds and parses frames itself (nothing is imported from fastsock), sends
exactly the octets a case asks for - including invalid ones, chopped into
arbitrary pieces with pauses - and records what the server does, the way the
Autobahn|Testsuite fuzzing client does:

* ``events``: what the server sent, in order: ``("message", payload,
  is_binary)``, ``("pong", payload)``, ``("ping", payload)``, plus
  ``("timeout", label)`` markers a case adds when the connection was still
  open at the end of a pause (that is how "fail fast" is observed);
* the close: who sent the first close frame, the server's close code and
  reason, whether the TCP connection was closed by the server (EOF or reset)
  or dropped by us after a deadline, and whether the close was clean.

A reader thread parses what the server sends while the main thread sends,
so a server that echoes while we are still writing cannot deadlock us.

With ``offers`` the client negotiates permessage-deflate (RFC 7692, see
deflate.py): it checks the server's answer strictly, compresses what it is
told to with Python's zlib and inflates the server's compressed messages.
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from .deflate import (Agreement, Deflater, Inflater, NegotiationError, Offer, negotiate,
                      offers_header)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SEND_CHUNK = 256 * 1024
_RECV_CHUNK = 1024 * 1024
_IO_TIMEOUT = 30.0

Event = tuple  # ("message", bytes, bool) | ("pong", bytes) | ("ping", bytes) | ("timeout", str)


class HandshakeFailed(Exception):
    """The server did not answer the upgrade request with a valid 101."""


# --- frames ----------------------------------------------------------------

def mask_payload(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 section 5.3)."""
    n = len(data)
    if n == 0:
        return b""
    # One big-integer XOR is far faster in pure Python than a byte loop and
    # keeps 16 MiB messages cheap to build.
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def build_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                mask: bool = True, key: bytes | None = None) -> bytes:
    """One frame as a client sends it. ``rsv`` is the 3-bit RSV value (0..7),
    as Autobahn counts it (RSV1 is 4)."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return header + payload
    key = key if key is not None else os.urandom(4)
    return header + key + mask_payload(payload, key)


def close_payload(code: int | None = None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


def fragments(opcode: int, payload: bytes, size: int) -> bytes:
    """``payload`` as one message split into frames of ``size`` octets."""
    if size <= 0 or len(payload) <= size:
        return build_frame(opcode, payload)
    parts = [payload[i:i + size] for i in range(0, len(payload), size)]
    out = [build_frame(opcode if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
           for i, p in enumerate(parts)]
    return b"".join(out)


def valid_close_code(code: int) -> bool:
    """Codes a peer may put on the wire (RFC 6455 7.4 and the IANA registry)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) \
        or 3000 <= code <= 4999


def compressed_frames(opcode: int, payload: bytes, deflater: Deflater, frag: int = 0) -> bytes:
    """One message compressed (RFC 7692 7.2.1): RSV1 on its first frame only;
    ``frag`` > 0 splits the compressed payload into frames of that size, as
    Autobahn's autoFragmentSize does."""
    data = deflater.compress(payload)
    if frag <= 0 or len(data) <= frag:
        return build_frame(opcode, data, rsv=4)
    parts = [data[i:i + frag] for i in range(0, len(data), frag)]
    return b"".join(build_frame(opcode if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1),
                                rsv=4 if i == 0 else 0)
                    for i, p in enumerate(parts))


def digest(payload: bytes) -> bytes:
    """What a digest-recording client keeps of a message: length and SHA-1."""
    return b"%d:sha1:%s" % (len(payload), hashlib.sha1(payload).hexdigest().encode())


class ServerViolation(Exception):
    """The server itself broke RFC 6455 (masked frame, RSV bits, ...)."""


class ServerFrameReader:
    """Incremental parser for what a server sends: unmasked frames, messages
    reassembled from fragments, control frames interleaved."""

    def __init__(self, inflater: Inflater | None = None) -> None:
        self._inflater = inflater
        self._msg_compressed = False
        self.compressed_messages = 0
        self._buf = bytearray()
        self._msg_opcode: int | None = None
        self._msg_parts: list[bytes] = []
        self._need = 2

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Returns completed (opcode, payload) items: whole messages for
        text/binary (opcode 1/2), single frames for control opcodes."""
        self._buf += data
        out: list[tuple[int, bytes]] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= self._need:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            hlen = 2
            if n == 126:
                hlen = 4
            elif n == 127:
                hlen = 10
            if b1 & 0x80:
                raise ServerViolation("server sent a masked frame (RFC 6455 5.1)")
            if len(buf) - pos < hlen:
                self._need = hlen
                break
            if n == 126:
                n = struct.unpack_from("!H", buf, pos + 2)[0]
            elif n == 127:
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
            if len(buf) - pos < hlen + n:
                self._need = hlen + n
                break
            payload = bytes(buf[pos + hlen:pos + hlen + n])
            pos += hlen + n
            self._need = 2
            out.extend(self._frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload))
        if pos:
            del buf[:pos]
        return out

    def _frame(self, fin: bool, rsv: int, opcode: int, payload: bytes) -> list[tuple[int, bytes]]:
        if rsv & 4 and self._inflater is not None:
            # RFC 7692 6.1: RSV1 marks the first frame of a compressed message
            if opcode >= 8:
                raise ServerViolation("server set RSV1 on a control frame")
            if opcode == OP_CONT:
                raise ServerViolation("server set RSV1 on a continuation frame")
            rsv &= 3
            compressed = True
        else:
            compressed = False
        if rsv:
            raise ServerViolation(f"server sent RSV bits {rsv} without a negotiated extension")
        if opcode >= 8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise ServerViolation(f"server sent reserved control opcode {opcode}")
            if not fin or len(payload) > 125:
                raise ServerViolation("server sent a fragmented or oversized control frame")
            return [(opcode, payload)]
        if opcode == OP_CONT:
            if self._msg_opcode is None:
                raise ServerViolation("server sent a continuation frame with no message started")
            self._msg_parts.append(payload)
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._msg_opcode is not None:
                raise ServerViolation("server started a new message inside a fragmented one")
            self._msg_opcode = opcode
            self._msg_compressed = compressed
            self._msg_parts = [payload]
        else:
            raise ServerViolation(f"server sent reserved data opcode {opcode}")
        if not fin:
            return []
        opcode, self._msg_opcode = self._msg_opcode, None
        message = b"".join(self._msg_parts)
        self._msg_parts = []
        if self._msg_compressed:
            assert self._inflater is not None
            self.compressed_messages += 1
            try:
                message = self._inflater.decompress(message)
            except zlib.error as exc:
                raise ServerViolation(f"server sent a compressed message that does not inflate "
                                      f"under the agreed parameters: {exc}") from None
        if opcode == OP_TEXT:
            try:
                message.decode("utf-8")
            except UnicodeDecodeError:
                raise ServerViolation("server sent a text message that is not UTF-8") from None
        return [(opcode, message)]


# --- connection ------------------------------------------------------------

@dataclass
class CloseInfo:
    """How the connection ended, as the judge needs it."""
    closed_by_me: bool | None = None     # who sent the first close frame (None: nobody)
    server_code: int | None = None       # code in the server's close frame (None: empty/none)
    server_reason: bytes = b""
    server_sent_close: bool = False
    we_sent_close: bool = False
    tcp_closed_by_server: bool = False   # EOF or reset from the server
    tcp_reset: bool = False
    dropped_by_me: bool = False          # we gave up waiting and closed the socket
    violation: str | None = None         # the server broke the protocol

    @property
    def clean(self) -> bool:
        """Both close frames exchanged and the server ended the TCP
        connection (EOF, or a reset when our late frames hit a closed socket)."""
        return self.server_sent_close and self.we_sent_close and self.tcp_closed_by_server


@dataclass
class FuzzingClient:
    """One raw WebSocket connection driven by a case script."""
    url: str
    connect_timeout: float = 10.0
    rcvbuf: int | None = None  # SO_RCVBUF: small values make the server's writes back up
    offers: list[Offer] | None = None  # permessage-deflate offers (None: offer nothing)
    digest_messages: bool = False  # record messages as digest(payload) (big echo runs)
    agreement: Agreement | None = None  # set by connect(): the negotiated deflate, if any
    events: list = field(default_factory=list)
    close: CloseInfo = field(default_factory=CloseInfo)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._ended = False  # TCP connection is over (either side)
        self._may_read = threading.Event()  # cleared: the reader stops calling recv()
        self._may_read.set()
        self.deflater: Deflater | None = None

    # -- setup --
    def connect(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "ws":
            raise ValueError(f"only ws:// URLs are supported, got {self.url!r}")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        host_header = f"[{host}]" if ":" in host else host
        # The header set (and spelling) of Autobahn's fuzzing client.
        request = (f"GET {path} HTTP/1.1\r\nUser-Agent: fastsock-conformance-fuzzer\r\n"
                   f"Host: {host_header}:{port}\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
                   "Pragma: no-cache\r\nCache-Control: no-cache\r\n"
                   f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
                   + (f"Sec-WebSocket-Extensions: {offers_header(self.offers)}\r\n"
                      if self.offers else "") + "\r\n").encode()
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise HandshakeFailed(f"connection closed during handshake after {head!r}")
            head += chunk
            if len(head) > 65536:
                sock.close()
                raise HandshakeFailed("handshake response headers too large")
        head, rest = head.split(b"\r\n\r\n", 1)
        self.agreement = self._check_response(head, key, sock, self.offers)
        # A bound on every blocking call: a server that stops reading cannot
        # hang the suite; the reader thread simply polls again.
        sock.settimeout(_IO_TIMEOUT)
        self._sock = sock
        self._parser = ServerFrameReader(Inflater(self.agreement) if self.agreement else None)
        self.deflater = Deflater(self.agreement) if self.agreement else None
        if rest:
            self._on_data(rest)
        self._reader = threading.Thread(target=self._read_loop, name="fuzzer-reader", daemon=True)
        self._reader.start()

    @staticmethod
    def _check_response(head: bytes, key: bytes, sock: socket.socket,
                        offers: list[Offer] | None) -> Agreement | None:
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        extensions: list[str] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "sec-websocket-extensions":
                extensions.append(value.strip())
        expected = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        problem = None
        if len(status) < 2 or status[1] != "101":
            problem = f"status line {lines[0]!r}"
        elif headers.get("upgrade", "").lower() != "websocket":
            problem = f"Upgrade header {headers.get('upgrade')!r}"
        elif "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            problem = f"Connection header {headers.get('connection')!r}"
        elif headers.get("sec-websocket-accept") != expected:
            problem = f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r} != {expected!r}"
        elif extensions and not offers:
            problem = "server accepted an extension that was not offered"
        agreement = None
        if not problem and extensions:
            try:
                agreement = negotiate(offers or [], ", ".join(extensions))
            except NegotiationError as exc:
                problem = f"invalid permessage-deflate answer: {exc}"
        if problem:
            sock.close()
            raise HandshakeFailed(problem)
        return agreement

    # -- receiving (reader thread) --
    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            while not self._may_read.wait(0.1):
                if self._ended:
                    return
            try:
                data = sock.recv(_RECV_CHUNK)
            except TimeoutError:
                if self._ended:
                    return
                continue
            except ConnectionResetError:
                self._end(reset=True)
                return
            except OSError:
                # our own shutdown/close of the socket after a deadline
                self._end(reset=False, by_me=True)
                return
            if not data:
                self._end(reset=False)
                return
            self._on_data(data)

    def _on_data(self, data: bytes) -> None:
        if self.close.violation:
            return
        try:
            items = self._parser.feed(data)
        except ServerViolation as exc:
            with self._cond:
                self.close.violation = str(exc)
                self._cond.notify_all()
            return
        reply = None
        with self._cond:
            for opcode, payload in items:
                reply = self._on_item(opcode, payload) or reply
            self._cond.notify_all()
        if reply is not None:
            # sent outside the condition: the main thread may hold the send
            # lock while the server is not reading
            self._raw_send(reply, ignore_errors=True)

    def _on_item(self, opcode: int, payload: bytes) -> bytes | None:
        """Records one item; returns a close frame to send back, if any."""
        close = self.close
        if close.server_sent_close:
            close.violation = f"server sent opcode {opcode} after its close frame"
            return None
        if opcode in (OP_TEXT, OP_BINARY):
            if self.digest_messages:
                payload = digest(payload)
            self.events.append(("message", payload, opcode == OP_BINARY))
        elif opcode == OP_PONG:
            self.events.append(("pong", payload))
        elif opcode == OP_PING:
            self.events.append(("ping", payload))
        elif opcode == OP_CLOSE:
            close.server_sent_close = True
            if close.closed_by_me is None:
                close.closed_by_me = False
            if len(payload) == 1:
                close.violation = "server sent a close frame with a 1-byte payload"
            elif len(payload) >= 2:
                close.server_code = struct.unpack("!H", payload[:2])[0]
                close.server_reason = payload[2:]
                if not valid_close_code(close.server_code):
                    close.violation = f"server sent invalid close code {close.server_code}"
                try:
                    close.server_reason.decode("utf-8")
                except UnicodeDecodeError:
                    close.violation = "server sent a close reason that is not UTF-8"
            if not close.we_sent_close:
                # Reply as a well-behaved client: echo the code, then wait for
                # the server to close the TCP connection.
                reply = close_payload(close.server_code) if close.server_code is not None else b""
                close.we_sent_close = True
                return build_frame(OP_CLOSE, reply)
        return None

    def _end(self, *, reset: bool, by_me: bool = False) -> None:
        with self._cond:
            if not self._ended:
                self._ended = True
                if by_me:
                    self.close.dropped_by_me = True
                else:
                    self.close.tcp_closed_by_server = True
                    self.close.tcp_reset = reset
            self._cond.notify_all()

    # -- state --
    @property
    def server_closing(self) -> bool:
        """The server has sent a close frame, dropped the connection or broken
        the protocol; Autobahn's "state is no longer OPEN"."""
        c = self.close
        return c.server_sent_close or self._ended or c.violation is not None

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # -- sending (main thread) --
    def _raw_send(self, data: bytes, *, ignore_errors: bool = False) -> bool:
        assert self._sock is not None
        try:
            with self._send_lock:
                self._sock.sendall(data)
            return True
        except OSError:
            if not ignore_errors:
                self._end(reset=True)
            return False

    def send(self, data: bytes, *, chop: int = 0, delay: float = 0.0) -> None:
        """Send ``data`` as is: in one go, or in ``chop``-octet pieces with
        ``delay`` seconds between them. Stops early once the server closes."""
        size = chop if chop > 0 else _SEND_CHUNK
        view = memoryview(data)
        for i in range(0, len(data), size):
            if self.server_closing:
                return
            if not self._raw_send(view[i:i + size]):
                return
            if delay and chop:
                time.sleep(delay)

    def send_close(self, code: int | None = None, reason: bytes = b"", *,
                   raw_payload: bytes | None = None, counts_as_close: bool = True) -> None:
        """Send a close frame. ``counts_as_close=False`` for a deliberately
        malformed frame that a real client would not call a close."""
        if self.server_closing and self.close.server_sent_close:
            return
        payload = raw_payload if raw_payload is not None else close_payload(code, reason)
        with self._cond:
            if counts_as_close and self.close.closed_by_me is None:
                self.close.closed_by_me = True
            self.close.we_sent_close = self.close.we_sent_close or counts_as_close
        self._raw_send(build_frame(OP_CLOSE, payload))

    def hold_reading(self, hold: bool = True) -> None:
        """Stop (or resume) reading, so the server's writes back up into its
        socket buffers. A recv() already in progress still completes."""
        if hold:
            self._may_read.clear()
        else:
            self._may_read.set()

    def add_event(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)

    def message_count(self) -> int:
        with self._cond:
            return sum(1 for e in self.events if e[0] == "message")

    def finish(self, timeout: float) -> None:
        """Wait for the server to end the TCP connection; drop it ourselves
        after ``timeout`` seconds (Autobahn's killAfter)."""
        if not self.wait_until(lambda: self._ended or self.close.violation is not None, timeout):
            self.drop()

    def drop(self) -> None:
        sock = self._sock
        if sock is None:
            return
        with self._cond:
            if not self._ended:
                self._ended = True
                self.close.dropped_by_me = True
        self._may_read.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._reader is not None:
            self._reader.join(5.0)
        sock.close()

    def snapshot(self) -> tuple[list, CloseInfo]:
        with self._cond:
            return list(self.events), self.close

    def __enter__(self) -> "FuzzingClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.drop()
