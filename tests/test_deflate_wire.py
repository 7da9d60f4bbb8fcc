"""permessage-deflate on the wire, from a raw socket, against
``python -m fastsock serve echo``: every RSV1 and negotiation error gets the
exact close code or HTTP status (docs/compression.md), and decompression
bombs are stopped at the inflated ``max_message_size`` with bounded memory.

The client is the conformance fuzzer (tests/conformance/fuzzer.py +
deflate.py: its own frames, Python's zlib, nothing from fastsock).
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
import zlib
from typing import Iterator

import pytest

from conformance.deflate import Agreement, Offer, negotiate
from conformance.fuzzer import (OP_BINARY, OP_CONT, OP_PING, OP_TEXT, FuzzingClient,
                                build_frame, compressed_frames)
from conformance.launch import ServerProcess, server_command
from fastsock import CloseCode

LIMIT = 64 * 1024            # --max-message-size of the small-limit server
BOMB_LIMIT = 2 << 20         # --max-message-size of the bomb server
MiB = 1 << 20
# the server inflates in steps of at most 1 MiB (docs/compression.md)
INFLATE_STEP = MiB
WAIT = 20.0                  # a bound on every wait; a correct server answers in ms


def _server(limit: int) -> Iterator[ServerProcess]:
    argv = server_command("fastsock") + ["--max-message-size", str(limit), "--compression", "deflate"]
    with ServerProcess(argv) as server:
        yield server
        # after the test's connections: the server must still be alive
        assert server.proc.poll() is None, server.stderr_text()[-2000:]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    yield from _server(LIMIT)


@pytest.fixture(scope="module")
def bomb_server() -> Iterator[ServerProcess]:
    yield from _server(BOMB_LIMIT)


def _client(url: str, offers: list[Offer] | None = None) -> FuzzingClient:
    client = FuzzingClient(url, offers=offers)
    client.connect()
    return client


def _deflate_client(url: str) -> FuzzingClient:
    client = _client(url, [Offer()])
    assert client.agreement is not None, "the server declined permessage-deflate"
    return client


def _close_code(client: FuzzingClient) -> int | None:
    """Waits for the server's close frame (or the end of TCP) and returns its code."""
    client.wait_until(lambda: client.close.server_sent_close or client.close.violation is not None
                      or client.close.tcp_closed_by_server, WAIT)
    assert client.close.violation is None, client.close.violation
    assert client.close.server_sent_close, "the server closed TCP without a close frame"
    return client.close.server_code


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


# --- RSV1 -------------------------------------------------------------------

def test_rsv1_without_negotiation_is_1002(server: ServerProcess) -> None:
    with _client(server.url) as client:
        assert client.agreement is None
        client.send(build_frame(OP_TEXT, _deflate(b"hello"), rsv=4))
        assert _close_code(client) == CloseCode.PROTOCOL_ERROR


def test_rsv1_on_a_continuation_frame_is_1002(server: ServerProcess) -> None:
    data = _deflate(b"hello, hello, hello")
    with _deflate_client(server.url) as client:
        client.send(build_frame(OP_TEXT, data[:4], fin=False, rsv=4)
                    + build_frame(OP_CONT, data[4:], rsv=4))
        assert _close_code(client) == CloseCode.PROTOCOL_ERROR
        assert client.message_count() == 0


@pytest.mark.parametrize("negotiated", [True, False])
def test_rsv1_on_a_control_frame_is_1002(server: ServerProcess, negotiated: bool) -> None:
    with (_deflate_client(server.url) if negotiated else _client(server.url)) as client:
        client.send(build_frame(OP_PING, b"ping", rsv=4))
        assert _close_code(client) == CloseCode.PROTOCOL_ERROR
        assert not any(e[0] == "pong" for e in client.events)


def test_compressed_messages_round_trip_first_frame_rsv1_only(server: ServerProcess) -> None:
    # the positive control for the cases above: the same client gets echoes
    with _deflate_client(server.url) as client:
        client.send(compressed_frames(OP_TEXT, b"hello " * 100, client.deflater, frag=7))
        client.send(compressed_frames(OP_BINARY, os.urandom(3000), client.deflater))
        client.send(build_frame(OP_TEXT, b"plain"))       # RSV1 is per message
        assert client.wait_until(lambda: client.message_count() == 3, WAIT)
        client.send_close(CloseCode.NORMAL_CLOSURE)
        client.finish(WAIT)
    texts = [e[1] for e in client.events if e[0] == "message"]
    assert texts[0] == b"hello " * 100 and len(texts[1]) == 3000 and texts[2] == b"plain"
    assert client._parser.compressed_messages >= 1, "the server never compressed an echo"


