"""Sans-I/O WebSocket (RFC 6455): the opening handshake and the connection core.

Nothing in this package touches a socket or an event loop: a connection asks
its seam (:mod:`fastsock.websocket.seam`) for every I/O operation, and the glue
in :mod:`fastsock.server`, :mod:`fastsock.client` and
:mod:`fastsock.adapters.aio` feeds it from transports. Sending one message to
many connections is the hub layer's job (:mod:`fastsock.pubsub.fanout`).
"""
from .handshake import Headers, Request, Response, accept_key, parse_uri
from .protocol import (
    Extension,
    State,
    TurnFlush,
    WebSocketHandler,
    WebSocketOptions,
    encode_message,
    is_valid_close_code,
)

__all__ = [
    "Extension",
    "Headers",
    "Request",
    "Response",
    "State",
    "TurnFlush",
    "WebSocketHandler",
    "WebSocketOptions",
    "accept_key",
    "encode_message",
    "is_valid_close_code",
    "parse_uri",
]
