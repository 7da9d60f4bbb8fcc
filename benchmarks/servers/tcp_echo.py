"""TCP echo on asyncio's or uvloop's loop: the reference for fastsock's reactor.

    python -m benchmarks.servers.tcp_echo --port 9000 --loop uvloop
"""
from __future__ import annotations

import asyncio
import sys

from benchmarks.servers._common import new_loop, parser, ready, serve


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "", loops=("asyncio", "uvloop")).parse_args(argv)
    loop = new_loop(args.loop)

    async def start() -> asyncio.AbstractServer:
        server = await loop.create_server(Echo, args.host, args.port, backlog=4096)
        ready(f"{args.loop} tcp-echo", "tcp", args.host, server.sockets[0].getsockname()[1])
        return server

    return serve(loop, start)


if __name__ == "__main__":
    sys.exit(main())