def test_inflated_invalid_utf8_is_1007(server: ServerProcess) -> None:
    # valid as DEFLATE, invalid as UTF-8 once inflated (a lone surrogate)
    with _deflate_client(server.url) as client:
        client.send(build_frame(OP_TEXT, _deflate(b"caf\xc3\xa9 \xed\xa0\x80 end" * 20), rsv=4))
        assert _close_code(client) == CloseCode.INVALID_DATA
        assert client.message_count() == 0


def test_data_that_is_not_deflate_is_1007(server: ServerProcess) -> None:
    with _deflate_client(server.url) as client:
        client.send(build_frame(OP_BINARY, b"\xff\xff\xff\xff not deflate", rsv=4))
        assert _close_code(client) == CloseCode.INVALID_DATA


# --- max_message_size applies to the inflated size --------------------------

@pytest.mark.parametrize("size, accepted", [(LIMIT, True), (LIMIT + 1, False)])
def test_limit_applies_to_the_inflated_size(server: ServerProcess, size: int, accepted: bool) -> None:
    payload = bytes(size)          # zeros: a few hundred bytes on the wire
    with _deflate_client(server.url) as client:
        frame = compressed_frames(OP_BINARY, payload, client.deflater)
        assert len(frame) < 1024
        client.send(frame)
        if accepted:
            assert client.wait_until(lambda: client.message_count() == 1, WAIT)
            assert client.events[0] == ("message", payload, True)
            client.send_close(CloseCode.NORMAL_CLOSURE)
            client.finish(WAIT)
        else:
            # rejected, not truncated: no echo at all
            assert _close_code(client) == CloseCode.MESSAGE_TOO_BIG
            assert client.message_count() == 0


def test_limit_counts_the_whole_fragmented_message(server: ServerProcess) -> None:
    # LIMIT + 1 inflated bytes whose compressed frames are each tiny
    with _deflate_client(server.url) as client:
        client.send(compressed_frames(OP_BINARY, bytes(LIMIT + 1), client.deflater, frag=16))
        assert _close_code(client) == CloseCode.MESSAGE_TOO_BIG
        assert client.message_count() == 0


# --- decompression bombs ------------------------------------------------------

