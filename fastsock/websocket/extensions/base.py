"""The extension hook (RFC 6455 section 9) and the factory protocols.

An :class:`Extension` is one negotiated extension on one connection: it
transforms whole messages on their way out (``encode``) and in (``decode``).
Factories negotiate them during the opening handshake:

- a server factory (:class:`ServerExtensionFactory`) looks at one offer from
  the client's ``Sec-WebSocket-Extensions`` header and accepts it (returning
  the response parameters and the extension) or declines it (``None``); an
  offer that breaks the header grammar raises :class:`MalformedOfferError`,
  which the server answers with HTTP 400;
- a client factory (:class:`ClientExtensionFactory`) writes its offer and
  checks the server's answer; an answer it cannot accept raises
  :class:`ExtensionResponseError`, which fails the handshake.

The model follows the ``websockets`` library's ``extensions/base.py``.
"""
from __future__ import annotations

from typing import Optional, Protocol, Sequence

from ...exceptions import InvalidHandshakeError, InvalidResponseError

__all__ = [
    "ClientExtensionFactory",
    "Extension",
    "ExtensionResponseError",
    "MalformedOfferError",
    "Params",
    "ServerExtensionFactory",
]

# One offer's (or answer's) parameters as parsed from the header:
# lower-cased names, values unquoted, None for a parameter without a value.
Params = Sequence[tuple[str, Optional[str]]]


class MalformedOfferError(InvalidHandshakeError):
    """A client's extension offer breaks the header grammar (RFC 6455 9.1):
    the server answers 400 instead of declining it."""

    status = 400


class ExtensionResponseError(InvalidResponseError):
    """The server's answer to our extension offer is invalid or was not
    offered like that: the client fails the handshake (RFC 6455 4.1)."""

    status = 101


class Extension:
    """A negotiated extension on one connection.

    ``rsv`` names the RSV bits the extension may set (the frame parser
    rejects the others with 1002). ``decode`` turns a received message (the
    RSV bits of its first frame, its opcode and whole payload) into plain
    data, and must stop with :class:`~fastsock.exceptions.MessageTooBigError`
    as soon as the output passes ``max_size`` bytes (``None``: no limit) —
    while decoding, not after, so a small message cannot make the process
    hold more than the limit. ``encode`` turns an outgoing message into
    ``(rsv, payload)``. Extensions are applied in negotiation order for
    ``encode`` and in reverse order for ``decode``. ``release`` is called
    when the connection closes (free buffers, compressors...).
    """

    name = ""
    rsv = 0

    def decode(self, rsv: int, opcode: int, payload: bytes,
               max_size: Optional[int] = None) -> bytes:
        return payload

    def encode(self, opcode: int, payload: bytes) -> tuple[int, bytes]:
        return 0, payload

    def release(self) -> None:
        """The connection is gone: drop whatever the extension holds."""


class ServerExtensionFactory(Protocol):
    """Negotiates an extension on the server side."""

    name: str

    def accept(self, params: Params) -> Optional[tuple[str, Extension]]:
        """Answer one offer: ``(response, extension)`` to accept it, where
        ``response`` is the item for the ``Sec-WebSocket-Extensions``
        response header; ``None`` to decline it (the server then tries the
        client's next offer). Raise :class:`MalformedOfferError` for an
        offer that is not even well-formed (HTTP 400)."""
        ...


class ClientExtensionFactory(Protocol):
    """Negotiates an extension on the client side."""

    name: str

    def offer(self) -> str:
        """The item(s) for the ``Sec-WebSocket-Extensions`` request header."""
        ...

    def accept(self, params: Params) -> Optional[Extension]:
        """Check the server's answer; the extension, or ``None`` (or
        :class:`ExtensionResponseError`) to fail the handshake."""
        ...
