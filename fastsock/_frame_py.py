"""Pure-Python twin of :mod:`fastsock._frame`: the RFC 6455 frame codec.

Same API, same behaviour and same errors as the Cython module; it is the
reference implementation and the fallback when no compiler was available.
Nothing here loops over bytes in Python: masks are applied with one big-int
XOR and UTF-8 is checked by CPython's incremental decoder.
"""
from __future__ import annotations

import codecs
import os
from typing import Any

from fastsock.exceptions import FrameError, InvalidUTF8Error, MessageTooBigError

__all__ = [
    "OP_CONTINUATION", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "RSV1", "RSV2", "RSV3",
    "Frame", "FrameParser", "build_frame", "apply_mask", "mask_inplace",
    "validate_utf8", "Utf8Validator",
]

OP_CONTINUATION = 0
OP_TEXT = 1
OP_BINARY = 2
OP_CLOSE = 8
OP_PING = 9
OP_PONG = 10
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

_MAX_LENGTH = 2**63 - 1
_OPCODES = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))


# --- UTF-8 ------------------------------------------------------------------
#
# CPython's decoder rejects most bad bytes as soon as it sees them, but it
# buffers "\xed\xa0" (the start of a surrogate) until the third byte. The
# incomplete tail it keeps (at most 3 bytes) is therefore re-checked against
# the well-formed table of Unicode 15 §3.9 (Table 3-7) so that we fail at the
# first byte that cannot be valid, exactly like the Cython DFA.

def _second_byte_range(lead: int) -> tuple[int, int]:
    if lead == 0xE0:
        return 0xA0, 0xBF
    if lead == 0xED:
        return 0x80, 0x9F
    if lead == 0xF0:
        return 0x90, 0xBF
    if lead == 0xF4:
        return 0x80, 0x8F
    return 0x80, 0xBF


def _tail_ok(tail: bytes) -> bool:
    # The decoder already accepted the lead byte; only byte 2 can be out of range.
    if len(tail) < 2:
        return True
    lo, hi = _second_byte_range(tail[0])
    return lo <= tail[1] <= hi


class Utf8Validator:
    """Incremental UTF-8 check; :meth:`feed` fails at the first impossible byte."""

    __slots__ = ("_decoder", "_ok")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._ok = True

    def feed(self, data: Any) -> bool:
        """Return False once the bytes seen so far cannot start valid UTF-8."""
        if not self._ok:
            return False
        decoder = self._decoder
        try:
            decoder.decode(data, False)
        except UnicodeDecodeError:
            self._ok = False
            return False
        tail = decoder.getstate()[0]
        if tail and not _tail_ok(tail):
            self._ok = False
        return self._ok

    def finish(self) -> bool:
        """Return False if the text was invalid or ends inside a sequence."""
        return self._ok and not self._decoder.getstate()[0]

    def reset(self) -> None:
        """Forget everything; ready for the next message."""
        self._decoder.reset()
        self._ok = True


def validate_utf8(data: Any) -> bool:
    """Return True if ``data`` is complete, well-formed UTF-8."""
    try:
        codecs.utf_8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return False
    return True


# --- masking ----------------------------------------------------------------

def _mask_bytes(mask: Any) -> bytes:
    try:
        key = bytes(mask)
    except TypeError:
        raise TypeError(f"mask must be bytes-like, not {type(mask).__name__}") from None
    if len(key) != 4:
        raise ValueError("mask must contain 4 bytes")
    return key


def _xor(data: Any, key: bytes) -> bytes:
    # One big-int XOR: linear time, no Python-level loop over the bytes.
    n = len(data)
    if n == 0:
        return b""
    stream = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def apply_mask(data: Any, mask: Any) -> bytes:
    """Return ``data`` XOR the repeated 4-byte ``mask`` (websockets' contract)."""
    key = _mask_bytes(mask)
    if not isinstance(data, bytes):
        try:
            data = memoryview(data).tobytes()
        except TypeError:
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None
    return _xor(data, key)


def mask_inplace(buf: Any, mask: Any, phase: int = 0) -> int:
    """XOR the writable buffer ``buf`` with ``mask`` starting at key byte ``phase``.

    Returns the phase for the next chunk of the same payload.
    """
    key = _mask_bytes(mask)
    if not 0 <= phase <= 3:
        raise ValueError("phase must be 0, 1, 2 or 3")
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError(f"buf must be a writable bytes-like object, not {type(buf).__name__}") from None
    with view:
        if view.readonly or not view.c_contiguous:
            raise TypeError("buf must be a writable, contiguous bytes-like object")
        with view.cast("B") as flat:
            n = len(flat)
            if n:
                flat[:] = _xor(flat, key[phase:] + key[:phase])
    return (phase + n) & 3