def _rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def _reset_peak_rss(pid: int) -> bool:
    # writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _bomb(inflated: int) -> bytes:
    """Raw DEFLATE of ``inflated`` zero bytes, made in 16 MiB steps.

    DEFLATE cannot do better than about 1032:1, so 1 GiB takes about 1 MiB
    on the wire; a 1 KiB message inflates to about 1 MiB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(16 * MiB)
    parts = []
    for _ in range(inflated // len(block)):
        parts.append(c.compress(block))
    parts.append(c.compress(bytes(inflated % len(block))))
    parts.append(c.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


def _check_bomb(server: ServerProcess, payload: bytes, limit: int) -> tuple[float, int]:
    """Sends one compressed message; returns (seconds to the close, peak RSS growth in KiB)."""
    pid = server.proc.pid
    with _deflate_client(server.url) as client:
        time.sleep(0.2)     # the connection is set up; measure from here
        if not _reset_peak_rss(pid):
            pytest.skip("cannot reset the server's peak RSS (/proc/PID/clear_refs)")
        before = _rss_kib(pid, "VmRSS")
        t0 = time.monotonic()
        client.send(build_frame(OP_BINARY, payload, rsv=4))
        code = _close_code(client)
        elapsed = time.monotonic() - t0
        peak = _rss_kib(pid, "VmHWM")
    assert code == CloseCode.MESSAGE_TOO_BIG
    assert client.message_count() == 0
    return elapsed, peak - before


def test_a_1kib_bomb_closes_with_1009(server: ServerProcess) -> None:
    payload = _bomb(MiB)                 # ~1 KiB that inflates to 1 MiB, 16x the limit
    assert len(payload) <= 1100
    elapsed, growth_kib = _check_bomb(server, payload, LIMIT)
    print(f"1 KiB bomb ({len(payload)} B): closed after {elapsed * 1e3:.0f} ms, "
          f"peak RSS +{growth_kib} KiB")
    assert elapsed < WAIT
    # the limit plus one inflate step, plus the receive buffers
    assert growth_kib * 1024 <= LIMIT + INFLATE_STEP + 2 * MiB, growth_kib


@pytest.mark.slow
def test_a_1gib_bomb_closes_with_1009_and_bounded_memory(bomb_server: ServerProcess) -> None:
    payload = _bomb(1 << 30)             # ~1 MiB on the wire, 1 GiB inflated
    assert len(payload) < BOMB_LIMIT     # the compressed size alone is within the limit
    elapsed, growth_kib = _check_bomb(bomb_server, payload, BOMB_LIMIT)
    print(f"1 GiB bomb ({len(payload)} B): closed after {elapsed * 1e3:.0f} ms, "
          f"peak RSS +{growth_kib} KiB")
    assert elapsed < WAIT
    # inflating it all would take 1 GiB; the server may hold the limit, one
    # inflate step and the compressed message with its receive buffers
    assert growth_kib * 1024 <= BOMB_LIMIT + INFLATE_STEP + 2 * len(payload) + 2 * MiB, growth_kib


# --- negotiation: decline or 400 ---------------------------------------------

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _upgrade(url: str, extensions: str) -> tuple[int, dict[str, str]]:
    """A raw upgrade request with this Sec-WebSocket-Extensions; returns the
    status and the response headers (lower-case names)."""
    host, port = url[len("ws://"):].rstrip("/").rsplit(":", 1)
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((host.strip("[]"), int(port)), timeout=WAIT) as sock:
        sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {extensions}\r\n"
                      "\r\n").encode("latin-1"))
        head = b""
        deadline = time.monotonic() + WAIT
        while b"\r\n\r\n" not in head and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status == 101:
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        assert headers["sec-websocket-accept"] == accept
    return status, headers


@pytest.mark.parametrize("offer", [
    "permessage-deflate; foo",                                # unknown parameter
    "permessage-deflate; foo=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  # repeated
    "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11",
    "permessage-deflate; server_no_context_takeover=1",       # a value on a flag
    "permessage-deflate; client_no_context_takeover=yes",
    "permessage-deflate; server_max_window_bits=16",          # out of 8..15
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=0",
    "permessage-deflate; server_max_window_bits=09",          # leading zero
    "permessage-deflate; server_max_window_bits",             # needs a value
    "permessage-deflate; server_max_window_bits=8",           # zlib cannot compress with 256 B
    "x-webkit-deflate-frame",                                 # another extension
])
def test_unacceptable_offers_are_declined(server: ServerProcess, offer: str) -> None:
    status, headers = _upgrade(server.url, offer)
    assert status == 101
    assert "sec-websocket-extensions" not in headers


@pytest.mark.parametrize("offer", [
    "permessage-deflate; =15",                                 # empty name
    "permessage-deflate; server_max_window_bits=",             # empty value
    "permessage-deflate; server_max_window_bits=1 0",          # not a token
    'permessage-deflate; server_max_window_bits="1"0',
    "permessage-deflate; client_max_window_bits=@",
    "permessage-deflate;; server_no_context_takeover",
])
def test_malformed_offers_get_400(server: ServerProcess, offer: str) -> None:
    status, headers = _upgrade(server.url, offer)
    assert status == 400, (status, headers)


@pytest.mark.parametrize("offer, expected", [
    # the first acceptable offer wins
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10",
     Offer(accept_no_context_takeover=False, accept_max_window_bits=False, request_max_window_bits=10)),
    ("permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
     Offer(accept_no_context_takeover=False, accept_max_window_bits=False,
           request_no_context_takeover=True)),
    # a quoted value is the same token
    ('permessage-deflate; client_max_window_bits="12"', Offer(accept_no_context_takeover=False)),
])
def test_several_offers_and_quoted_values(server: ServerProcess, offer: str, expected: Offer) -> None:
    status, headers = _upgrade(server.url, offer)
    assert status == 101
    answer = headers.get("sec-websocket-extensions")
    assert answer is not None, "declined an acceptable offer"
    agreement = negotiate([expected], answer)   # raises unless it is a valid answer to it
    assert isinstance(agreement, Agreement)
    if "client_max_window_bits" in offer:
        assert agreement.client_max_window_bits <= 12

