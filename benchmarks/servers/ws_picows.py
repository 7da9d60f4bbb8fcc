"""WebSocket echo or broadcast with picows (on uvloop by default).

    python -m benchmarks.servers.ws_picows --port 9000 [--mode broadcast] [--loop asyncio]
    python -m benchmarks.servers.ws_picows --port 9000 --tls server.pem server.key   # wss

Echo sends every frame back with its type and FIN bit; broadcast writes
every data frame to every connected transport; picows answers pings itself."""
from __future__ import annotations

import sys

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from benchmarks.aio_loops import server_ssl_context
from benchmarks.servers._common import new_loop, parser, ready, serve

DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "", modes=("echo", "broadcast"), loops=("uvloop", "asyncio"))
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve wss:// with this certificate and key")
    args = p.parse_args(argv)
    ssl_ctx = server_ssl_context(*args.tls) if args.tls else None
    loop = new_loop(args.loop)
    clients: set[WSTransport] = set()
    broadcast = args.mode == "broadcast"

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: WSTransport) -> None:
            clients.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            clients.discard(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind in DATA:
                if broadcast:
                    payload = frame.get_payload_as_bytes()
                    for t in clients:
                        t.send(kind, payload, frame.fin)
                else:
                    transport.send(kind, frame.get_payload_as_memoryview(), frame.fin)
            elif kind == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    def factory(request: WSUpgradeRequest) -> WSListener:
        return Listener()

    async def start():  # type: ignore[no-untyped-def]
        server = await ws_create_server(factory, args.host, args.port, max_frame_size=64 << 20, backlog=4096,
                                        ssl=ssl_ctx)
        ready(f"picows {args.mode}", "wss" if ssl_ctx else "ws", args.host, server.sockets[0].getsockname()[1])
        return server

    return serve(loop, start)


if __name__ == "__main__":
    sys.exit(main())
