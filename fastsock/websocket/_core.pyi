# Stub of the compiled fastsock/websocket/_core.pyx; same API as _core_py.py.
from typing import Any, Iterable, Optional, Union

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
    _rx_text: int
    _rx_text_bytes: int
    _rx_binary: int
    _rx_binary_bytes: int
    _tx_text: int
    _tx_text_bytes: int
    _tx_binary: int
    _tx_binary_bytes: int
    def data_received(self, data: bytes) -> None: ...
    def _broadcast_frame(self, frame: bytes) -> bool: ...
    def _write_out(self) -> None: ...
    def _count_frame_out(self, frame: bytes) -> None: ...
    def send(self, message: Union[str, bytes, bytearray, memoryview]) -> None: ...

class TurnFlush:
    loop: Any
    pending: list[HandlerCore]
    def __init__(self, loop: Any) -> None: ...
    def add(self, handler: HandlerCore) -> None: ...
    def run(self) -> None: ...

def offer_all(connections: Iterable[Any], frame: bytes, rest: list[Any]) -> tuple[int, Any]: ...
def sum_counters(handlers: Iterable[HandlerCore]) -> list[int]: ...
