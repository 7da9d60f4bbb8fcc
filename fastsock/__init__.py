"""fastsock: thousands of TCP, UDP and WebSocket connections on one thread, fast.

Public names are resolved lazily so that ``import fastsock`` stays cheap and
each layer is imported only when it is used.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # the event loop (asyncio's contract; uvloop's entry points)
    "Reactor": "fastsock.reactor",
    "EventLoopPolicy": "fastsock.reactor",
    "new_event_loop": "fastsock.reactor",
    "install": "fastsock.reactor",
    "run": "fastsock.reactor",
    "Handle": "fastsock.reactor",
    "TimerHandle": "fastsock.reactor",
    "Future": "fastsock.reactor",
    # transports
    "Protocol": "fastsock.transports.base",
    "BufferedProtocol": "fastsock.transports.base",
    "DatagramProtocol": "fastsock.transports.base",
    "create_tcp_server": "fastsock.transports.tcp",
    "create_tcp_connection": "fastsock.transports.tcp",
    "TCPServer": "fastsock.transports.tcp",
    "TCPTransport": "fastsock.transports.tcp",
    "StreamTransport": "fastsock.transports.stream",
    "create_udp_endpoint": "fastsock.transports.udp",
    "UDPTransport": "fastsock.transports.udp",
    # OS facts
    "limits": "fastsock.limits",
    "LimitsReport": "fastsock.limits",
    "DescriptorWatch": "fastsock.limits",
    "raise_nofile": "fastsock.limits",
    "format_report": "fastsock.limits",
    # WebSocket
    "WebSocketHandler": "fastsock.websocket",
    "WebSocketOptions": "fastsock.websocket",
    "Extension": "fastsock.websocket",
    "broadcast": "fastsock.pubsub.fanout",
    "encode_message": "fastsock.websocket",
    "WebSocketServer": "fastsock.server",
    "Request": "fastsock.websocket",
    "Response": "fastsock.websocket",
    "Headers": "fastsock.websocket",
    "State": "fastsock.websocket",
    # coroutine handlers, or WebSocketHandler classes with reactor= (fastsock.server/client)
    "serve": "fastsock.coroutine",
    "connect": "fastsock.coroutine",
    "Connection": "fastsock.coroutine",
    "Server": "fastsock.coroutine",
    "CloseCode": "fastsock.frame",
    # the exception tree (fastsock/exceptions.py), every class
    "FastsockError": "fastsock.exceptions",
    "ReactorClosedError": "fastsock.exceptions",
    "InvalidStateError": "fastsock.exceptions",
    "ConnectTimeoutError": "fastsock.exceptions",
    "ProtocolError": "fastsock.exceptions",
    "FrameError": "fastsock.exceptions",
    "InvalidUTF8Error": "fastsock.exceptions",
    "PolicyViolationError": "fastsock.exceptions",
    "MessageTooBigError": "fastsock.exceptions",
    "UnsupportedDataError": "fastsock.exceptions",
    "HandshakeError": "fastsock.exceptions",
    "InvalidHandshakeError": "fastsock.exceptions",
    "InvalidResponseError": "fastsock.exceptions",
    "ConnectionClosed": "fastsock.exceptions",
    "ConnectionClosedOK": "fastsock.exceptions",
    "ConnectionClosedError": "fastsock.exceptions",
    # scale-out
    "run_workers": "fastsock.workers",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    # The same names for type checkers, which do not run __getattr__: without
    # these every fastsock.X is Any to mypy. "X as X" re-exports under --strict;
    # tests/test_top_level_names.py checks that these and _EXPORTS agree.
    from .coroutine import (Connection as Connection, Server as Server, connect as connect,
                            serve as serve)
    from .exceptions import (ConnectionClosed as ConnectionClosed,
                             ConnectionClosedError as ConnectionClosedError,
                             ConnectionClosedOK as ConnectionClosedOK,
                             ConnectTimeoutError as ConnectTimeoutError,
                             FastsockError as FastsockError, FrameError as FrameError,
                             HandshakeError as HandshakeError,
                             InvalidHandshakeError as InvalidHandshakeError,
                             InvalidResponseError as InvalidResponseError,
                             InvalidStateError as InvalidStateError,
                             InvalidUTF8Error as InvalidUTF8Error,
                             MessageTooBigError as MessageTooBigError,
                             PolicyViolationError as PolicyViolationError,
                             ProtocolError as ProtocolError,
                             ReactorClosedError as ReactorClosedError,
                             UnsupportedDataError as UnsupportedDataError)
    from .frame import CloseCode as CloseCode
    from .pubsub.fanout import broadcast as broadcast
    from .limits import (DescriptorWatch as DescriptorWatch, LimitsReport as LimitsReport,
                         format_report as format_report, limits as limits,
                         raise_nofile as raise_nofile)
    from .reactor import (EventLoopPolicy as EventLoopPolicy, Future as Future, Handle as Handle,
                          Reactor as Reactor, TimerHandle as TimerHandle, install as install,
                          new_event_loop as new_event_loop, run as run)
    from .server import WebSocketServer as WebSocketServer
    from .transports.base import (BufferedProtocol as BufferedProtocol,
                                  DatagramProtocol as DatagramProtocol, Protocol as Protocol)
    from .transports.stream import StreamTransport as StreamTransport
    from .transports.tcp import (TCPServer as TCPServer, TCPTransport as TCPTransport,
                                 create_tcp_connection as create_tcp_connection,
                                 create_tcp_server as create_tcp_server)
    from .transports.udp import (UDPTransport as UDPTransport,
                                 create_udp_endpoint as create_udp_endpoint)
    from .websocket import (Extension as Extension, Headers as Headers, Request as Request,
                            Response as Response, State as State,
                            WebSocketHandler as WebSocketHandler,
                            WebSocketOptions as WebSocketOptions,
                            encode_message as encode_message)
    from .workers import run_workers as run_workers


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastsock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