# --- frames -----------------------------------------------------------------

class Frame:
    """One WebSocket frame. ``payload`` is unmasked bytes owned by the caller."""

    __slots__ = ("_fin", "_rsv", "_opcode", "_payload")

    def __init__(self, opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> None:
        if type(payload) is not bytes:
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        self._opcode = opcode
        self._payload = payload
        self._fin = fin
        self._rsv = rsv

    @property
    def fin(self) -> bool:
        return self._fin

    @property
    def rsv(self) -> int:
        return self._rsv

    @property
    def opcode(self) -> int:
        return self._opcode

    @property
    def payload(self) -> bytes:
        return self._payload

    def __repr__(self) -> str:
        data = self._payload
        shown = repr(data[:32]) + ("..." if len(data) > 32 else "")
        return (f"Frame(opcode={self._opcode}, fin={self._fin}, rsv=0x{self._rsv:02x}, "
                f"len={len(data)}, payload={shown})")


_urandom = os.urandom


class _KeyPool:
    """Masking keys cut from one os.urandom call per 1024 frames."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def take(self) -> bytes:
        pos = self._pos
        if pos + 4 > len(self._pool):
            self._pool = _urandom(4096)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos:pos + 4]


_keys = _KeyPool()


def build_frame(opcode: int, payload: Any = b"", *, fin: bool = True, rsv: int = 0,
                mask: bool = False) -> bytes:
    """Encode one frame (header + payload) as a single bytes object.

    ``mask=True`` (client side) masks with a fresh key from ``os.urandom``.
    The result can be written to any number of connections.
    """
    if opcode not in _OPCODES:
        raise ValueError(f"cannot build a frame with opcode {opcode!r}")
    if rsv & ~0x70:
        raise ValueError(f"cannot build a frame with rsv 0x{rsv:x}: only 0x40, 0x20, 0x10 exist")
    data: bytes
    if isinstance(payload, bytes):
        data = payload
    else:
        try:
            data = memoryview(payload).tobytes()
        except TypeError:
            raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}") from None
    n = len(data)
    if opcode >= 8:
        if n > 125:
            raise ValueError(f"cannot build a control frame with {n} bytes of payload (max 125)")
        if not fin:
            raise ValueError("cannot build a fragmented control frame")
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if mask else 0
    if n < 126:
        header = bytes((b0, m | n))
    elif n < 65536:
        header = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if mask:
        key = _keys.take()
        return header + key + _xor(data, key)
    return header + data


# --- parser -----------------------------------------------------------------

class FrameParser:
    """Incremental RFC 6455 frame parser; see docs/codec.md for the rules.

    :meth:`feed` returns every frame completed so far. On the first protocol
    violation it returns the frames that preceded the bad one, stores the
    exception in :attr:`error`, and every later call raises it.
    """

    def __init__(self, *, require_mask: bool, max_frame_size: int = _MAX_LENGTH,
                 max_message_size: int = _MAX_LENGTH, allowed_rsv: int = 0,
                 validate_utf8: bool = True) -> None:
        if max_frame_size < 0 or max_message_size < 0:
            raise ValueError("size limits must be >= 0")
        if allowed_rsv & ~0x70:
            raise ValueError(f"allowed_rsv 0x{allowed_rsv:x} is not a combination of RSV1-3")
        self.error: FrameError | InvalidUTF8Error | MessageTooBigError | None = None
        self._require_mask = bool(require_mask)
        self._max_frame = max_frame_size
        self._max_message = max_message_size
        self._bad_rsv = 0x70 & ~allowed_rsv
        self._check_utf8 = bool(validate_utf8)
        self._pending = b""          # an incomplete header (< 14 bytes)
        # the frame whose payload is being received
        self._in_payload = False
        self._fin = True
        self._rsv = 0
        self._opcode = 0
        self._key = b""              # masking key rotated to the current phase
        self._remaining = 0
        self._parts: list[bytes] = []
        self._text = False           # this frame's payload is UTF-8 checked
        # the data message being received (fragments)
        self._fragmented = False     # a non-FIN data frame was seen
        self._msg_size = 0
        self._msg_text = False
        self._utf8 = Utf8Validator()

    def feed(self, data: Any) -> list[Frame]:
        """Consume ``data`` (any bytes-like) and return the frames it completed."""
        if self.error is not None:
            raise self.error
        if not isinstance(data, bytes):
            try:
                data = memoryview(data).tobytes()
            except TypeError:
                raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None
        buf = self._pending + data if self._pending else data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        try:
            while True:
                if not self._in_payload:
                    pos = self._header(buf, pos, end)
                    if pos < 0:             # header incomplete
                        pos = -pos - 1
                        break
                if self._remaining:
                    take = min(end - pos, self._remaining)
                    if take == 0:
                        break
                    chunk = buf[pos:pos + take]
                    pos += take
                    self._remaining -= take
                    key = self._key
                    if key:
                        chunk = _xor(chunk, key)
                        shift = take & 3
                        self._key = key[shift:] + key[:shift]
                    if self._text and not self._utf8.feed(chunk):
                        raise InvalidUTF8Error("peer sent a text message that is not valid UTF-8")
                    self._parts.append(chunk)
                    if self._remaining:
                        break
                frames.append(self._complete())
        except (FrameError, InvalidUTF8Error, MessageTooBigError) as exc:
            self.error = exc
            self._pending = b""
            self._parts = []
            return frames
        self._pending = buf[pos:end]
        return frames

    def _header(self, buf: bytes, pos: int, end: int) -> int:
        """Parse a header at ``pos``; return the payload start, or -(pos+1) if incomplete."""
        if end - pos < 2:
            return -pos - 1
        b0 = buf[pos]
        b1 = buf[pos + 1]
        opcode = b0 & 0x0F
        fin = bool(b0 & 0x80)
        rsv = b0 & 0x70
        if rsv & self._bad_rsv:
            raise FrameError(f"peer sent a frame with RSV bits 0x{rsv:02x} that were not negotiated")
        if opcode not in _OPCODES:
            raise FrameError(f"peer sent a frame with reserved opcode {opcode}")
        masked = bool(b1 & 0x80)
        if masked != self._require_mask:
            if masked:
                raise FrameError("peer sent a masked frame; a server must not mask")
            raise FrameError("peer sent an unmasked frame; a client must mask")
        length = b1 & 0x7F
        if opcode >= 8:
            if not fin:
                raise FrameError(f"peer sent a fragmented control frame (opcode {opcode})")
            if length > 125:
                raise FrameError(f"peer sent a control frame (opcode {opcode}) longer than 125 bytes")
        elif opcode == OP_CONTINUATION:
            if not self._fragmented:
                raise FrameError("peer sent a continuation frame but no message was started")
        elif self._fragmented:
            raise FrameError("peer started a new message before finishing the fragmented one")
        size = 2 + (4 if masked else 0)
        if length == 126:
            size += 2
        elif length == 127:
            size += 8
        if end - pos < size:
            if length == 127 and end - pos >= 3 and buf[pos + 2] & 0x80:
                raise FrameError("peer sent a 64-bit frame length with the top bit set")
            return -pos - 1
        p = pos + 2
        if length == 126:
            length = (buf[p] << 8) | buf[p + 1]
            p += 2
        elif length == 127:
            if buf[p] & 0x80:
                raise FrameError("peer sent a 64-bit frame length with the top bit set")
            length = int.from_bytes(buf[p:p + 8], "big")
            p += 8
        if length > self._max_frame:
            raise MessageTooBigError(
                f"peer sent a {length}-byte frame; the limit is {self._max_frame} bytes")
        if opcode < 8:
            if opcode != OP_CONTINUATION:
                self._msg_size = 0
                self._msg_text = self._check_utf8 and opcode == OP_TEXT and not rsv & RSV1
                if self._msg_text:
                    self._utf8.reset()
            total = self._msg_size + length
            if total > self._max_message:
                raise MessageTooBigError(
                    f"peer sent a message of at least {total} bytes; "
                    f"the limit is {self._max_message} bytes")
            self._msg_size = total
            self._fragmented = not fin
            self._text = self._msg_text
        else:
            self._text = False
        self._key = buf[p:p + 4] if masked else b""
        self._fin = fin
        self._rsv = rsv
        self._opcode = opcode
        self._remaining = length
        self._in_payload = True
        return size + pos

    def _complete(self) -> Frame:
        parts = self._parts
        if not parts:
            payload = b""
        elif len(parts) == 1:
            payload = parts[0]
        else:
            payload = b"".join(parts)
        self._parts = []
        self._in_payload = False
        if self._text and self._fin and not self._utf8.finish():
            raise InvalidUTF8Error("peer sent a text message that ends inside a UTF-8 sequence")
        return Frame(self._opcode, payload, self._fin, self._rsv)
