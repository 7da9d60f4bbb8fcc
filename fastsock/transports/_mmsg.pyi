"""Type stub for the Cython module fastsock.transports._mmsg."""
from collections.abc import Iterable
from typing import Any

AVAILABLE: bool
WOULD_BLOCK: int
SLOW_PATH: int

class Receiver:
    nbytes: int
    truncated: list[Any] | None
    error: OSError | None
    syscalls: int
    def __init__(self, fd: int, batch: int, bufsize: int) -> None: ...
    def recv(self) -> list[tuple[bytes, Any]]: ...

class Sender:
    nbytes: int
    syscalls: int
    def __init__(self, fd: int, family: int, cap: int) -> None: ...
    def send(self, items: Iterable[tuple[bytes, Any]]) -> int: ...
