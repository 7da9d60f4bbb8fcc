"""fastsock: thousands of TCP, UDP and WebSocket connections on one thread, fast.

Public names are resolved lazily so that ``import fastsock`` stays cheap and
each layer is imported only when it is used.
"""
from __future__ import annotations

import importlib
from typing import Any

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
    "broadcast": "fastsock.websocket",
    "encode_message": "fastsock.websocket",
    "WebSocketServer": "fastsock.server",
    # coroutine handlers, or WebSocketHandler classes with reactor= (fastsock.server/client)
    "serve": "fastsock.coroutine",
    "connect": "fastsock.coroutine",
    "Connection": "fastsock.coroutine",
    "Server": "fastsock.coroutine",
    "CloseCode": "fastsock.frame",
    "ConnectionClosed": "fastsock.exceptions",
    "ConnectionClosedOK": "fastsock.exceptions",
    "ConnectionClosedError": "fastsock.exceptions",
    "InvalidResponseError": "fastsock.exceptions",
    "ConnectTimeoutError": "fastsock.exceptions",
    # scale-out
    "run_workers": "fastsock.workers",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastsock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
