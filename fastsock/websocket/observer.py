"""What a connection reports to whoever owns it.

The connection core never calls up into a server: a server (or anything
else that keeps connections, counts them and exports metrics) hands each
connection an object with these methods as ``handler.server``, and the core
reports through them. All are cold-path events; per-message counters are
fields of the connection, summed when read.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .protocol import WebSocketHandler

__all__ = ["ConnectionObserver"]


class ConnectionObserver(Protocol):
    def connection_closed(self, handler: "WebSocketHandler") -> None:
        """``handler`` is gone (after its ``on_close``): forget it."""

    def control_frame(self, key: str, size: int) -> None:
        """A ping or pong went in or out: ``key`` is ``ping_in``,
        ``ping_out``, ``pong_in`` or ``pong_out``; ``size`` its payload."""

    def write_limit_crossed(self, policy: str, buffered: int) -> None:
        """A write buffer passed ``write_limit`` (``buffered`` bytes); the
        connection applies its slow-peer ``policy``."""

    def message_dropped(self) -> None:
        """The slow-peer policy did not send a message."""

    def ping_answered(self, seconds: float) -> None:
        """A ping of ours was answered after ``seconds``."""
