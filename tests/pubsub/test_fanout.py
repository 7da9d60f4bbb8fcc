"""fastsock.pubsub.fanout: broadcast and the slow-peer policy, over real
sockets on 127.0.0.1.

A "slow peer" here is a raw-socket client that completes the handshake and
then stops reading, with small kernel buffers at both ends, so the server's
write buffer really passes ``write_limit``. Reading peers are the
``websockets`` client (which checks every frame, and inflates compressed
ones) or raw sockets whose frames the test parses itself.
"""
from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from websockets.sync.client import connect

from fastsock.pubsub import fanout
from fastsock.websocket import WebSocketHandler, WebSocketOptions, encode_message
from fastsock.websocket.extensions.permessage_deflate import ServerPerMessageDeflate
from test_websocket_helpers import ServerThread

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
RECV = 5.0                 # seconds a reading client waits for one message
SMALL_BUFFER = 4096        # SO_SNDBUF / SO_RCVBUF of the slow peer's two ends
WRITE_LIMIT = 16 * 1024    # the server's write_limit in these tests
CHUNK = 4096               # bytes per broadcast while filling a slow peer
MAX_FILL = 2000            # broadcasts tried before a peer must be paused
WAIT_STEP = 0.01
WAIT_STEPS = 500


class Room(WebSocketHandler):
    """Every open connection of the server, in order of arrival."""

    members: list["Room"]

    def on_open(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:            # small kernel buffer: the limit is reached fast
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        type(self).members.append(self)

    def on_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ValueError):
            type(self).members.remove(self)


def room_class() -> type[Room]:
    return type("TestRoom", (Room,), {"members": []})


def until(condition: Any) -> None:
    for _ in range(WAIT_STEPS):
        if condition():
            return
        time.sleep(WAIT_STEP)
    raise AssertionError("condition not met in time")


