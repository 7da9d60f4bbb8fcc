"""A TCP echo server on fastsock's reactor.

    python examples/tcp_echo_server.py [--host 127.0.0.1] [--port 9000]

Stop it with Ctrl-C or SIGTERM: it stops accepting, flushes what it still has
to send (up to 5 s) and exits 0. Try it with ``examples/tcp_client.py``.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from fastsock.reactor import Reactor
from fastsock.transports import Protocol
from fastsock.transports.tcp import create_tcp_server


class Echo(Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once the echo of everything received is flushed

    # back-pressure: a client that does not read makes us stop reading it
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    reactor = Reactor()
    server = create_tcp_server(reactor, Echo, args.host, args.port)
    reactor.install_shutdown_signals(timeout=5.0)
    for host, port in server.addresses:
        print(f"echo server listening on {host}:{port}", flush=True)
    try:
        reactor.run_forever()
    finally:
        print(f"stopped; {server.stats['accepted']} connections served", flush=True)
        reactor.close()


if __name__ == "__main__":
    main()
