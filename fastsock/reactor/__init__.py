"""The reactor: fastsock's asyncio event loop on epoll.

``Handle``, ``TimerHandle``, ``Future`` and ``CancelledError`` are asyncio's
own: the loop hands out asyncio's objects, as a drop-in loop must.
"""
from __future__ import annotations

from asyncio import CancelledError, Future, Handle, TimerHandle

from .loop import Reactor
from .policy import EventLoopPolicy, install, new_event_loop, run

__all__ = ["Reactor", "EventLoopPolicy", "new_event_loop", "install", "run",
           "Handle", "TimerHandle", "Future", "CancelledError"]