def handshake(port: int, deflate: Optional[str] = None) -> tuple[socket.socket, bytes]:
    """A raw client socket after a successful opening handshake, with a small
    receive buffer; and the bytes read past the 101."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    s.settimeout(RECV)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if deflate is not None:
        head += f"Sec-WebSocket-Extensions: {deflate}\r\n"
    s.sendall((head + "\r\n").encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        assert chunk, "closed during the handshake"
        got += chunk
    response, _, rest = got.partition(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101"), response
    if deflate is not None:
        assert b"permessage-deflate" in response
    return s, rest


class FrameReader:
    """Reads a raw client's server frames (unmasked), inflating RSV1 ones with
    one decompressor kept across messages (context takeover) unless told."""

    def __init__(self, sock: socket.socket, rest: bytes, reset_each: bool = False) -> None:
        self.sock = sock
        self.buf = bytearray(rest)
        self.reset_each = reset_each
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def message(self) -> tuple[int, bytes]:
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "a server frame is never masked"
        n, h = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, h = struct.unpack_from("!H", self.buf, 2)[0], 4
        elif n == 127:
            self._need(10)
            n, h = struct.unpack_from("!Q", self.buf, 2)[0], 10
        self._need(h + n)
        payload = bytes(self.buf[h:h + n])
        del self.buf[:h + n]
        assert b0 & 0x80, "broadcast frames are whole messages"
        if b0 & 0x40:
            if self.reset_each:
                self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        return b0 & 0x0F, payload


@contextlib.contextmanager
def room_server(policy: str, **kwargs: Any) -> Iterator[tuple[ServerThread, type[Room]]]:
    room = room_class()
    options = WebSocketOptions(write_limit=WRITE_LIMIT, slow_peer=policy)
    with ServerThread(room, options=options, **kwargs) as srv:
        yield srv, room


def fill_until_paused(srv: ServerThread, room: type[Room], slow: Room) -> list[int]:
    """Broadcast numbered CHUNK-byte binary messages to the room (one loop turn
    each) until ``slow``'s transport has asked it to stop writing; the
    broadcast() results."""
    results: list[int] = []
    for i in range(MAX_FILL):
        payload = struct.pack("!I", i) + bytes(CHUNK - 4)
        results.append(srv.call(lambda: fanout.broadcast(list(room.members), payload)))
        if srv.call(lambda: slow.writing_paused):
            return results
    raise AssertionError(f"the slow peer was not paused after {MAX_FILL} broadcasts")


def numbered(payload: Any) -> int:
    value: int = struct.unpack_from("!I", payload)[0]
    return value


@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_pause_queues_for_the_slow_peer_and_it_gets_everything_in_order(loop: str) -> None:
    with room_server("pause", loop=loop) as (srv, room):
        slow_sock, rest = handshake(srv.port)
        with slow_sock, connect(f"ws://127.0.0.1:{srv.port}/", max_size=None) as fast:
            until(lambda: len(room.members) == 2)
            slow = room.members[0]
            results = fill_until_paused(srv, room, slow)
            assert results == [2] * len(results)            # queued for both, paused or not
            assert srv.call(lambda: slow._reading_paused)    # "pause": stop reading that peer
            sent = len(results)
            assert srv.call(lambda: fanout.broadcast(list(room.members), b"last")) == 2
            for i in range(sent):
                assert numbered(fast.recv(timeout=RECV)) == i
            assert fast.recv(timeout=RECV) == b"last"
            assert slow.messages_dropped == 0
            reader = FrameReader(slow_sock, rest)             # now the slow peer reads
            for i in range(sent):
                op, payload = reader.message()
                assert op == 2 and numbered(payload) == i
            assert reader.message() == (2, b"last")
            until(lambda: not srv.call(lambda: slow.writing_paused))
            assert not srv.call(lambda: slow._reading_paused)


@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_drop_skips_the_slow_peer_and_counts_it(loop: str) -> None:
    with room_server("drop", loop=loop) as (srv, room):
        slow_sock, rest = handshake(srv.port)
        with slow_sock, connect(f"ws://127.0.0.1:{srv.port}/", max_size=None) as fast:
            until(lambda: len(room.members) == 2)
            slow = room.members[0]
            sent = len(fill_until_paused(srv, room, slow))
            for _ in range(3):
                assert srv.call(lambda: fanout.broadcast(list(room.members), b"skip")) == 1
            assert slow.messages_dropped == 3
            assert srv.state.stats["messages_dropped"] >= 3
            for i in range(sent):
                assert numbered(fast.recv(timeout=RECV)) == i
            for _ in range(3):
                assert fast.recv(timeout=RECV) == b"skip"
            reader = FrameReader(slow_sock, rest)             # what it gets: all before the pause
            for i in range(sent):
                op, payload = reader.message()
                assert op == 2 and numbered(payload) == i
            until(lambda: not srv.call(lambda: slow.writing_paused))
            assert srv.call(lambda: fanout.broadcast(list(room.members), b"again")) == 2
            assert reader.message() == (2, b"again")        # nothing of the dropped three
            assert fast.recv(timeout=RECV) == b"again"


@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_disconnect_aborts_the_slow_peer_only(loop: str) -> None:
    with room_server("disconnect", loop=loop) as (srv, room):
        slow_sock, _ = handshake(srv.port)
        with slow_sock, connect(f"ws://127.0.0.1:{srv.port}/", max_size=None) as fast:
            until(lambda: len(room.members) == 2)
            slow = room.members[0]
            for i in range(MAX_FILL):
                payload = struct.pack("!I", i) + bytes(CHUNK - 4)
                srv.call(lambda: fanout.broadcast(list(room.members), payload))
                if len(room.members) == 1:
                    break
            until(lambda: len(room.members) == 1 and room.members[0] is not slow)
            # aborted: by pause_writing on the next turn, or by a broadcast's
            # admit() if one came first (which counts the message as dropped)
            assert slow.close_code == 1006
            assert srv.call(lambda: fanout.broadcast(list(room.members), b"still here")) == 1
            for j in range(i + 1):
                message = fast.recv(timeout=RECV)
                assert numbered(message) == j
            assert fast.recv(timeout=RECV) == b"still here"
            # the slow peer sees its connection end (reset or EOF) after what was sent
            slow_sock.settimeout(RECV)
            with contextlib.suppress(ConnectionResetError):
                while slow_sock.recv(65536):
                    pass


@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
@pytest.mark.parametrize("compression", [None, "deflate"])
def test_any_number_of_connections_and_an_iterable_that_fails(
        loop: str, compression: Optional[str]) -> None:
    """The compiled loop keeps several connections in flight: every count
    around its ring's size gets the frame exactly once, and when the
    iterable raises, the connections it yielded before have the frame
    queued (as in the twin) and the error reaches the caller. Plain
    connections take the compiled loop; deflate ones the Python path."""
    room = room_class()
    clients = 17
    counts = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17]
    with ServerThread(room, loop=loop) as srv, contextlib.ExitStack() as stack:
        peers = []
        for _ in range(clients):          # one by one: members in the clients' order
            peers.append(stack.enter_context(
                connect(srv.url + "/", compression="deflate" if compression else None)))
            until(lambda: len(room.members) == len(peers))
        assert all(bool(m._extensions) == bool(compression) for m in room.members)
        for k in counts:
            assert srv.call(lambda: fanout.broadcast(room.members[:k], f"k{k}")) == k

        def failing() -> Iterator[Room]:
            yield from room.members[:12]
            raise RuntimeError("the iterable broke")

        def call() -> str:
            try:
                return f"returned {fanout.broadcast(failing(), 'partial')}"
            except RuntimeError as exc:
                return f"raised {exc}"
        assert srv.call(call) == "raised the iterable broke"
        assert srv.call(lambda: fanout.broadcast(room.members, "end")) == clients
        for i, peer in enumerate(peers):
            got = [peer.recv(timeout=RECV) for _ in range(sum(k > i for k in counts))]
            assert got == [f"k{k}" for k in counts if k > i]
            if i < 12:
                assert peer.recv(timeout=RECV) == "partial"
            assert peer.recv(timeout=RECV) == "end"


def test_offer_frame_is_the_one_policy_for_a_single_connection() -> None:
    with room_server("drop") as (srv, room):
        slow_sock, rest = handshake(srv.port)
        with slow_sock:
            until(lambda: len(room.members) == 1)
            slow = room.members[0]
            fill_until_paused(srv, room, slow)
            frame = encode_message("one")
            assert srv.call(lambda: fanout.offer_frame(slow, frame)) is False
            assert slow.messages_dropped == 1
            slow_sock.close()
            until(lambda: not room.members)
            assert srv.call(lambda: fanout.offer_frame(slow, frame)) is False   # closed


def test_coroutine_connections_mixed_with_handlers() -> None:
    import asyncio

    import websockets

    import fastsock
    from fastsock.adapters import aio as aio_adapter
    from fastsock.coroutine import Connection

    members: list[Any] = []

    async def coroutine_handler(ws: Connection) -> None:
        members.append(ws)
        await ws.wait_closed()

    class Callback(WebSocketHandler):
        def on_open(self) -> None:
            members.append(self)

    async def main() -> None:
        async with fastsock.serve(coroutine_handler, "127.0.0.1", 0) as co_server:
            cb_server = await aio_adapter.serve(Callback, "127.0.0.1", 0)
            try:
                clients = []
                for port in (co_server.port, cb_server.port, co_server.port, cb_server.port):
                    clients.append(await websockets.connect(f"ws://127.0.0.1:{port}/"))
                    for _ in range(WAIT_STEPS):       # keep members in the clients' order
                        if len(members) == len(clients):
                            break
                        await asyncio.sleep(WAIT_STEP)
                assert [isinstance(m, Connection) for m in members] == [True, False, True, False]
                for n in range(20):
                    assert fanout.broadcast(members, f"m{n}") == 4
                assert fanout.broadcast(members, frame=encode_message(b"\x00\x01")) == 4
                for client in clients:
                    assert [await client.recv() for _ in range(20)] == [f"m{n}" for n in range(20)]
                    assert await client.recv() == b"\x00\x01"
                await clients[0].close()
                await members[0].wait_closed()
                assert fanout.broadcast(members, "after") == 3
                for client in clients[1:]:
                    assert await client.recv() == "after"
                    await client.close()
            finally:
                cb_server.close()
                await cb_server.wait_closed(5.0)

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("no_takeover", [True, False])
def test_deflate_connections_get_their_messages_inflated(no_takeover: bool) -> None:
    """Compressed and plain connections in one broadcast; with and without
    server context takeover (websockets inflates and checks every message)."""
    room = room_class()
    compression = ServerPerMessageDeflate(server_no_context_takeover=no_takeover)
    with ServerThread(room, compression=compression) as srv, contextlib.ExitStack() as stack:
        deflated = [stack.enter_context(connect(srv.url + "/")) for _ in range(3)]
        plain = [stack.enter_context(connect(srv.url + "/", compression=None)) for _ in range(2)]
        until(lambda: len(room.members) == 5)
        messages = [f'{{"n": {n}, "text": "{"broadcast " * 50}"}}' for n in range(20)]
        for message in messages:
            assert srv.call(lambda: fanout.broadcast(list(room.members), message)) == 5
        for client in deflated + plain:
            assert [client.recv(timeout=RECV) for _ in messages] == messages


def test_deflate_with_context_takeover_drops_before_compressing() -> None:
    """A frame the policy drops must not reach a compressor with context
    takeover: the peer's decompressor would be out of step. The next message
    repeats the dropped one's text, so a stale window would show."""
    room = room_class()
    options = WebSocketOptions(write_limit=WRITE_LIMIT, slow_peer="drop")
    compression = ServerPerMessageDeflate(server_no_context_takeover=False)
    with ServerThread(room, options=options, compression=compression) as srv:
        slow_sock, rest = handshake(srv.port, deflate="permessage-deflate")
        with slow_sock:
            until(lambda: len(room.members) == 1)
            slow = room.members[0]
            filled = len(fill_until_paused(srv, room, slow))
            secret = "dropped:" + os.urandom(32).hex()
            assert srv.call(lambda: fanout.broadcast(list(room.members), secret)) == 0
            reader = FrameReader(slow_sock, rest)
            for i in range(filled):
                op, payload = reader.message()
                assert op == 2 and numbered(payload) == i
            until(lambda: not srv.call(lambda: slow.writing_paused))
            again = secret * 3
            assert srv.call(lambda: fanout.broadcast(list(room.members), again)) == 1
            assert reader.message() == (1, again.encode())


