"""WebSocket echo or broadcast with aiohttp's server.

    python -m benchmarks.servers.ws_aiohttp --port 9000 [--mode broadcast] [--loop uvloop]

Any path; no compression, no message size limit, automatic pongs.
Broadcast sends to every client in turn (aiohttp's send is a coroutine)."""
from __future__ import annotations

import sys

from aiohttp import WSMsgType, web

from benchmarks.servers._common import new_loop, parser, ready, serve


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "", modes=("echo", "broadcast"), loops=("uvloop", "asyncio")).parse_args(argv)
    loop = new_loop(args.loop)
    clients: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=False, autoping=True)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    targets = clients if args.mode == "broadcast" else (ws,)
                    for t in list(targets):
                        if not t.closed:
                            await t.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    targets = clients if args.mode == "broadcast" else (ws,)
                    for t in list(targets):
                        if not t.closed:
                            await t.send_bytes(msg.data)
        finally:
            clients.discard(ws)
        return ws

    async def start() -> _Closer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        ready(f"aiohttp {args.mode}", "ws", args.host, port)
        return _Closer(runner)

    return serve(loop, start)


class _Closer:
    def __init__(self, runner: web.AppRunner) -> None:
        self.runner = runner

    async def close(self) -> None:
        await self.runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
