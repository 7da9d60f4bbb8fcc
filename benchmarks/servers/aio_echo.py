"""TCP echo written once against asyncio's API, run on the loop a flag picks.

    python -m benchmarks.servers.aio_echo --port 9000 --loop fastsock
    python -m benchmarks.servers.aio_echo --port 9000 --loop uvloop --mode streams
    python -m benchmarks.servers.aio_echo --port 9000 --loop asyncio --tls server.pem server.key

``--mode protocol``: an ``asyncio.Protocol`` that writes back what it receives
(``loop.create_server``).  ``--mode streams``: ``asyncio.start_server`` with a
handler that reads, writes and drains.  ``--tls CERT KEY`` serves TLS on the
same code (``ssl=``).  Nothing below depends on the loop: the comparison is
of the loops alone.
"""
from __future__ import annotations

import asyncio
import sys

from benchmarks.aio_loops import LOOPS, new_loop, server_ssl_context, unavailable
from benchmarks.servers._common import parser, ready, serve

# What one read asks for in the streams handler: more than any message the
# load generator sends, so one read takes whatever has arrived.
STREAMS_READ_SIZE = 256 * 1024
BACKLOG = 4096
MODES = ("protocol", "streams")


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(STREAMS_READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "", modes=MODES, loops=LOOPS)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve TLS with this certificate and key")
    args = p.parse_args(argv)
    why = unavailable(args.loop)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    ssl_ctx = server_ssl_context(*args.tls) if args.tls else None
    loop = new_loop(args.loop)
    scheme = "tls" if ssl_ctx else "tcp"

    async def start() -> asyncio.AbstractServer:
        if args.mode == "streams":
            server = await asyncio.start_server(echo_stream, args.host, args.port, backlog=BACKLOG, ssl=ssl_ctx)
        else:
            server = await loop.create_server(Echo, args.host, args.port, backlog=BACKLOG, ssl=ssl_ctx)
        port = server.sockets[0].getsockname()[1]
        ready(f"{args.loop} aio-echo {args.mode}", scheme, args.host, port)
        return server

    return serve(loop, start)


if __name__ == "__main__":
    sys.exit(main())
