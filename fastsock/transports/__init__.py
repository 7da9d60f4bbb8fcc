"""Transports: asyncio-shaped protocols and transports on the fastsock reactor.

``fastsock.transports.tcp`` (streams), ``.udp`` (datagrams); the protocol base
classes live in ``.base``.
"""
from __future__ import annotations

from .base import BaseProtocol, BaseTransport, BufferedProtocol, DatagramProtocol, Protocol
from .tcp import TCPServer, TCPTransport, create_tcp_connection, create_tcp_server

__all__ = [
    "BaseProtocol", "Protocol", "BufferedProtocol", "DatagramProtocol", "BaseTransport",
    "TCPServer", "TCPTransport", "create_tcp_server", "create_tcp_connection",
]
