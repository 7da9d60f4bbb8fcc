# Stub of the compiled fastsock/websocket/_deflate.pyx; same API as _deflate_py.py.
from typing import Any, Optional

ZLIB_VERSION: str
IMPLEMENTATION: str
FIRST_OUT: int
STEP_MAX: int

class Compressor:
    wbits: int
    mem_level: int
    level: int
    no_context_takeover: bool
    def __init__(self, wbits: int = 15, mem_level: int = 8, level: int = 6,
                 no_context_takeover: bool = False) -> None: ...
    @property
    def allocated(self) -> bool: ...
    def release(self) -> None: ...
    def compress(self, data: Any) -> bytes: ...

class Decompressor:
    wbits: int
    no_context_takeover: bool
    def __init__(self, wbits: int = 15, no_context_takeover: bool = False) -> None: ...
    @property
    def allocated(self) -> bool: ...
    def release(self) -> None: ...
    def decompress(self, data: Any, max_size: Optional[int] = None, text: bool = False) -> bytes: ...
