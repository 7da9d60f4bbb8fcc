"""permessage-deflate's per-message work (RFC 7692), on Python's zlib module.

The twin of ``_deflate.pyx`` (same behaviour, same bytes out);
:mod:`fastsock.websocket.extensions.permessage_deflate` picks the compiled
one unless ``FASTSOCK_PURE=1``.

- :class:`Compressor`: one whole message in, its raw DEFLATE stream out,
  flushed with Z_SYNC_FLUSH and without the 00 00 ff ff tail that flush ends
  with (RFC 7692 7.2.1). With ``no_context_takeover`` every message starts
  from an empty window, so the state could as well be freed in between.
- :class:`Decompressor`: appends the tail (7.2.2) and inflates in bounded
  steps, growing the output up to ``max_size`` + 1 bytes: a message that
  would inflate past the limit is stopped there (a 1 KiB "bomb" meant to
  inflate to 1 GiB costs the limit and milliseconds), and one that is one
  byte over is rejected, not cut. A text message's inflated bytes go
  through the codec's incremental UTF-8 check at every step.

Neither allocates zlib's state before its first message (``allocated``);
``release`` frees it.

- :class:`ContextPool`: keeps the most recently used context-takeover
  streams whole (``compressor_pool``, ``decompressor_pool``).
- :class:`DeflateCodec`: one connection's negotiated extension, the whole
  per-message path (threshold, shared no-takeover streams, the pool, zlib);
  ``permessage_deflate.PerMessageDeflate`` subclasses it.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict
from typing import Any, Optional, Union

from ..exceptions import InvalidUTF8Error, MessageTooBigError, ProtocolError
from ..frame import Utf8Validator

__all__ = ["Compressor", "ContextPool", "DEFAULT_ACTIVE_CONTEXTS", "Decompressor", "DeflateCodec",
           "FIRST_OUT", "IMPLEMENTATION", "STEP_MAX", "ZLIB_VERSION", "compressor_pool",
           "decompressor_pool", "set_active_contexts"]

ZLIB_VERSION: str = zlib.ZLIB_RUNTIME_VERSION
IMPLEMENTATION = "python"

_TAIL = b"\x00\x00\xff\xff"
_INPUT_MAX = (1 << 31) - 1
# The output grows from a few times the input (at least FIRST_OUT) by
# doubling, each step at most STEP_MAX bytes.
FIRST_OUT = 1024
STEP_MAX = 1 << 20


class _Stream:
    """What a Compressor and a Decompressor share: zlib's state, allocated at
    the first message, and the history ``compact`` keeps in its place."""

    no_context_takeover: bool
    _z: Any
    # The last window of input (compressing) or output (inflating), what
    # zlib's deflateGetDictionary/inflateGetDictionary give, tracked by hand:
    # the zlib module cannot read it back.
    _window: bytes
    _history: Optional[bytes]

    @property
    def allocated(self) -> bool:
        return self._z is not None

    @property
    def held(self) -> int:
        return len(self._history) if self._history is not None else 0

    def release(self) -> None:
        self._z = None
        self._history = None

    def compact(self) -> None:
        """Keep only the history and drop zlib's state (see ``_deflate.pyx``)."""
        if self._z is None or self.no_context_takeover:
            return
        self._z = None
        self._history = self._window or None


class Compressor(_Stream):
    """Compresses one whole message at a time (see the module docstring)."""

    def __init__(self, wbits: int = 15, mem_level: int = 8, level: int = 6,
                 no_context_takeover: bool = False) -> None:
        if not 9 <= wbits <= 15:
            raise ValueError("wbits must be 9..15 (zlib cannot compress raw DEFLATE with 8)")
        if not 1 <= mem_level <= 9:
            raise ValueError("mem_level must be 1..9")
        if not -1 <= level <= 9:
            raise ValueError("level must be -1..9")
        self.wbits = wbits
        self.mem_level = mem_level
        self.level = level
        self.no_context_takeover = no_context_takeover
        self._z = None
        self._window = b""
        self._history = None

    def compress(self, data: Any, final: bool = True) -> bytes:
        """One message's payload as sent on the wire (tail stripped); with
        ``final=False`` one fragment of a message sent in pieces (see
        ``_deflate.pyx``)."""
        if len(data) > _INPUT_MAX:
            raise ValueError("cannot compress a message of 2 GiB or more")
        z = self._z
        if z is None:
            if self._history is not None:
                z = zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits, self.mem_level,
                                     zlib.Z_DEFAULT_STRATEGY, self._history)
                self._history = None
            else:
                z = zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits, self.mem_level)
        if not self.no_context_takeover:
            self._window = (self._window + bytes(data))[-(1 << self.wbits):]
        out: bytes = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        if not final:
            self._z = z
            return out
        # The zlib module cannot reset a stream: without context takeover a
        # fresh one per message is the same thing.
        self._z = z if not self.no_context_takeover else zlib.compressobj(
            self.level, zlib.DEFLATED, -self.wbits, self.mem_level)
        return out[:-4]


