"""permessage-deflate (RFC 7692): negotiation on both sides and the extension.

- :class:`ServerPerMessageDeflate`: a server's factory; pass it in a
  server's ``extensions`` (``serve(..., compression="deflate")`` adds one
  with the defaults).
- :class:`ClientPerMessageDeflate`: a client's factory (``connect`` offers
  one by default).
- :class:`PerMessageDeflate`: the negotiated extension of one connection.

The per-message work (zlib) is compiled (``_deflate.pyx``, twin
``_deflate_py.py``). docs/compression.md has the settings, their memory cost
per connection and the measurements behind the defaults.

Answers to a client's offer (RFC 7692 section 5 and 7.1): an offer whose
parameters break the header grammar (an empty name or value, a character
that is not a token's) raises :class:`MalformedOfferError` → HTTP 400; a
well-formed offer the server cannot take (an unknown or repeated parameter,
a value out of range or on a flag, ``server_max_window_bits=8``, which zlib
cannot compress with) is declined, and the server tries the next offer. On
the client, any answer that is not valid for the offer fails the handshake
(:class:`ExtensionResponseError`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from ..._switch import compiled
from .base import (
    Extension,
    ExtensionResponseError,
    MalformedOfferError,
    Params,
)

if TYPE_CHECKING:
    from .. import _deflate_py as _zimpl
else:
    _zimpl = compiled("fastsock.websocket._deflate")
    if _zimpl is None:
        from .. import _deflate_py as _zimpl

Compressor = _zimpl.Compressor
Decompressor = _zimpl.Decompressor
IMPLEMENTATION: str = _zimpl.IMPLEMENTATION

__all__ = [
    "ClientPerMessageDeflate",
    "Compression",
    "DEFAULT_CLIENT_MAX_WINDOW_BITS",
    "DEFAULT_COMPRESSION_LEVEL",
    "DEFAULT_MEM_LEVEL",
    "DEFAULT_SERVER_MAX_WINDOW_BITS",
    "DEFAULT_THRESHOLD",
    "DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER",
    "EXTENSION_NAME",
    "IMPLEMENTATION",
    "PerMessageDeflate",
    "ServerPerMessageDeflate",
    "ContextPool",
    "DEFAULT_ACTIVE_CONTEXTS",
    "client_factories",
    "set_active_contexts",
    "server_factories",
]

EXTENSION_NAME = "permessage-deflate"
RSV1 = 0x40

# Defaults, chosen by measurement (docs/compression.md): a 12-bit window
# and memLevel 5 cost about a fifth of zlib's 15/8 per connection and lose
# a few percent of ratio on chat/JSON-sized messages.
DEFAULT_SERVER_MAX_WINDOW_BITS = 12     # our compressor's window (server side)
DEFAULT_CLIENT_MAX_WINDOW_BITS = 12     # the window we ask the peer to compress with
DEFAULT_MEM_LEVEL = 5
DEFAULT_COMPRESSION_LEVEL = 6
# Messages shorter than this are sent uncompressed (RSV1 is per message).
# Measured on JSON-like messages (docs/compression.md): without context
# takeover DEFLATE makes messages under ~48 bytes bigger and saves 12 % at
# 64; with it, history makes even 32-byte messages shrink to a fraction,
# and under that the bytes saved are a handful for a zlib call.
DEFAULT_THRESHOLD = 32                  # with context takeover
DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER = 64

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WINDOW_VALUES = {str(n): n for n in range(8, 16)}   # no leading zeros, no sign

# The active-context pools, the shared no-takeover streams and the
# per-message path live with zlib in the compiled module (or its twin).
ContextPool = _zimpl.ContextPool
DEFAULT_ACTIVE_CONTEXTS: int = _zimpl.DEFAULT_ACTIVE_CONTEXTS
compressor_pool = _zimpl.compressor_pool
decompressor_pool = _zimpl.decompressor_pool
set_active_contexts = _zimpl.set_active_contexts


def _is_token(s: str) -> bool:
    return bool(s) and all(c in _TCHAR for c in s)


def _check_grammar(params: Params) -> None:
    for name, value in params:
        if not _is_token(name):
            raise MalformedOfferError(
                f"malformed {EXTENSION_NAME} parameter name {name!r}")
        if value is not None and not _is_token(value):
            raise MalformedOfferError(
                f"malformed value {value!r} of {EXTENSION_NAME} parameter {name}")


class _Parsed:
    """The parameters of one offer or answer, checked for RFC 7692's rules."""

    __slots__ = ("server_no_context_takeover", "client_no_context_takeover",
                 "server_max_window_bits", "client_max_window_bits")

    def __init__(self) -> None:
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_max_window_bits: Optional[int] = None
        # None: absent; True: present without a value (an offer only)
        self.client_max_window_bits: Union[None, bool, int] = None


