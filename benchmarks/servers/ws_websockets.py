"""WebSocket echo or broadcast with the websockets library (asyncio API).

    python -m benchmarks.servers.ws_websockets --port 9000 [--mode broadcast] [--loop uvloop]
    python -m benchmarks.servers.ws_websockets --port 9000 --compression deflate   # websockets' default
    python -m benchmarks.servers.ws_websockets --port 9000 --tls server.pem server.key   # wss

No compression (unless --compression deflate: permessage-deflate with
websockets' own defaults), no size limit, no keepalive pings: the same work
as the other servers.  Broadcast uses websockets.broadcast (one frame, written to
every connection, no back-pressure)."""
from __future__ import annotations

import sys

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve

from benchmarks.aio_loops import server_ssl_context
from benchmarks.servers._common import new_loop, parser, ready, serve


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "", modes=("echo", "broadcast"), loops=("uvloop", "asyncio"))
    p.add_argument("--compression", choices=("none", "deflate"), default="none",
                   help="deflate: accept permessage-deflate with websockets' defaults")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve wss:// with this certificate and key")
    args = p.parse_args(argv)
    ssl_ctx = server_ssl_context(*args.tls) if args.tls else None
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
                                compression="deflate" if args.compression == "deflate" else None,
                                max_size=None, ping_interval=None, backlog=4096, ssl=ssl_ctx)
        port = next(iter(server.sockets)).getsockname()[1]
        ready(f"websockets {args.mode}", "wss" if ssl_ctx else "ws", args.host, port)
        return server

    return serve(loop, start)


if __name__ == "__main__":
    sys.exit(main())
