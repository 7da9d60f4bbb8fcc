# Stub for the Cython module fastsock._frame (tests/test_frame_stub.py checks
# that it matches the runtime module).
from typing import Final

from _typeshed import ReadableBuffer, WriteableBuffer

from fastsock.exceptions import ProtocolError

OP_CONTINUATION: Final[int]
OP_TEXT: Final[int]
OP_BINARY: Final[int]
OP_CLOSE: Final[int]
OP_PING: Final[int]
OP_PONG: Final[int]
RSV1: Final[int]
RSV2: Final[int]
RSV3: Final[int]

class Frame:
    @property
    def fin(self) -> bool: ...
    @property
    def rsv(self) -> int: ...
    @property
    def opcode(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    def __init__(self, opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> None: ...

class FrameParser:
    error: ProtocolError | None
    def __init__(
        self,
        *,
        require_mask: bool,
        max_frame_size: int = ...,
        max_message_size: int = ...,
        allowed_rsv: int = 0,
        validate_utf8: bool = True,
    ) -> None: ...
    def feed(self, data: ReadableBuffer) -> list[Frame]: ...

class Utf8Validator:
    def __init__(self) -> None: ...
    def feed(self, data: ReadableBuffer) -> bool: ...
    def finish(self) -> bool: ...
    def reset(self) -> None: ...

def build_frame(
    opcode: int, payload: ReadableBuffer = b"", *, fin: bool = True, rsv: int = 0, mask: bool = False
) -> bytes: ...
def apply_mask(data: ReadableBuffer, mask: ReadableBuffer) -> bytes: ...
def mask_inplace(buf: WriteableBuffer, mask: ReadableBuffer, phase: int = 0) -> int: ...
def validate_utf8(data: ReadableBuffer) -> bool: ...
