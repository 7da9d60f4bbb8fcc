"""Reference echo servers to validate the conformance suite against.

    python tests/conformance/ref_server.py {websockets,websockets-deflate,picows,aiohttp} [--port N]

Each echoes every message with its type on any path, with message size
limits lifted (conformance cases send 16 MiB), no compression (except
``websockets-deflate``: the websockets library's permessage-deflate at its
defaults, the reference for cases 12 and 13) and no keep-alive pings, and prints ``<name> echo listening on ws://H:P`` when ready,
like ``python -m fastsock serve echo``.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys


async def _websockets(host: str, port: int, compression: str | None = None) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, host, port, max_size=None, compression=compression,
                     ping_interval=None) as server:
        await _announce("websockets", server)


async def _websockets_deflate(host: str, port: int) -> None:
    await _websockets(host, port, compression="deflate")


async def _picows(host: str, port: int) -> None:
    # picows is frame-level: echo each frame as it comes (no reassembly, and
    # no UTF-8 validation of its own)
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                transport.send(frame.msg_type, frame.get_payload_as_bytes(), frame.fin)

    server = await ws_create_server(lambda _request: Echo(), host, port,
                                    max_frame_size=64 * 2 ** 20)
    async with server:
        await _announce("picows", server)


async def _aiohttp(host: str, port: int) -> None:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True, compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await _announce("aiohttp", site._server)  # noqa: SLF001 - only to read the bound port
    finally:
        await runner.cleanup()


async def _announce(name: str, server) -> None:
    host, port = server.sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"{name} echo listening on ws://{shown}:{port}", flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop


SERVERS = {"websockets": _websockets, "websockets-deflate": _websockets_deflate, "picows": _picows, "aiohttp": _aiohttp}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(SERVERS[args.server](args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
