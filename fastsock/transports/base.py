"""Protocols and the transport base class, in asyncio's shape.

The protocol classes *are* asyncio's (subclasses with no extra state), so a
protocol written against them runs unchanged on fastsock's reactor, on
asyncio's loop and on uvloop's loop -- both of which choose the read path with
``isinstance(protocol, asyncio.BufferedProtocol)``. Plain duck-typed protocols
work here too: fastsock only looks for ``get_buffer``.

:class:`BaseTransport` holds what every transport shares: extra info, the
protocol, write-buffer watermarks with ``pause_writing``/``resume_writing``,
and fatal-error reporting.
"""
from __future__ import annotations

import abc

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..reactor import Reactor

__all__ = [
    "BaseProtocol", "Protocol", "BufferedProtocol", "DatagramProtocol",
    "BaseTransport", "DEFAULT_HIGH_WATER", "DEFAULT_LOW_WATER",
]

logger = logging.getLogger("fastsock.transports")

DEFAULT_HIGH_WATER = 64 * 1024
DEFAULT_LOW_WATER = 16 * 1024


class BaseProtocol(asyncio.BaseProtocol):
    """``connection_made``, ``connection_lost``, ``pause_writing``, ``resume_writing``."""

    __slots__ = ()


class Protocol(BaseProtocol, asyncio.Protocol):
    """A stream protocol: ``data_received(bytes)`` and ``eof_received()``.

    ``eof_received`` returning a true value keeps the transport open for
    writing (half-close); otherwise the transport closes itself.
    """

    __slots__ = ()


class BufferedProtocol(BaseProtocol, asyncio.BufferedProtocol):
    """A stream protocol that owns its receive buffer.

    ``get_buffer(sizehint)`` returns a writable buffer; the transport receives
    straight into it and calls ``buffer_updated(nbytes)``: no copy, no
    per-read ``bytes`` object.
    """

    __slots__ = ()


class DatagramProtocol(BaseProtocol, asyncio.DatagramProtocol):
    """``datagram_received(data, addr)`` and ``error_received(exc)``."""

    __slots__ = ()


def is_buffered_protocol(protocol: Any) -> bool:
    return isinstance(protocol, asyncio.BufferedProtocol) or (
        callable(getattr(protocol, "get_buffer", None))
        and callable(getattr(protocol, "buffer_updated", None)))


class BaseTransport(asyncio.BaseTransport, metaclass=abc.ABCMeta):
    """State and behaviour shared by fastsock's transports.

    They are asyncio's transport classes (``isinstance(t, asyncio.Transport)``
    holds for the stream transport, ``asyncio.DatagramTransport`` for UDP),
    so code that checks the type accepts them.
    """

    def __init__(self, reactor: Reactor, protocol: Any, extra: dict[str, Any] | None = None) -> None:
        self._reactor = reactor
        self._protocol = protocol
        self._extra: dict[str, Any] = extra if extra is not None else {}
        self._closing = False
        self._buffer_size = 0
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_LOW_WATER
        self._protocol_paused = False

    # ----------------------------------------------------------- extras
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing

    # --------------------------------------------------- flow control
    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, as asyncio returns them."""
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Watermarks for ``pause_writing``/``resume_writing``.

        ``high`` defaults to 64 KiB (or 4 x ``low``), ``low`` to 16 KiB (or
        ``high`` / 4). ``pause_writing`` is called when the buffer grows past
        ``high``, ``resume_writing`` when it drains to ``low`` or below.
        """
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._buffer_size <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._reactor.call_exception_handler({
                "message": "protocol.pause_writing() failed",
                "exception": exc, "transport": self, "protocol": self._protocol,
            })

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffer_size <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._reactor.call_exception_handler({
                    "message": "protocol.resume_writing() failed",
                    "exception": exc, "transport": self, "protocol": self._protocol,
                })

    # -------------------------------------------------------- errors
    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """Report ``exc`` and abort. Socket errors (peer gone) are not reported:
        they are part of normal life and reach the protocol via
        ``connection_lost(exc)``."""
        if not isinstance(exc, OSError):
            self._reactor.call_exception_handler({
                "message": message, "exception": exc,
                "transport": self, "protocol": self._protocol,
            })
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("%r: %s", self, message, exc_info=True)
        self._force_close(exc)

    @abc.abstractmethod
    def _force_close(self, exc: BaseException | None) -> None:
        """Close now, dropping what is queued (each transport knows its socket)."""

    def abort(self) -> None:
        self._force_close(None)