class Decompressor(_Stream):
    """Inflates one whole message at a time (see the module docstring)."""

    def __init__(self, wbits: int = 15, no_context_takeover: bool = False) -> None:
        if not 8 <= wbits <= 15:
            raise ValueError("wbits must be 8..15")
        self.wbits = wbits
        self.no_context_takeover = no_context_takeover
        self._z = None
        self._window = b""
        self._history = None

    def decompress(self, data: Any, max_size: Optional[int] = None, text: bool = False) -> bytes:
        """The message inflated from ``data``; see ``_deflate.pyx`` for the errors."""
        if len(data) > _INPUT_MAX:
            raise MessageTooBigError("compressed message of 2 GiB or more")
        limit = _INPUT_MAX if max_size is None else min(max_size, _INPUT_MAX - 1) + 1
        z = self._z
        if z is None or self.no_context_takeover:
            if self._history is not None:
                z = self._z = zlib.decompressobj(-self.wbits, self._history)
                self._history = None
            else:
                z = self._z = zlib.decompressobj(-self.wbits)
        fresh = -1                  # where a new stream started in out, if one did
        cap = min(limit, max(FIRST_OUT, 4 * len(data) + 64))
        out = bytearray()
        checked = 0
        validator: Optional[Any] = None
        ended = False
        try:
            for seg, pending in enumerate((bytes(data), _TAIL)):
                while True:
                    room = cap - len(out)
                    chunk = z.decompress(pending, room)
                    out += chunk
                    pending = z.unconsumed_tail
                    if z.eof:
                        # The peer ended the stream (a final block): the
                        # tail is not appended to it, and what follows
                        # starts a new stream, without the old window.
                        pending = z.unused_data
                        z = self._z = zlib.decompressobj(-self.wbits)
                        fresh = len(out)
                        if seg == 1 or not pending:
                            ended = True
                            break
                        continue
                    if len(chunk) < room:
                        break           # input consumed, nothing more to come
                    # The output is full and there may be more.
                    if cap >= limit:
                        raise MessageTooBigError(
                            f"message inflates to more than {limit - 1} bytes; "
                            f"the limit is {limit - 1}")
                    if text:
                        if validator is None:
                            validator = Utf8Validator()
                        if not validator.feed(memoryview(out)[checked:]):
                            raise InvalidUTF8Error("invalid UTF-8 in text message", 1007)
                        checked = len(out)
                    cap = min(limit, cap + min(cap, STEP_MAX))
                if ended:
                    break
        except zlib.error:
            self._z = None
            raise ProtocolError("invalid compressed data (DEFLATE)", 1007) from None
        except ProtocolError:
            self._z = None
            raise
        result = bytes(out)
        if not self.no_context_takeover:
            window = self._window + result if fresh < 0 else result[fresh:]
            self._window = window[-(1 << self.wbits):]
        return result


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
        self._lru: OrderedDict[_Stream, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lru)

    def use(self, z: _Stream) -> None:
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
compressor_pool: ContextPool = ContextPool(DEFAULT_ACTIVE_CONTEXTS)
decompressor_pool: ContextPool = ContextPool(DEFAULT_ACTIVE_CONTEXTS)


def set_active_contexts(limit: Optional[int]) -> None:
    """How many context-takeover compressors (and, separately,
    decompressors) keep zlib's whole state; None: all of them."""
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1 or None")
    compressor_pool.limit = decompressor_pool.limit = limit


# Without context takeover a stream keeps nothing between messages, so every
# such connection of the process shares one compressor per setting (and
# every peer that resets shares one decompressor): no zlib state per
# connection, and a broadcast compresses once for all of them.
_shared_compressors: dict[tuple[int, int, int], Compressor] = {}
_shared_decompressor: Optional[Decompressor] = None


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


_RSV1 = 0x40


class DeflateCodec:
    """One connection's negotiated permessage-deflate: the per-message path.

    ``local_*`` is about what this side sends (its compressor), ``remote_*``
    about what it receives. zlib's state is allocated at the first
    compressed message in each direction; without context takeover on a
    side, that side uses the process's shared state instead. The Extension
    interface (``decode``, ``encode``, ``release``) is
    ``permessage_deflate.PerMessageDeflate``, a subclass.
    """

    def __init__(self, local_no_context_takeover: bool, remote_no_context_takeover: bool,
                 local_max_window_bits: int, remote_max_window_bits: int,
                 mem_level: int, level: int, threshold: int) -> None:
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.mem_level = mem_level
        self.level = level
        self.threshold = threshold
        self._compressor: Optional[Compressor] = None
        self._decompressor: Optional[Decompressor] = None
        self._fragmenter: Optional[Compressor] = None   # see encode_fragment

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
        z: Union[Compressor, Decompressor, None]
        for z in (self._compressor, self._decompressor):
            if z is not None and not z.no_context_takeover and z.allocated:
                return True
        return False

    def decode(self, rsv: int, opcode: int, payload: bytes,
               max_size: Optional[int] = None) -> bytes:
        if not rsv & _RSV1:
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
        return _RSV1, c.compress(payload)

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
        return (_RSV1 if first else 0), out

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
