"""permessage-deflate (RFC 7692) end to end: a server and three clients.

The server imposes ``server_no_context_takeover`` (every message is
compressed from an empty window), so one broadcast is compressed once and
the same bytes go to every client; the clients offer deflate by default.
Run it: ``python examples/ws_compression.py``. See docs/compression.md.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from fastsock.adapters import aio
from fastsock import broadcast
from fastsock.websocket import WebSocketHandler
from fastsock.websocket.extensions import ServerPerMessageDeflate


class Feed(WebSocketHandler):
    """Echoes what a client sends; the server broadcasts to everyone."""

    def on_message(self, data: Any) -> None:
        self.send(data)


class Client(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.wire_bytes = 0

    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)      # what actually crossed the socket
        super().data_received(data)

    def on_message(self, data: Any) -> None:
        self.inbox.put_nowait(data)


async def main() -> None:
    server = await aio.serve(
        Feed, "127.0.0.1", 0,
        compression=ServerPerMessageDeflate(server_no_context_takeover=True))
    url = f"ws://127.0.0.1:{server.port}/"
    clients = [cast(Client, await aio.connect(url, Client)) for _ in range(3)]
    print("negotiated:", clients[0]._extensions[0])

    update = json.dumps({"type": "prices",
                         "items": [{"symbol": f"SYM{i}", "price": 100 + i, "change": 0.5}
                                   for i in range(50)]})
    sent = broadcast(server.connections, update)          # compressed once for all three
    for c in clients:
        assert await c.inbox.get() == update
    print(f"broadcast to {sent}: {len(update)} bytes of JSON, "
          f"{clients[0].wire_bytes} bytes on each client's wire")

    clients[0].send("hello " * 100)                       # the echo comes back compressed
    assert await clients[0].inbox.get() == "hello " * 100
    for c in clients:
        c.close()
    server.close()
    await server.wait_closed(5)
    print("ok")


if __name__ == "__main__":
    asyncio.run(main())
