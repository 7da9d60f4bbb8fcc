"""Portable backend on ``selectors.DefaultSelector`` (kqueue, poll, select).

Used where epoll is missing, and on Linux when forced with
``Reactor(backend="selectors")`` so tests exercise this path too. It speaks
the same small interface as :class:`~fastsock.reactor._epoll.EpollBackend`.
"""
from __future__ import annotations

import selectors

__all__ = ["SelectorsBackend"]


class SelectorsBackend:
    name = "selectors"
    READ = selectors.EVENT_READ
    WRITE = selectors.EVENT_WRITE
    READ_EVENTS = selectors.EVENT_READ
    WRITE_EVENTS = selectors.EVENT_WRITE

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()

    def fileno(self) -> int:
        return self._sel.fileno() if hasattr(self._sel, "fileno") else -1

    def register(self, fd: int, mask: int) -> None:
        try:
            self._sel.register(fd, mask)
        except KeyError:
            self._sel.modify(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._sel.modify(fd, mask)
        except KeyError:
            self._sel.register(fd, mask)

    def unregister(self, fd: int) -> bool:
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError, OSError):
            return False
        return True

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        return [(key.fd, ev) for key, ev in self._sel.select(None if timeout < 0 else timeout)]

    def rebuild(self, masks: dict[int, int]) -> None:
        old = self._sel
        self._sel = selectors.DefaultSelector()
        old.close()
        for fd, mask in masks.items():
            try:
                self._sel.register(fd, mask)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self._sel.close()
