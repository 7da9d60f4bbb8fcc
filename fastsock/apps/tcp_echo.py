"""``python -m fastsock serve tcp-echo``: echo every byte back.

:class:`EchoProtocol` has asyncio's Protocol shape, so the same class runs
unchanged on fastsock's reactor, asyncio's loop and uvloop's loop (the
benchmarks compare exactly that). It respects back-pressure: when the peer
stops reading and the write buffer passes its high-water mark, it stops
reading from that peer until the buffer drains, so memory stays bounded.
"""
from __future__ import annotations

import argparse
from typing import Any

from fastsock.apps._common import Connections, add_common_arguments, prepare, serve_tcp
from fastsock.apps._workers import add_worker_arguments

__all__ = ["DEFAULT_PORT", "DESCRIPTION", "EchoProtocol", "add_arguments", "run"]

DESCRIPTION = "TCP echo server: sends every byte back to its sender"
DEFAULT_PORT = 9000


class EchoProtocol:
    """Echo protocol for any loop with asyncio's transport/protocol shape."""

    __slots__ = ("transport", "connections")

    def __init__(self, connections: Connections | None = None) -> None:
        self.transport: Any = None
        self.connections = connections

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.connections is not None:
            self.connections.add(transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        # Returning False closes our side once everything buffered is sent:
        # a client that half-closes still receives all of its echo.
        return False

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.connections is not None:
            self.connections.discard(self.transport)
        self.transport = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, DEFAULT_PORT)
    add_worker_arguments(parser)


def run(args: argparse.Namespace) -> int:
    prepare(args)
    connections = Connections()
    return serve_tcp(getattr(args, "app", "tcp-echo"), lambda: EchoProtocol(connections),
                     args, connections=connections)
