"""UDP echo on asyncio's or uvloop's loop: the reference for fastsock's UDP.

    python -m benchmarks.servers.udp_echo --port 9000 --loop uvloop
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any

from benchmarks.servers._common import new_loop, parser, ready, serve


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__ or "", loops=("asyncio", "uvloop")).parse_args(argv)
    loop = new_loop(args.loop)

    async def start() -> asyncio.BaseTransport:
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(args.host, args.port))
        ready(f"{args.loop} udp-echo", "udp", args.host, transport.get_extra_info("sockname")[1])
        return transport

    return serve(loop, start)


if __name__ == "__main__":
    sys.exit(main())