def _parse(params: Params, *, offer: bool) -> Union[_Parsed, str]:
    """The parameters, or why they are invalid (a string)."""
    p = _Parsed()
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            return f"repeated parameter {name}"
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return f"{name} takes no value"
            setattr(p, name, True)
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is None:
                if name == "client_max_window_bits" and offer:
                    p.client_max_window_bits = True
                    continue
                return f"{name} needs a value"
            bits = _WINDOW_VALUES.get(value)
            if bits is None:
                return f"{name}={value} is not 8..15"
            setattr(p, name, bits)
        else:
            return f"unknown parameter {name}"
    return p


def _check_window(name: str, bits: Optional[int]) -> None:
    if bits is not None and not 9 <= bits <= 15:
        raise ValueError(f"{name} must be 9..15 (zlib cannot compress raw DEFLATE with 8)")


class PerMessageDeflate(_zimpl.DeflateCodec, Extension):
    """The negotiated permessage-deflate of one connection.

    ``local_*`` is about what this side sends (its compressor), ``remote_*``
    about what it receives. zlib's state is allocated at the first
    compressed message in each direction; without context takeover on a
    side, that side uses the process's shared state instead (nothing to
    allocate or keep per connection). ``decode``, ``encode``,
    ``encode_fragment`` and ``release`` (the Extension interface) are the
    compiled ``DeflateCodec``'s: the whole per-message path runs in C.
    """

    name = EXTENSION_NAME
    rsv = RSV1

    def __init__(self, *, local_no_context_takeover: bool = False,
                 remote_no_context_takeover: bool = False,
                 local_max_window_bits: int = 15, remote_max_window_bits: int = 15,
                 mem_level: int = DEFAULT_MEM_LEVEL, level: int = DEFAULT_COMPRESSION_LEVEL,
                 threshold: Optional[int] = None) -> None:
        if threshold is None:
            threshold = (DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER if local_no_context_takeover
                         else DEFAULT_THRESHOLD)
        super().__init__(local_no_context_takeover, remote_no_context_takeover,
                         local_max_window_bits, remote_max_window_bits, mem_level, level,
                         threshold)

    def __repr__(self) -> str:
        return (f"PerMessageDeflate(local_no_context_takeover={self.local_no_context_takeover}, "
                f"remote_no_context_takeover={self.remote_no_context_takeover}, "
                f"local_max_window_bits={self.local_max_window_bits}, "
                f"remote_max_window_bits={self.remote_max_window_bits})")


