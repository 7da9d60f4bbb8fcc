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
"""
from __future__ import annotations

import zlib
from typing import Any, Optional

from ..exceptions import InvalidUTF8Error, MessageTooBigError, ProtocolError
from ..frame import Utf8Validator

__all__ = ["Compressor", "Decompressor", "ZLIB_VERSION", "IMPLEMENTATION", "FIRST_OUT", "STEP_MAX"]

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
