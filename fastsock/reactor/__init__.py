"""The reactor: a single-threaded epoll event loop with asyncio's method names."""
from __future__ import annotations

from .future import CancelledError, Future
from .handles import Handle, TimerHandle
from .loop import Reactor

__all__ = ["Reactor", "Handle", "TimerHandle", "Future", "CancelledError"]
