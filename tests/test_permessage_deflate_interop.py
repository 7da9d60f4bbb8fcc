"""permessage-deflate against the `websockets` library, both directions,
with each parameter combination, over real sockets on 127.0.0.1.

* our server (``fastsock.adapters.aio.serve``, deflate on by default) with
  websockets' client and its ``ClientPerMessageDeflateFactory(...)``;
* our client (``aio.connect``, deflate offered by default or set up with
  ``ClientPerMessageDeflate(...)``) with websockets' server and its
  ``ServerPerMessageDeflateFactory(...)``.

Each run checks the negotiated parameters, that messages really travel
compressed (RSV1 on the wire), and echoes text and binary messages from
empty to 1 MiB, compressible and not, in order (context takeover carries
history between them).
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Optional

import pytest

websockets = pytest.importorskip("websockets")
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

from fastsock.adapters import aio  # noqa: E402
from fastsock.websocket import WebSocketHandler, WebSocketOptions  # noqa: E402
from fastsock.websocket.extensions import (  # noqa: E402
    ClientPerMessageDeflate,
    PerMessageDeflate,
    ServerPerMessageDeflate,
)

TIMEOUT = 30.0
OPTIONS = WebSocketOptions(max_message_size=4 << 20, ping_interval=None)


def _messages() -> list[Any]:
    doc = json.dumps([{"id": i, "name": f"user{i}", "online": i % 3 == 0} for i in range(200)])
    return ["", "x", "hello " * 20, doc, doc.encode(), os.urandom(3000), b"\x00" * (1 << 20),
            "é€😀" * 5000, doc[:700], bytes(range(256)) * 64]


class RecordingEcho(WebSocketHandler):
    """Echoes; keeps the first header byte of each frame received (RSV1 check)."""

    first_bytes: list[int] = []

    def data_received(self, data: bytes) -> None:
        RecordingEcho.first_bytes.append(data[0])
        super().data_received(data)

    def on_message(self, data: Any) -> None:
        self.send(data)


class Inbox(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.raw = bytearray()

    def data_received(self, data: bytes) -> None:
        self.raw += data
        super().data_received(data)

    def on_message(self, data: Any) -> None:
        self.inbox.put_nowait(data)


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))
    finally:
        loop.close()


CLIENT_PARAMS = [
    {},
    dict(server_no_context_takeover=True),
    dict(client_no_context_takeover=True),
    dict(server_no_context_takeover=True, client_no_context_takeover=True),
    dict(server_max_window_bits=10),
    dict(server_max_window_bits=15),
    dict(client_max_window_bits=9),
    dict(client_max_window_bits=True),
    dict(client_max_window_bits=None),
    dict(server_max_window_bits=9, client_max_window_bits=11, client_no_context_takeover=True),
]


@pytest.mark.parametrize("params", CLIENT_PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("server_nct", [False, True])
def test_our_server_with_websockets_client(params: dict[str, Any], server_nct: bool) -> None:
    async def main() -> None:
        RecordingEcho.first_bytes = []
        server = await aio.serve(
            RecordingEcho, "127.0.0.1", 0, options=OPTIONS,
            compression=ServerPerMessageDeflate(server_no_context_takeover=server_nct))
        try:
            async with websockets.connect(
                    f"ws://127.0.0.1:{server.port}/", compression=None, max_size=4 << 20,
                    extensions=[ClientPerMessageDeflateFactory(**params)]) as ws:
                answer = ws.response.headers["Sec-WebSocket-Extensions"]
                assert answer.startswith("permessage-deflate")
                assert ("server_no_context_takeover" in answer) == (
                    server_nct or bool(params.get("server_no_context_takeover")))
                if "server_max_window_bits" in params:
                    assert f"server_max_window_bits={min(12, params['server_max_window_bits'])}" in answer
                if isinstance(params.get("client_max_window_bits"), int) and \
                        params["client_max_window_bits"] is not True:
                    assert f"client_max_window_bits={params['client_max_window_bits']}" in answer
                for m in _messages():
                    await ws.send(m)
                    assert await ws.recv() == m
                [handler] = list(server.connections)
                [ext] = handler._extensions
                assert isinstance(ext, PerMessageDeflate)
                assert ext.local_no_context_takeover == (
                    server_nct or bool(params.get("server_no_context_takeover")))
            # websockets compresses every message: RSV1 frames reached us.
            assert any(b & 0x40 for b in RecordingEcho.first_bytes)
        finally:
            server.close()
            await server.wait_closed(5)

    run(main())


SERVER_PARAMS = [
    {},
    dict(server_no_context_takeover=True),
    dict(client_no_context_takeover=True),
    dict(server_max_window_bits=9),
    dict(client_max_window_bits=10),
    dict(server_max_window_bits=11, client_max_window_bits=9,
         server_no_context_takeover=True, client_no_context_takeover=True),
]
OUR_CLIENT = [
    ClientPerMessageDeflate(),
    ClientPerMessageDeflate(client_max_window_bits=None),
    ClientPerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True),
    ClientPerMessageDeflate(server_max_window_bits=10, client_max_window_bits=11),
]


@pytest.mark.parametrize("params", SERVER_PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("ours", range(len(OUR_CLIENT)))
def test_our_client_with_websockets_server(params: dict[str, Any], ours: int) -> None:
    factory = OUR_CLIENT[ours]

    async def echo(conn: Any) -> None:
        async for m in conn:
            await conn.send(m)

    async def main() -> None:
        async with websockets.serve(echo, "127.0.0.1", 0, compression=None, max_size=4 << 20,
                                    extensions=[ServerPerMessageDeflateFactory(**params)]) as srv:
            port = srv.sockets[0].getsockname()[1]
            ws = await aio.connect(f"ws://127.0.0.1:{port}/", Inbox, options=OPTIONS,
                                   compression=factory)
            [ext] = ws._extensions
            assert isinstance(ext, PerMessageDeflate)
            assert ext.remote_no_context_takeover == bool(
                params.get("server_no_context_takeover") or factory.server_no_context_takeover)
            assert ext.local_no_context_takeover == bool(
                params.get("client_no_context_takeover") or factory.client_no_context_takeover)
            if "server_max_window_bits" in params:
                assert ext.remote_max_window_bits == min(
                    params["server_max_window_bits"], factory.server_max_window_bits or 15)
            for m in _messages():
                ws.send(m)
                assert await ws.inbox.get() == m
            assert ws.raw[0] & 0x40                 # the first echo came compressed
            ws.close()
            await asyncio.sleep(0.05)

    run(main())


def test_compression_none_negotiates_nothing() -> None:
    async def main() -> None:
        server = await aio.serve(RecordingEcho, "127.0.0.1", 0, compression=None)
        try:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                await ws.send("x" * 1000)
                assert await ws.recv() == "x" * 1000
            ws2 = await aio.connect(f"ws://127.0.0.1:{server.port}/", Inbox, compression=None)
            assert ws2._extensions == ()
            ws2.close()
        finally:
            server.close()
            await server.wait_closed(5)

    run(main())


def test_defaults_negotiate_deflate_between_our_client_and_server() -> None:
    async def main() -> None:
        server = await aio.serve(RecordingEcho, "127.0.0.1", 0, options=OPTIONS)
        try:
            ws = await aio.connect(f"ws://127.0.0.1:{server.port}/", Inbox, options=OPTIONS)
            [ext] = ws._extensions
            assert isinstance(ext, PerMessageDeflate)
            for m in _messages():
                ws.send(m)
                assert await ws.inbox.get() == m
            ws.close()
        finally:
            server.close()
            await server.wait_closed(5)

    run(main())


@pytest.mark.parametrize("server_nct,compressions", [(True, 1), (False, 4)])
def test_broadcast_compresses_once_without_server_context_takeover(
        server_nct: bool, compressions: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastsock import broadcast
    calls = []
    encode = PerMessageDeflate.encode

    def counting(self: PerMessageDeflate, opcode: int, payload: bytes) -> tuple[int, bytes]:
        calls.append(len(payload))
        return encode(self, opcode, payload)

    monkeypatch.setattr(PerMessageDeflate, "encode", counting)

    async def main() -> None:
        server = await aio.serve(
            RecordingEcho, "127.0.0.1", 0, options=OPTIONS,
            compression=ServerPerMessageDeflate(server_no_context_takeover=server_nct))
        try:
            clients = [await aio.connect(f"ws://127.0.0.1:{server.port}/", Inbox, options=OPTIONS)
                       for _ in range(4)]
            message = json.dumps([{"n": i, "text": "broadcast"} for i in range(100)])
            for _ in range(3):
                calls.clear()
                assert broadcast(server.connections, message) == 4
                for c in clients:
                    assert await c.inbox.get() == message
                assert calls == [len(message)] * compressions
            for c in clients:
                assert c.raw[0] & 0x40          # it came compressed
                c.close()
        finally:
            server.close()
            await server.wait_closed(5)

    run(main())


def test_example_runs() -> None:
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "examples" / "ws_compression.py")],
                         capture_output=True, text=True, timeout=60, cwd=root)
    assert out.returncode == 0, out.stderr
    assert "broadcast to 3" in out.stdout and out.stdout.rstrip().endswith("ok")


def test_contexts_compacted_by_the_pool_keep_working_with_websockets() -> None:
    # A pool of 2 whole contexts for 5 busy connections: every message comes
    # from a compacted context (round robin), both directions, and websockets
    # (context takeover on its side) decodes and encodes as usual.
    from fastsock.websocket.extensions import permessage_deflate as pmd
    saved = pmd.compressor_pool.limit

    async def main() -> None:
        server = await aio.serve(RecordingEcho, "127.0.0.1", 0, options=OPTIONS)
        try:
            clients = [await websockets.connect(f"ws://127.0.0.1:{server.port}/",
                                                max_size=4 << 20) for _ in range(5)]
            for round_ in range(6):
                for i, ws in enumerate(clients):
                    m = json.dumps({"round": round_, "client": i, "pad": "abc" * (50 + i)})
                    await ws.send(m)
                    assert await ws.recv() == m
            assert len(pmd.compressor_pool) == 2 and len(pmd.decompressor_pool) == 2
            compacted = [h for h in server.connections
                         if not h._extensions[0].memory_held]
            assert len(compacted) == 3
            for ws in clients:
                await ws.close()
        finally:
            server.close()
            await server.wait_closed(5)

    pmd.set_active_contexts(2)
    try:
        run(main())
    finally:
        pmd.set_active_contexts(saved)


def test_coroutine_api_compresses_by_default_both_ways() -> None:
    import fastsock

    async def handler(ws: Any) -> None:
        async for m in ws:
            await ws.send(m)

    async def main() -> None:
        async with fastsock.serve(handler, "127.0.0.1", 0, options=OPTIONS) as server:
            port = server.sockets[0].getsockname()[1]
            async with fastsock.connect(f"ws://127.0.0.1:{port}/", options=OPTIONS) as ws:
                [ext] = ws.core._extensions
                assert isinstance(ext, PerMessageDeflate)
                for m in _messages():
                    await ws.send(m)
                    assert await ws.recv() == m
            # and websockets' client against the coroutine server
            async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=4 << 20) as wsc:
                assert "permessage-deflate" in wsc.response.headers["Sec-WebSocket-Extensions"]
                for m in _messages():
                    await wsc.send(m)
                    assert await wsc.recv() == m

    run(main())


@pytest.mark.parametrize("server_nct", [False, True])
def test_coroutine_fragmented_send_is_compressed_fragment_by_fragment(server_nct: bool) -> None:
    # send(async iterable) streams: each fragment is compressed as it comes
    # (RSV1 on the first frame only), while other connections send through
    # the same (shared, without context takeover) compressor in between.
    import fastsock
    pieces = [json.dumps({"part": i, "data": "stream " * 40}) for i in range(6)]

    async def fragments() -> Any:
        for p in pieces:
            yield p
            await asyncio.sleep(0.005)

    async def handler(ws: Any) -> None:
        async for m in ws:
            if m == "stream":
                await ws.send(fragments())
            else:
                await ws.send(m)

    async def chatter(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as other:
            for i in range(20):
                m = json.dumps({"other": i, "pad": "x" * 200})
                await other.send(m)
                assert await other.recv() == m

    async def main() -> None:
        async with fastsock.serve(
                handler, "127.0.0.1", 0, options=OPTIONS,
                compression=ServerPerMessageDeflate(server_no_context_takeover=server_nct)) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=4 << 20) as ws:
                task = asyncio.ensure_future(chatter(port))
                for _ in range(3):
                    await ws.send("stream")
                    assert await ws.recv() == "".join(pieces)
                await task
            # (websockets fails a message with RSV1 on a continuation frame:
            # the checks above also cover RSV1 on the first frame only.)
            async with fastsock.connect(f"ws://127.0.0.1:{port}/", options=OPTIONS) as ours:
                await ours.send("stream")
                assert await ours.recv() == "".join(pieces)
                # our client sends fragments compressed too
                await ours.send(fragments())
                assert await ours.recv() == "".join(pieces)

    run(main())
