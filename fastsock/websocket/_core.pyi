# Stub of the compiled fastsock/websocket/_core.pyx; same API as _core_py.py.
from typing import Any, Optional, Union

class HandlerCore:
    _parser: Any
    _transport: Any
    _out: list[bytes]
    _writer: Any
    _batching: bool
    _fast: bool
    _rx_fast: bool
    _close_received: bool
    _flusher: Optional[TurnFlush]
    _queued: bool
    _writing_paused: bool
    def data_received(self, data: bytes) -> None: ...
    def _broadcast_frame(self, frame: bytes) -> bool: ...
    def _write_out(self) -> None: ...
    def send(self, message: Union[str, bytes, bytearray, memoryview]) -> None: ...

class TurnFlush:
    loop: Any
    pending: list[HandlerCore]
    def __init__(self, loop: Any) -> None: ...
    def add(self, handler: HandlerCore) -> None: ...
    def run(self) -> None: ...
