"""WebSocket echo or broadcast with the websockets library (asyncio API).

    python -m benchmarks.servers.ws_websockets --port 9000 [--mode broadcast] [--loop uvloop]

No compression, no size limit, no keepalive pings: the same work as the
other servers.  Broadcast uses websockets.broadcast (one frame, written to
every connection, no back-pressure)."""
from __future__ import annotations

import sys

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve

from benchmarks.servers._common import new_loop, parser, ready, serve


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "", modes=("echo", "broadcast"), loops=("uvloop", "asyncio")).parse_args(argv)
    loop = new_loop(args.loop)
    clients: set[ServerConnection] = set()

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def fanout(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                broadcast(clients, message)
        finally:
            clients.discard(ws)

    async def start():  # type: ignore[no-untyped-def]
        server = await ws_serve(echo if args.mode == "echo" else fanout, args.host, args.port,
                                compression=None, max_size=None, ping_interval=None, backlog=4096)
        port = next(iter(server.sockets)).getsockname()[1]
        ready(f"websockets {args.mode}", "ws", args.host, port)
        return server

    return serve(loop, start)


if __name__ == "__main__":
    sys.exit(main())
