"""permessage-deflate on the wire, from a raw socket: the RSV1 rules, the
inflated-size limit (bombs, one byte over), UTF-8 of inflated text, and the
server's answer to several or malformed offers (101/400)."""
from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
import zlib
from typing import Any, Optional

import pytest

from fastsock.adapters import aio
from fastsock.websocket import WebSocketHandler, WebSocketOptions

LIMIT = 64 * 1024
TIMEOUT = 10.0


class Echo(WebSocketHandler):
    def on_message(self, data: Any) -> None:
        self.send(data)


def deflate(data: bytes, wbits: int = 15) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits, 9)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes(((0x80 if fin else 0) | rsv | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += struct.pack("!BH", 0x80 | 126, n)
    else:
        head += struct.pack("!BQ", 0x80 | 127, n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


class Raw:
    """A blocking raw-socket client of a server running in a thread."""

    def __init__(self, port: int, extensions: Optional[str] = "permessage-deflate") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        head = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n")
        if extensions is not None:
            head += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        end = self.buf.find(b"\r\n\r\n") + 4
        self.head = self.buf[:end].decode("latin-1")
        self.buf = self.buf[end:]

    @property
    def status(self) -> int:
        return int(self.head.split(" ", 2)[1])

    def header(self, name: str) -> Optional[str]:
        for line in self.head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def read_frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                h = 2 + (2 if n == 126 else 8 if n == 127 else 0)
                if len(self.buf) >= h:
                    if n == 126:
                        n = struct.unpack("!H", self.buf[2:4])[0]
                    elif n == 127:
                        n = struct.unpack("!Q", self.buf[2:10])[0]
                    if len(self.buf) >= h + n:
                        b0, payload = self.buf[0], self.buf[h:h + n]
                        self.buf = self.buf[h + n:]
                        return b0, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def close_code(self) -> int:
        while True:
            b0, payload = self.read_frame()
            if b0 & 0x0F == 8:
                return struct.unpack("!H", payload[:2])[0]


@pytest.fixture
def server_port() -> Any:
    """Our server on asyncio in a thread (deflate on by default)."""
    import threading
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        holder["server"] = await aio.serve(
            Echo, "127.0.0.1", 0,
            options=WebSocketOptions(max_message_size=LIMIT, ping_interval=None))
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()),
                                              loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT)
    yield holder["server"].port
    loop.call_soon_threadsafe(holder["server"].close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(TIMEOUT)


def test_compressed_echo_sets_rsv1_on_the_first_frame_only(server_port: int) -> None:
    c = Raw(server_port)
    assert c.status == 101 and c.header("Sec-WebSocket-Extensions") == "permessage-deflate"
    text = ("hello deflate " * 50).encode()
    z = deflate(text)
    # one compressed message in three frames: RSV1 on the first only
    c.sock.sendall(frame(1, z[:3], fin=False, rsv=0x40) + frame(0, z[3:10], fin=False)
                   + frame(0, z[10:]))
    b0, payload = c.read_frame()
    assert b0 == 0xC1                                   # FIN | RSV1 | text
    assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == text
    c.sock.sendall(frame(9, b"ping!"))                  # control frames: never RSV1
    b0, payload = c.read_frame()
    assert b0 == 0x8A and payload == b"ping!"
    c.sock.sendall(frame(1, b"hi"))                     # uncompressed message, same connection
    b0, payload = c.read_frame()
    assert b0 == 0x81 and payload == b"hi"              # under the threshold: plain


@pytest.mark.parametrize("frames,why", [
    (lambda: frame(1, deflate(b"x" * 100), fin=False, rsv=0x40) + frame(0, b"", rsv=0x40),
     "RSV1 on a continuation frame"),
    (lambda: frame(9, b"", rsv=0x40), "RSV1 on a ping"),
    (lambda: frame(8, struct.pack("!H", 1000), rsv=0x40), "RSV1 on a close"),
    (lambda: frame(1, b"x", rsv=0x20), "RSV2, never negotiated"),
])
def test_rsv_violations_close_with_1002(server_port: int, frames: Any, why: str) -> None:
    c = Raw(server_port)
    c.sock.sendall(frames())
    assert c.close_code() == 1002, why


def test_rsv1_without_negotiation_closes_with_1002(server_port: int) -> None:
    c = Raw(server_port, extensions=None)
    assert c.header("Sec-WebSocket-Extensions") is None
    c.sock.sendall(frame(1, deflate(b"hello"), rsv=0x40))
    assert c.close_code() == 1002


def test_bomb_closes_with_1009_quickly(server_port: int) -> None:
    # DEFLATE inflates at most ~1000:1, so a 1 GiB bomb is ~1 MiB on the
    # wire: more than the compressed limit (max_message_size applies to the
    # frames too). Its first 1 KiB alone inflates to ~1 MiB: stopped at the
    # 64 KiB limit while inflating.
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(1024)]
    bomb = (b"".join(parts) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(bomb) < 1100 * 1024
    raw = Raw(server_port)
    started = time.monotonic()
    raw.sock.sendall(frame(2, bomb[:1024], rsv=0x40))
    assert raw.close_code() == 1009
    assert time.monotonic() - started < 2.0
    whole = Raw(server_port)
    whole.sock.sendall(frame(2, bomb, rsv=0x40))
    assert whole.close_code() == 1009


@pytest.mark.parametrize("extra,code", [(0, None), (1, 1009)])
def test_one_byte_over_the_inflated_limit_is_rejected(server_port: int, extra: int,
                                                      code: Optional[int]) -> None:
    data = os.urandom(LIMIT // 4) * 3 + bytes(LIMIT - 3 * (LIMIT // 4) + extra)
    assert len(data) == LIMIT + extra
    z = deflate(data)
    assert len(z) < LIMIT                              # the wire size is under the limit
    raw = Raw(server_port)
    raw.sock.sendall(frame(2, z, rsv=0x40))
    if code is None:
        b0, payload = raw.read_frame()
        assert b0 == 0xC2
        assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == data
    else:
        assert raw.close_code() == code


def test_invalid_utf8_after_inflating_closes_with_1007(server_port: int) -> None:
    raw = Raw(server_port)
    raw.sock.sendall(frame(1, deflate(b"ok " * 100 + b"\xc3\x28" + b"more" * 100), rsv=0x40))
    assert raw.close_code() == 1007


def test_undecodable_deflate_data_closes_with_1007(server_port: int) -> None:
    raw = Raw(server_port)
    raw.sock.sendall(frame(2, b"\xff\xff\xff\xff\xff", rsv=0x40))
    assert raw.close_code() == 1007


def test_several_offers_first_acceptable_is_taken(server_port: int) -> None:
    c = Raw(server_port, "permessage-deflate; server_max_window_bits=8, "
                         "permessage-deflate; unknown_param, "
                         "permessage-deflate; client_max_window_bits; server_no_context_takeover, "
                         "permessage-deflate")
    assert c.status == 101
    assert c.header("Sec-WebSocket-Extensions") == (
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=12")


def test_only_unacceptable_offers_are_declined_gracefully(server_port: int) -> None:
    c = Raw(server_port, "permessage-deflate; server_max_window_bits=8, "
                         "permessage-deflate; client_max_window_bits=20, x-unknown-ext")
    assert c.status == 101
    assert c.header("Sec-WebSocket-Extensions") is None
    c.sock.sendall(frame(1, b"plain"))
    b0, payload = c.read_frame()
    assert (b0, payload) == (0x81, b"plain")


@pytest.mark.parametrize("offer", ["permessage-deflate; =1",
                                   "permessage-deflate; server_max_window_bits=",
                                   'permessage-deflate; client_max_window_bits="1 2"'])
def test_malformed_offer_is_answered_with_400(server_port: int, offer: str) -> None:
    c = Raw(server_port, offer)
    assert c.status == 400


@pytest.mark.parametrize("flag,negotiated", [((), True), (("--compression", "deflate"), True),
                                              (("--compression", "none"), False)])
def test_serve_echo_compression_flag(flag: tuple[str, ...], negotiated: bool) -> None:
    from conformance.launch import ServerProcess, server_command
    server = ServerProcess(server_command("fastsock") + list(flag))
    try:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        c = Raw(port, "permessage-deflate; client_max_window_bits")
        answer = c.header("Sec-WebSocket-Extensions")
        assert (answer is not None) == negotiated, answer
        text = ("echo " * 100).encode()
        if negotiated:
            c.sock.sendall(frame(1, deflate(text), rsv=0x40))
            b0, payload = c.read_frame()
            assert b0 == 0xC1
            assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == text
        else:
            c.sock.sendall(frame(1, text))
            assert c.read_frame() == (0x81, text)
        c.sock.close()
    finally:
        assert server.stop() == 0
        server.stderr.close()
