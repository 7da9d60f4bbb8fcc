"""A deliberately imperfect echo server, to prove the judge can fail.

It is correct except for the flaws it is told to have, each one a way real
servers lose points in Autobahn:

* ``late_utf8``: validates the UTF-8 of a text message only once the whole
  message is in (not fail-fast: 6.4.x must come out NON-STRICT);
* ``error_first``: on a protocol error, fails the connection before echoing
  the valid frames that arrived in the same read (3.2, 4.1.3: NON-STRICT);
* ``keep_tcp``: never closes the TCP connection after the close handshake
  (every case that needs a clean close must FAIL).

``deflate`` accepts permessage-deflate (the first offer) and compresses its
echoes; ``deflate="ok"`` does it right, the others are flaws a strict
client must catch (cases 12/13):

* ``"takeover"``: agrees to ``server_no_context_takeover`` but keeps its
  compressor's context between messages;
* ``"window"``: agrees to the ``server_max_window_bits`` asked for but
  compresses with a 32 KiB window;
* ``"rsv1_cont"``: sends each echo in two frames with RSV1 on both;
* ``"answer"``: answers ``client_max_window_bits`` without a value.

``linger=True`` is the opposite of a flaw: after the close handshake it
half-closes (SHUT_WR) and reads until the client's EOF before closing, so
late client frames cannot make the kernel reset the connection and discard
output still in the socket buffer.

One thread per connection, blocking sockets: simple enough to be obviously
right apart from those flaws.
"""
from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import zlib

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class LaxServer:
    def __init__(self, *, late_utf8: bool = False, error_first: bool = False,
                 keep_tcp: bool = False, linger: bool = False, deflate: str | None = None) -> None:
        self.late_utf8, self.error_first, self.keep_tcp = late_utf8, error_first, keep_tcp
        self.deflate = deflate
        self.linger = linger
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "ws://127.0.0.1:%d/" % self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def close(self) -> None:
        self._listener.close()
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> "LaxServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one connection --
    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            self._session(conn)
        except OSError:
            pass
        finally:
            if not self.keep_tcp:
                conn.close()

    def _session(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        offer = next((line.split(b":", 1)[1].split(b",")[0].decode() for line in head.split(b"\r\n")
                      if line.lower().startswith(b"sec-websocket-extensions:")), None)
        deflater = inflater = None
        answer = b""
        if self.deflate and offer and offer.strip().startswith("permessage-deflate"):
            params = dict((p.strip().partition("=")[0], p.strip().partition("=")[2])
                          for p in offer.split(";")[1:])
            reply = ["permessage-deflate"]
            snct = "server_no_context_takeover" in params
            bits = int(params.get("server_max_window_bits") or 15)
            if snct:
                reply.append("server_no_context_takeover")
            if "server_max_window_bits" in params:
                reply.append(f"server_max_window_bits={bits}")
            if self.deflate == "answer":
                reply.append("client_max_window_bits")
            answer = b"Sec-WebSocket-Extensions: " + "; ".join(reply).encode() + b"\r\n"
            wbits = 15 if self.deflate == "window" else max(bits, 9)
            reset = snct and self.deflate != "takeover"
            deflater = _Compressor(wbits, reset, self.deflate == "rsv1_cont")
            inflater = zlib.decompressobj(-15)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
                     + answer + b"\r\n")
        compressed = False
        buf = bytearray(buf)
        msg_op, parts = None, []
        while True:
            out: list[bytes] = []
            error: int | None = None
            while error is None:
                parsed = _parse(buf)
                if parsed is None:
                    break
                fin, rsv, op, payload, used = parsed
                del buf[:used]
                if rsv == 4 and inflater is not None and op in (1, 2):
                    compressed, rsv = True, 0
                elif op in (1, 2):
                    compressed = False
                if rsv or op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
                    error = 1002
                elif op >= 8 and (not fin or len(payload) > 125):
                    error = 1002
                elif op == 8:
                    out.append(_frame(8, payload[:2]))
                    conn.sendall(b"".join(out))
                    if self.linger:
                        conn.shutdown(socket.SHUT_WR)
                        while conn.recv(65536):
                            pass
                    return
                elif op == 9:
                    out.append(_frame(10, payload))
                elif op == 10:
                    pass
                elif op == 0 and msg_op is None or op in (1, 2) and msg_op is not None:
                    error = 1002
                else:
                    if op in (1, 2):
                        msg_op, parts = op, []
                    parts.append(payload)
                    if compressed:
                        if not fin:
                            continue
                        parts = [inflater.decompress(b"".join(parts) + b"\x00\x00\xff\xff")]
                    if msg_op == 1 and not self.late_utf8 and not _utf8_prefix_ok(b"".join(parts), fin):
                        error = 1007
                    elif fin:
                        message = b"".join(parts)
                        if msg_op == 1 and not _utf8_prefix_ok(message, True):
                            error = 1007
                        elif deflater is not None:
                            out.append(deflater.frames(msg_op, message))
                        else:
                            out.append(_frame(msg_op, message))
                        msg_op = None
            if error is not None:
                close = _frame(8, struct.pack("!H", error))
                conn.sendall(close if self.error_first else b"".join(out) + close)
                return
            if out:
                conn.sendall(b"".join(out))
            chunk = conn.recv(1 << 20)
            if not chunk:
                return
            buf += chunk


class _Compressor:
    def __init__(self, wbits: int, reset: bool, rsv1_on_both: bool) -> None:
        self.wbits, self.reset, self.rsv1_on_both = wbits, reset, rsv1_on_both
        self.c = zlib.compressobj(6, zlib.DEFLATED, -wbits)

    def frames(self, op: int, message: bytes) -> bytes:
        data = (self.c.compress(message) + self.c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        if self.reset:
            self.c = zlib.compressobj(6, zlib.DEFLATED, -self.wbits)
        if not self.rsv1_on_both or len(data) < 2:
            return _frame(op, data, rsv=4)
        half = len(data) // 2
        return _frame(op, data[:half], rsv=4, fin=False) + _frame(0, data[half:], rsv=4)


def _parse(buf: bytearray):
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, pos = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack_from("!H", buf, 2)[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
    if len(buf) < pos + 4 + n:
        return None
    key = bytes(buf[pos:pos + 4])
    data = bytes(buf[pos + 4:pos + 4 + n])
    stream = (key * (n // 4 + 1))[:n]
    payload = (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little") if n else b""
    return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload, pos + 4 + n


def _frame(op: int, payload: bytes, rsv: int = 0, fin: bool = True) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    if n < 126:
        return struct.pack("!BB", b0, n) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def _utf8_prefix_ok(data: bytes, final: bool) -> bool:
    """Is ``data`` valid UTF-8 (``final``) or a prefix of valid UTF-8?"""
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(data, final)
        return True
    except UnicodeDecodeError:
        return False
