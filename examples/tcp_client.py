"""A TCP client on fastsock's reactor: send lines, half-close, print the answer.

    python examples/tcp_client.py [--host 127.0.0.1] [--port 9000] [message ...]

Against ``examples/tcp_echo_server.py`` it prints every message back. It shows
the client side of the API: ``create_tcp_connection`` (a future), the
connect timeout, ``write_eof`` (half-close) and a timer with ``call_later``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from fastsock.exceptions import ConnectTimeoutError
from fastsock.reactor import Reactor
from fastsock.transports import Protocol
from fastsock.transports.tcp import create_tcp_connection


class LineClient(Protocol):
    def __init__(self, reactor: Reactor, messages: list[str]) -> None:
        self.reactor = reactor
        self.messages = messages
        self.received = bytearray()
        self.done = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.writelines(m.encode() + b"\n" for m in self.messages)
        transport.write_eof()  # "that is all": the server closes after the echo
        # give up if the answer takes too long
        self.timer = self.reactor.call_later(5.0, transport.abort)

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.timer.cancel()
        self.done = True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("messages", nargs="*", default=["hello", "fastsock"])
    args = parser.parse_args()

    reactor = Reactor()
    try:
        future = create_tcp_connection(reactor, lambda: LineClient(reactor, args.messages),
                                       args.host, args.port, timeout=3.0)
        try:
            transport, client = reactor.run_until_complete(future)
        except (ConnectionRefusedError, ConnectTimeoutError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        reactor.run_until(lambda: client.done, timeout=10)
        sys.stdout.write(client.received.decode(errors="replace"))
        return 0
    finally:
        reactor.close()


if __name__ == "__main__":
    sys.exit(main())
