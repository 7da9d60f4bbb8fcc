"""fastsock's WebSocket client: redirects, Basic auth, headers, ``ws.response``,
the reconnecting ``async for`` and the typed callback client.

Run it: ``python examples/ws_client_features.py``. It starts its own server
(fastsock's coroutine API) on a free port of 127.0.0.1 and talks to it.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Optional, Union

import fastsock
from fastsock.coroutine import Connection
from fastsock.websocket.server_handshake import HandshakeRequest
from fastsock.websocket import Response, WebSocketHandler
from fastsock.websocket.client_handshake import InvalidStatus

USERS = {"alice": "s3cret"}
FEED_UPDATES = 3


def text(message: Union[str, bytes]) -> str:
    assert isinstance(message, str), "this example's server sends text"
    return message


def check(request: HandshakeRequest) -> Optional[Response]:
    """The server's process_request: /old moves to /chat; /chat needs Basic auth."""
    if request.path == "/old":
        return Response(302, [("Location", "/chat")])
    if request.path != "/chat":
        return None
    for user, password in USERS.items():
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        if request.headers.get("Authorization") == f"Basic {token}":
            return None
    return Response(401, [("WWW-Authenticate", 'Basic realm="example"')], "who are you?\n")


async def chat(ws: Connection) -> None:
    agent = ws.request.headers.get("User-Agent", "")
    await ws.send(f"hello, {agent.split('/')[0]} client with {ws.request.headers.get('X-Room')}")
    async for message in ws:
        await ws.send(message)


updates = 0


async def feed(ws: Connection) -> None:
    """Sends one update per connection, then says it restarts (1012)."""
    global updates
    updates += 1
    await ws.send(f"update {updates}")
    await ws.close(1012, "restarting")


class Greeted(WebSocketHandler):
    """A callback-API client: keeps the first message."""

    def __init__(self) -> None:
        super().__init__()
        self.first: asyncio.Future[Union[str, bytes]] = asyncio.get_running_loop().create_future()

    def on_message(self, data: Union[str, bytes]) -> None:
        if not self.first.done():
            self.first.set_result(data)


async def main() -> None:
    async with fastsock.serve({"/chat": chat, "/old": chat, "/feed": feed}, "127.0.0.1", 0,
                              process_request=check) as server:
        base = f"ws://127.0.0.1:{server.port}"

        # Redirect (302 /old -> /chat), Basic auth from the URI, an extra header.
        async with fastsock.connect(f"ws://alice:s3cret@127.0.0.1:{server.port}/old",
                                    headers=[("X-Room", "lobby")]) as ws:
            assert ws.response is not None
            print(f"opened: HTTP {ws.response.status}")
            print(f"greeting: {text(await ws.recv())}")
            await ws.send("ping")
            print(f"echo: {text(await ws.recv())}")

        # A refusal is an InvalidStatus carrying the response.
        try:
            await fastsock.connect(f"{base}/chat")
        except InvalidStatus as exc:
            print(f"refused: HTTP {exc.response.status} {exc.response.body!r}")

        # Reconnecting: each connection gives one update, then the server closes it.
        connections = 0
        async for feed_ws in fastsock.connect(f"{base}/feed", backoff_initial=0.1,
                                              backoff_min=0.1, backoff_max=1.0, max_retries=5):
            connections += 1
            print(f"feed connection {connections}: {text(await feed_ws.recv())}")
            if connections == FEED_UPDATES:
                break

        # The callback client: the future is typed with the handler class.
        greeted: Greeted = await fastsock.connect(
            f"ws://alice:s3cret@127.0.0.1:{server.port}/chat", Greeted,
            headers=[("X-Room", "callbacks")])
        print(f"callback client: {text(await greeted.first)}")
        greeted.close(1000)


if __name__ == "__main__":
    fastsock.run(main())
