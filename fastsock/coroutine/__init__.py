"""The coroutine API: ``async def handler(ws)``, ``await ws.recv()``, ``async for``.

It sits on the same glue and per-connection core as the callback API
(:class:`~fastsock.websocket.WebSocketHandler`) and runs on any asyncio
loop: fastsock's, asyncio's or uvloop's. Guide: docs/coroutine-api.md.
"""
from .client import Connect, connect
from .connection import DEFAULT_MAX_QUEUE, Connection, ConnectionCore
from .server import Server, is_coroutine_handler, serve

__all__ = ["Connect", "Connection", "ConnectionCore", "DEFAULT_MAX_QUEUE", "Server",
           "connect", "is_coroutine_handler", "serve"]
