"""Sans-I/O WebSocket (RFC 6455): the opening handshake and the connection core.

Nothing in this package touches a socket or an event loop; the glue in
:mod:`fastsock.server`, :mod:`fastsock.client` and :mod:`fastsock.adapters.aio`
feeds it from transports.
"""
from .handshake import Headers, Request, Response, accept_key, parse_uri
from .protocol import (
    Extension,
    State,
    TurnFlush,
    WebSocketHandler,
    WebSocketOptions,
    broadcast,
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
    "broadcast",
    "encode_message",
    "is_valid_close_code",
    "parse_uri",
]
