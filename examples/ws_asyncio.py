"""The same handler classes on asyncio or uvloop.

    python examples/ws_asyncio.py [asyncio|uvloop]

Starts a server with routing, an Origin allow-list, a token check and a
health endpoint, then talks to it with fastsock's asyncio client.
"""
import asyncio
import sys
from typing import Optional

from fastsock.adapters import aio
from fastsock.websocket import Request, Response, WebSocketHandler


class Echo(WebSocketHandler):
    def on_message(self, data: "str | bytes") -> None:
        self.send(data)


class Client(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.inbox: "asyncio.Queue[str | bytes]" = asyncio.Queue()

    def on_message(self, data: "str | bytes") -> None:
        self.inbox.put_nowait(data)


def check_token(request: Request) -> Optional[Response]:
    if request.headers.get("Authorization") != "Bearer secret":
        return Response(401, [("WWW-Authenticate", "Bearer")], "missing or bad token\n")
    return None                               # accept


def health(request: Request) -> Optional[Response]:
    return Response(200, [], "OK\n") if request.path == "/health" else None


async def main() -> None:
    server = await aio.serve({"/echo": Echo}, "127.0.0.1", 0, origins=[None, "https://app.example"],
                             process_request=check_token, http_handler=health)
    url = f"ws://127.0.0.1:{server.port}/echo"
    ws = await aio.connect(url, Client, headers=[("Authorization", "Bearer secret")])
    assert isinstance(ws, Client)
    ws.send("over asyncio")
    print("got", await ws.inbox.get())
    try:
        await aio.connect(url, Client)
    except Exception as exc:                  # InvalidResponseError, status 401
        print("without a token:", exc)
    server.close()
    await server.wait_closed(5)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    loop = aio.new_loop(kind)
    loop.run_until_complete(main())
    loop.close()