class ServerPerMessageDeflate:
    """A server's permessage-deflate factory (see the module docstring).

    - ``server_no_context_takeover``: always reset our compressor between
      messages (told to the client). No compressor memory per connection,
      and ``broadcast`` compresses a message once for all such connections;
      costs ratio on small, similar messages.
    - ``client_no_context_takeover``: ask the client to reset between its
      messages: no decompressor memory per connection.
    - ``server_max_window_bits`` (9..15): our compressor's window; with a
      client's ``server_max_window_bits=N`` we use at most N (and say so).
    - ``client_max_window_bits`` (9..15 or None): when the client offers
      ``client_max_window_bits``, limit its window to this (our
      decompressor's memory); None: 15, zlib's maximum.
    - ``mem_level`` (1..9), ``level`` (0..9): zlib's memLevel and
      compression level for our compressor.
    - ``threshold``: messages shorter than this go uncompressed; None:
      32 bytes with context takeover on our side, 64 without.
    """

    name = EXTENSION_NAME

    def __init__(self, *, server_no_context_takeover: bool = False,
                 client_no_context_takeover: bool = False,
                 server_max_window_bits: int = DEFAULT_SERVER_MAX_WINDOW_BITS,
                 client_max_window_bits: Optional[int] = DEFAULT_CLIENT_MAX_WINDOW_BITS,
                 mem_level: int = DEFAULT_MEM_LEVEL, level: int = DEFAULT_COMPRESSION_LEVEL,
                 threshold: Optional[int] = None) -> None:
        _check_window("server_max_window_bits", server_max_window_bits)
        _check_window("client_max_window_bits", client_max_window_bits)
        if not 1 <= mem_level <= 9:
            raise ValueError("mem_level must be 1..9")
        if not 0 <= level <= 9:
            raise ValueError("level must be 0..9")
        if threshold is not None and threshold < 0:
            raise ValueError("threshold must be >= 0")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.mem_level = mem_level
        self.level = level
        self.threshold = threshold

    def __repr__(self) -> str:
        return (f"ServerPerMessageDeflate(server_no_context_takeover={self.server_no_context_takeover}, "
                f"client_no_context_takeover={self.client_no_context_takeover}, "
                f"server_max_window_bits={self.server_max_window_bits}, "
                f"client_max_window_bits={self.client_max_window_bits})")

    def accept(self, params: Params) -> Optional[tuple[str, PerMessageDeflate]]:
        """Answer one offer: the response and the extension, or None to decline."""
        _check_grammar(params)
        offer = _parse(params, offer=True)
        if isinstance(offer, str):
            return None                          # RFC 7692 5: decline, not fail
        answer = [EXTENSION_NAME]
        server_nct = offer.server_no_context_takeover or self.server_no_context_takeover
        client_nct = offer.client_no_context_takeover or self.client_no_context_takeover
        if server_nct:
            answer.append("server_no_context_takeover")
        if client_nct:
            answer.append("client_no_context_takeover")
        local_bits = self.server_max_window_bits
        if offer.server_max_window_bits is not None:
            if offer.server_max_window_bits < 9:
                return None                      # zlib cannot compress with 8
            local_bits = min(local_bits, offer.server_max_window_bits)
            answer.append(f"server_max_window_bits={local_bits}")
        remote_bits = 15
        if offer.client_max_window_bits is not None:
            if offer.client_max_window_bits is not True:
                remote_bits = int(offer.client_max_window_bits)
            if self.client_max_window_bits is not None:
                remote_bits = min(remote_bits, self.client_max_window_bits)
            answer.append(f"client_max_window_bits={remote_bits}")
        ext = PerMessageDeflate(
            local_no_context_takeover=server_nct, remote_no_context_takeover=client_nct,
            local_max_window_bits=local_bits, remote_max_window_bits=remote_bits,
            mem_level=self.mem_level, level=self.level, threshold=self.threshold)
        return "; ".join(answer), ext


