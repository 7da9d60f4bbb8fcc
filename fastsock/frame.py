"""The RFC 6455 frame codec: the Cython module when built, else its Python twin.

Set ``FASTSOCK_PURE=1`` in the environment to force the pure-Python twin.
``IMPLEMENTATION`` says which one is in use: ``"cython"`` or ``"python"``.
See docs/codec.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._close_code import CloseCode
from ._switch import compiled

if TYPE_CHECKING:
    # both implementations have this API; type-check against the stub's
    from fastsock import _frame as _impl
    IMPLEMENTATION = "cython"
else:
    _impl = compiled("fastsock._frame")
    if _impl is None:
        from fastsock import _frame_py as _impl
        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "cython"

OP_CONTINUATION: int = _impl.OP_CONTINUATION
OP_TEXT: int = _impl.OP_TEXT
OP_BINARY: int = _impl.OP_BINARY
OP_CLOSE: int = _impl.OP_CLOSE
OP_PING: int = _impl.OP_PING
OP_PONG: int = _impl.OP_PONG
RSV1: int = _impl.RSV1
RSV2: int = _impl.RSV2
RSV3: int = _impl.RSV3

Frame = _impl.Frame
FrameParser = _impl.FrameParser
Utf8Validator = _impl.Utf8Validator
build_frame = _impl.build_frame
apply_mask = _impl.apply_mask
mask_inplace = _impl.mask_inplace
validate_utf8 = _impl.validate_utf8

__all__ = [
    "IMPLEMENTATION", "CloseCode",
    "OP_CONTINUATION", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "RSV1", "RSV2", "RSV3",
    "Frame", "FrameParser", "Utf8Validator",
    "build_frame", "apply_mask", "mask_inplace", "validate_utf8",
]
