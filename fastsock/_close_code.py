"""RFC 6455 close codes as an IntEnum (public as ``fastsock.frame.CloseCode``
and ``fastsock.CloseCode``).

A leaf module with no fastsock imports, so that ``fastsock.exceptions`` (which
the compiled codec imports) can use the names without an import cycle.
Names follow the IANA "WebSocket Close Code Number Registry" as spelled by
the ``websockets`` library. See docs/close-codes.md.
"""
from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """A WebSocket close code; compares equal to its ``int`` value."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved and has no meaning
    NO_STATUS_RCVD = 1005      # never on the wire: the close frame had no code
    ABNORMAL_CLOSURE = 1006    # never on the wire: no close frame at all
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015       # never on the wire: the TLS handshake failed


__all__ = ["CloseCode"]