class ClientPerMessageDeflate:
    """A client's permessage-deflate factory.

    - ``server_no_context_takeover``: ask the server to reset its compressor
      between messages (our decompressor then holds no memory).
    - ``client_no_context_takeover``: reset ours (and say so).
    - ``server_max_window_bits`` (9..15 or None): ask the server to compress
      with at most this window (our decompressor's memory).
    - ``client_max_window_bits``: True offers the parameter without a value
      (the server may then limit our window); a number offers that limit;
      None leaves it out. Our compressor uses at most
      ``compress_max_window_bits`` whatever was agreed.
    - ``mem_level``, ``level``, ``threshold``: as on the server.
    """

    name = EXTENSION_NAME

    def __init__(self, *, server_no_context_takeover: bool = False,
                 client_no_context_takeover: bool = False,
                 server_max_window_bits: Optional[int] = None,
                 client_max_window_bits: Union[bool, int, None] = True,
                 compress_max_window_bits: int = DEFAULT_CLIENT_MAX_WINDOW_BITS,
                 mem_level: int = DEFAULT_MEM_LEVEL, level: int = DEFAULT_COMPRESSION_LEVEL,
                 threshold: Optional[int] = None) -> None:
        _check_window("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is False:
            client_max_window_bits = None
        if client_max_window_bits is not True and client_max_window_bits is not None:
            _check_window("client_max_window_bits", int(client_max_window_bits))
        _check_window("compress_max_window_bits", compress_max_window_bits)
        if not 1 <= mem_level <= 9:
            raise ValueError("mem_level must be 1..9")
        if not 0 <= level <= 9:
            raise ValueError("level must be 0..9")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_max_window_bits = compress_max_window_bits
        self.mem_level = mem_level
        self.level = level
        self.threshold = threshold

    def offer(self) -> str:
        items = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            items.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            items.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            items.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is True:
            items.append("client_max_window_bits")
        elif self.client_max_window_bits is not None:
            items.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(items)

    def accept(self, params: Params) -> PerMessageDeflate:
        """Check the server's answer; raises ExtensionResponseError if invalid."""
        try:
            _check_grammar(params)
        except MalformedOfferError as exc:
            raise ExtensionResponseError(str(exc), 101) from None
        answer = _parse(params, offer=False)
        if isinstance(answer, str):
            raise ExtensionResponseError(f"server's {EXTENSION_NAME} answer: {answer}", 101)
        if self.server_no_context_takeover and not answer.server_no_context_takeover:
            raise ExtensionResponseError(
                f"server's {EXTENSION_NAME} answer lacks server_no_context_takeover", 101)
        remote_bits = 15
        if answer.server_max_window_bits is not None:
            if (self.server_max_window_bits is not None
                    and answer.server_max_window_bits > self.server_max_window_bits):
                raise ExtensionResponseError(
                    f"server's {EXTENSION_NAME} answer raises server_max_window_bits", 101)
            remote_bits = int(answer.server_max_window_bits)
        elif self.server_max_window_bits is not None:
            raise ExtensionResponseError(
                f"server's {EXTENSION_NAME} answer lacks server_max_window_bits", 101)
        local_bits = self.compress_max_window_bits
        if isinstance(self.client_max_window_bits, int) and self.client_max_window_bits is not True:
            local_bits = min(local_bits, self.client_max_window_bits)
        cbits = answer.client_max_window_bits
        if cbits is not None:
            if self.client_max_window_bits is None:
                raise ExtensionResponseError(
                    f"server's {EXTENSION_NAME} answer has client_max_window_bits, "
                    f"which was not offered", 101)
            if (self.client_max_window_bits is not True
                    and int(cbits) > int(self.client_max_window_bits)):
                raise ExtensionResponseError(
                    f"server's {EXTENSION_NAME} answer raises client_max_window_bits", 101)
            if int(cbits) < 9:
                raise ExtensionResponseError(
                    f"server's {EXTENSION_NAME} answer asks for client_max_window_bits=8, "
                    f"which zlib cannot compress with", 101)
            local_bits = min(local_bits, int(cbits))
        return PerMessageDeflate(
            local_no_context_takeover=self.client_no_context_takeover
            or answer.client_no_context_takeover,
            remote_no_context_takeover=answer.server_no_context_takeover,
            local_max_window_bits=local_bits, remote_max_window_bits=remote_bits,
            mem_level=self.mem_level, level=self.level, threshold=self.threshold)


# ``compression=`` of serve/connect: "deflate" (the default: permessage-deflate
# with the settings above), None (no compression), or a factory instance.
Compression = Union[str, None, ServerPerMessageDeflate, ClientPerMessageDeflate]


def _with_factory(compression: Compression, extensions: Sequence[Any], cls: type) -> list[Any]:
    factories = list(extensions)
    if compression is None:
        return factories
    if isinstance(compression, cls):
        factory = compression
    elif compression == "deflate":
        factory = cls()
    else:
        raise ValueError(f"compression must be 'deflate', None or a {cls.__name__}, "
                         f"not {compression!r}")
    # An explicit permessage-deflate factory in extensions wins.
    if not any(getattr(f, "name", None) == EXTENSION_NAME for f in factories):
        factories.append(factory)
    return factories


def server_factories(compression: Compression, extensions: Sequence[Any] = ()) -> list[Any]:
    """A server's extension factories for ``compression=`` plus ``extensions``."""
    return _with_factory(compression, extensions, ServerPerMessageDeflate)


def client_factories(compression: Compression, extensions: Sequence[Any] = ()) -> list[Any]:
    """A client's extension factories for ``compression=`` plus ``extensions``."""
    return _with_factory(compression, extensions, ClientPerMessageDeflate)
