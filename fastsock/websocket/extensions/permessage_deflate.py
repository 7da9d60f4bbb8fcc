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

from collections import OrderedDict
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

# Without context takeover a compressor keeps nothing between messages, so
# every such connection of the process shares one per setting (and every
# peer that resets shares one decompressor): no zlib state per connection,
# and a broadcast compresses once for all of them.
_shared_compressors: dict[tuple[int, int, int], Compressor] = {}
_shared_decompressor: Optional[Decompressor] = None


class ContextPool:
    """Bounds how many context-takeover zlib states hold memory at once.

    Every connection with context takeover needs its history (the last
    window of what went through) to carry on, but not zlib's working state
    (hash tables, buffers: most of its memory, see docs/compression.md).
    The ``limit`` most recently used states stay whole; when one more is
    used, the least recently used is compacted to its history
    (``Compressor.compact``: at most ``1 << wbits`` bytes) and rebuilt from
    it when its connection sends or receives again. One pool serves the
    compressors and one the decompressors of the process; ``limit=None``
    never compacts.
    """

    __slots__ = ("limit", "_lru")

    def __init__(self, limit: Optional[int]) -> None:
        self.limit = limit
        self._lru: OrderedDict[Any, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lru)

    def use(self, z: Any) -> None:
        lru = self._lru
        if z in lru:
            lru.move_to_end(z)
            return
        lru[z] = None
        limit = self.limit
        if limit is not None:
            while len(lru) > limit:
                lru.popitem(last=False)[0].compact()

    def forget(self, z: Any) -> None:
        self._lru.pop(z, None)


# Measured (docs/compression.md): rebuilding a state from its history costs
# a few microseconds, paid only by a connection that was idle while this
# many others were busy.
DEFAULT_ACTIVE_CONTEXTS = 256
compressor_pool = ContextPool(DEFAULT_ACTIVE_CONTEXTS)
decompressor_pool = ContextPool(DEFAULT_ACTIVE_CONTEXTS)


def set_active_contexts(limit: Optional[int]) -> None:
    """How many context-takeover compressors (and, separately,
    decompressors) keep zlib's whole state; None: all of them."""
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1 or None")
    compressor_pool.limit = decompressor_pool.limit = limit


def _shared_compressor(wbits: int, mem_level: int, level: int) -> Compressor:
    key = (wbits, mem_level, level)
    c = _shared_compressors.get(key)
    if c is None:
        c = _shared_compressors[key] = Compressor(wbits, mem_level, level, True)
    return c


def _shared_inflater() -> Decompressor:
    global _shared_decompressor
    if _shared_decompressor is None:
        # A 15-bit window inflates what any smaller one compressed.
        _shared_decompressor = Decompressor(15, True)
    return _shared_decompressor


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


class PerMessageDeflate(Extension):
    """The negotiated permessage-deflate of one connection.

    ``local_*`` is about what this side sends (its compressor), ``remote_*``
    about what it receives. zlib's state is allocated at the first
    compressed message in each direction; without context takeover on a
    side, that side uses the process's shared state instead (nothing to
    allocate or keep per connection).
    """

    name = EXTENSION_NAME
    rsv = RSV1

    def __init__(self, *, local_no_context_takeover: bool = False,
                 remote_no_context_takeover: bool = False,
                 local_max_window_bits: int = 15, remote_max_window_bits: int = 15,
                 mem_level: int = DEFAULT_MEM_LEVEL, level: int = DEFAULT_COMPRESSION_LEVEL,
                 threshold: Optional[int] = None) -> None:
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.mem_level = mem_level
        self.level = level
        if threshold is None:
            threshold = (DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER if local_no_context_takeover
                         else DEFAULT_THRESHOLD)
        self.threshold = threshold
        self._compressor: Optional[Compressor] = None
        self._decompressor: Optional[Decompressor] = None
        self._fragmenter: Optional[Compressor] = None   # see encode_fragment

    def __repr__(self) -> str:
        return (f"PerMessageDeflate(local_no_context_takeover={self.local_no_context_takeover}, "
                f"remote_no_context_takeover={self.remote_no_context_takeover}, "
                f"local_max_window_bits={self.local_max_window_bits}, "
                f"remote_max_window_bits={self.remote_max_window_bits})")

    @property
    def compressor(self) -> Compressor:
        """What compresses this side's messages (allocated on first use)."""
        c = self._compressor
        if c is None:
            if self.local_no_context_takeover:
                c = _shared_compressor(self.local_max_window_bits, self.mem_level, self.level)
            else:
                c = Compressor(self.local_max_window_bits, self.mem_level, self.level, False)
            self._compressor = c
        return c

    @property
    def decompressor(self) -> Decompressor:
        d = self._decompressor
        if d is None:
            if self.remote_no_context_takeover:
                d = _shared_inflater()
            else:
                d = Decompressor(self.remote_max_window_bits, False)
            self._decompressor = d
        return d

    @property
    def broadcast_key(self) -> Optional[tuple[int, int, int, int]]:
        """Without local context takeover every message is compressed from
        an empty window by the process's shared compressor: a message gives
        the same bytes on every connection with these settings, so
        ``broadcast`` compresses it once per key. None: per connection."""
        if not self.local_no_context_takeover:
            return None
        return (self.local_max_window_bits, self.mem_level, self.level, self.threshold)

    @property
    def memory_held(self) -> bool:
        """True if this connection holds zlib state of its own (not just
        compacted history)."""
        return any(z is not None and not z.no_context_takeover and z.allocated
                   for z in (self._compressor, self._decompressor))

    def decode(self, rsv: int, opcode: int, payload: bytes,
               max_size: Optional[int] = None) -> bytes:
        if not rsv & RSV1:
            return payload
        d = self.decompressor
        if not self.remote_no_context_takeover:
            decompressor_pool.use(d)
        return d.decompress(payload, max_size, opcode == 1)

    def encode(self, opcode: int, payload: bytes) -> tuple[int, bytes]:
        if len(payload) < self.threshold:
            return 0, payload
        c = self.compressor
        if not self.local_no_context_takeover:
            compressor_pool.use(c)
        return RSV1, c.compress(payload)

    def encode_fragment(self, opcode: int, payload: bytes, first: bool,
                        fin: bool) -> tuple[int, bytes]:
        """One fragment of a message sent in pieces (the coroutine API's
        ``send(iterable)``): compressed as it comes, RSV1 on the first
        frame only, the tail stripped from the last. The threshold does not
        apply (the size is not known in advance). Without context takeover
        the process's shared compressor cannot be held across fragments
        (other connections use it in between), so such a message gets a
        compressor of its own, dropped at its end."""
        if first:
            self._fragmenter = None
            if self.local_no_context_takeover and not fin:
                self._fragmenter = Compressor(self.local_max_window_bits, self.mem_level,
                                              self.level, True)
        c = self._fragmenter
        if c is None:
            c = self.compressor
            if not self.local_no_context_takeover:
                compressor_pool.use(c)
        out = c.compress(payload, fin)
        if fin:
            self._fragmenter = None
        return (RSV1 if first else 0), out

    def release(self) -> None:
        self._fragmenter = None
        c, d = self._compressor, self._decompressor
        if c is not None and not c.no_context_takeover:
            compressor_pool.forget(c)
            c.release()
        if d is not None and not d.no_context_takeover:
            decompressor_pool.forget(d)
            d.release()
        self._compressor = self._decompressor = None


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