def _wsload() -> Path:
    tool = ROOT / "benchmarks" / "loadgen" / "bin" / "wsload"
    if not tool.exists():
        if shutil.which("make") is None or shutil.which("cc") is None:
            pytest.fail("wsload is not built and make/cc are missing")
        subprocess.run(["make", "-C", str(ROOT / "benchmarks" / "loadgen")], check=True,
                       capture_output=True, timeout=300)
    return tool


def test_nothing_lost_in_a_10k_fan_out() -> None:
    """10,000 connections from the compiled load generator to ``serve
    broadcast``: 5 broadcasts one by one, then 20 every 50 ms without
    waiting; every connection must get every message, in order."""
    import json
    import resource

    connections = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < connections + 100:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below {connections + 100}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))     # children inherit it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "fastsock", "serve", "broadcast",
                               "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if "listening on" in line or not line:
                break
        assert server.poll() is None, "the server exited"
        out = subprocess.run([str(_wsload()), "--mode", "c10k", "--port", str(port),
                              "--connections", str(connections), "--idle", "0",
                              "--ping-rounds", "0", "--broadcasts", "5", "--broadcast-gap", "0.05",
                              "--flood", "20", "--flood-interval", "0.05", "--phase-timeout", "20"],
                             capture_output=True, text=True, timeout=240)
        events = {e["event"]: e for e in map(json.loads, out.stdout.splitlines()) if e}
        result = events["result"]
        assert result["connected"] == connections and result["failed"] == 0
        bc, flood = events["broadcast_end"], events["flood_end"]
        assert bc["broadcasts"] == 5 and bc["incomplete"] == 0
        assert bc["delivered"] == bc["expected"] == 5 * connections
        assert flood["messages"] == 20
        assert flood["delivered"] == flood["expected"] == 20 * connections
        assert flood["undelivered"] == 0 and flood["gaps"] == 0 and flood["out_of_order"] == 0
        assert result["open_at_end"] == connections
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
