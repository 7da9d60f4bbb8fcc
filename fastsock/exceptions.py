"""One exception tree for fastsock.

Socket-level failures stay builtin :class:`OSError` subclasses
(``ConnectionRefusedError``, ``ConnectionResetError``...) as in asyncio; the
classes here describe what fastsock itself decides::

    FastsockError
    ├── ReactorClosedError          the reactor was closed; nothing can be scheduled
    ├── InvalidStateError           an operation that the current state forbids
    ├── ConnectTimeoutError         (also TimeoutError) connect did not finish in time
    ├── ProtocolError               the peer broke RFC 6455; carries close_code
    │   ├── FrameError              malformed frame header/opcode/RSV/masking (1002)
    │   ├── InvalidUTF8Error        text payload or close reason is not UTF-8 (1007)
    │   ├── PolicyViolationError    application policy refused the data (1008)
    │   ├── MessageTooBigError      frame or message exceeds a configured limit (1009)
    │   └── UnsupportedDataError    a data type the endpoint does not accept (1003)
    ├── HandshakeError              the opening handshake failed; carries status
    │   ├── InvalidHandshakeError   server side: the request is not a valid upgrade
    │   └── InvalidResponseError    client side: the server did not answer 101 properly
    └── ConnectionClosed            a WebSocket is closed; carries code and reason
        ├── ConnectionClosedOK      closed with 1000 or 1001
        └── ConnectionClosedError   closed with any other code (1006: abrupt)

Errors name who is at fault in their message: "peer sent ..." for remote
errors, "cannot ... while ..." for local misuse.
"""
from __future__ import annotations

from ._close_code import CloseCode

__all__ = [
    "FastsockError",
    "ReactorClosedError",
    "InvalidStateError",
    "ConnectTimeoutError",
    "ProtocolError",
    "FrameError",
    "InvalidUTF8Error",
    "PolicyViolationError",
    "MessageTooBigError",
    "UnsupportedDataError",
    "HandshakeError",
    "InvalidHandshakeError",
    "InvalidResponseError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
]


class FastsockError(Exception):
    """Root of every exception fastsock raises itself."""


class ReactorClosedError(FastsockError, RuntimeError):
    """The reactor was closed; nothing can be scheduled on it."""


class InvalidStateError(FastsockError, AssertionError):
    """An operation that the current state forbids (a bug in the caller)."""


class ConnectTimeoutError(FastsockError, TimeoutError):
    """A connect (TCP or WebSocket handshake) did not finish in time."""


class ProtocolError(FastsockError):
    """The peer broke the protocol. ``close_code`` is the RFC 6455 code to send."""

    close_code: int = CloseCode.PROTOCOL_ERROR

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        if close_code is not None:
            self.close_code = close_code


class FrameError(ProtocolError):
    """A malformed frame: reserved opcode or bits, bad length, masking rule."""

    close_code = CloseCode.PROTOCOL_ERROR


class InvalidUTF8Error(ProtocolError):
    """A text message or close reason is not valid UTF-8."""

    close_code = CloseCode.INVALID_DATA


class PolicyViolationError(ProtocolError):
    """The data violates the endpoint's policy."""

    close_code = CloseCode.POLICY_VIOLATION


class MessageTooBigError(ProtocolError):
    """A frame or message is larger than the configured maximum."""

    close_code = CloseCode.MESSAGE_TOO_BIG


class UnsupportedDataError(ProtocolError):
    """The endpoint does not accept this kind of data."""

    close_code = CloseCode.UNSUPPORTED_DATA


class HandshakeError(FastsockError):
    """The opening handshake failed. ``status`` is the HTTP status involved."""

    status: int = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidHandshakeError(HandshakeError):
    """Server side: the request is not an acceptable WebSocket upgrade."""


class InvalidResponseError(HandshakeError):
    """Client side: the server did not complete the upgrade (non-101 or bad accept)."""


class ConnectionClosed(FastsockError):
    """The WebSocket connection is closed."""

    def __init__(self, code: int = CloseCode.ABNORMAL_CLOSURE, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or abruptly (1006)."""
