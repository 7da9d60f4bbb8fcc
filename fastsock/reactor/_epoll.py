"""Linux backend: ``select.epoll`` used directly, level-triggered.

The loop keeps its own fd -> (reader, writer) table and asks the backend only
to (un)register interest and to poll. ``poll`` hands back epoll's own list of
``(fd, events)`` pairs; the loop tests the bits itself, so nothing is
translated or allocated per event here.

Stale descriptors (after trio's ``_io_epoll.py`` essay)
-------------------------------------------------------
epoll does not watch file *descriptors*, it watches open file *descriptions*
keyed by (fd number, description). Closing an fd removes the registration
only when it was the last reference to the description. If the socket was
``dup()``-ed (``socket.dup``, ``fork``, a child process that inherited it) and
someone closes our fd without unregistering it first, epoll keeps reporting
events for a number that is now closed -- or already reused by an unrelated
file -- and ``epoll_ctl(DEL)`` can no longer reach the registration because
it needs the *old* description. Level-triggered, that is a busy loop.

trio answers with ``EPOLLONESHOT`` and re-arms on every wait, which costs an
``epoll_ctl`` syscall per event. fastsock keeps the hot path at zero extra
syscalls and handles the rare case where it shows up:

* transports always unregister before they close their socket;
* ``register`` on an fd the kernel already knows (``EEXIST``) modifies it,
  ``modify`` on one the kernel silently dropped (``ENOENT``, closed and
  reused) registers it;
* an event for an fd the loop does not know is a stale registration: the loop
  tries ``unregister``; when even that fails (``EBADF``/``ENOENT``), the only
  handle left on the registration is the epoll instance itself, so the loop
  calls :meth:`EpollBackend.rebuild`: a fresh epoll with the live fds only.
  That costs one syscall per live fd, once per misuse, instead of a busy loop.
"""
from __future__ import annotations

import errno
import select
from typing import Any

from .._switch import compiled

__all__ = ["EpollBackend"]

# epoll_wait into a preallocated array plus the dispatch, compiled
# (fastsock/reactor/_epollc.pyx), unless it is not built or FASTSOCK_PURE=1.
_epollc = compiled("._epollc", __package__)
_EpollPoller: Any = _epollc.EpollPoller if _epollc is not None else None


class EpollBackend:
    name = "epoll"
    # interest bits passed to register/modify
    READ = select.EPOLLIN
    WRITE = select.EPOLLOUT
    # event bits that wake the reader / the writer: an error or hang-up wakes
    # both, so each side finds out through its own recv/send call.
    READ_EVENTS = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP | select.EPOLLPRI
    WRITE_EVENTS = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP

    def __init__(self) -> None:
        self._ep = select.epoll()
        # poll() is called once per loop turn; bind it once.
        self.poll = self._ep.poll
        # poll_dispatch(timeout, fds, stale, failed) -> events, or None: the
        # loop then runs poll() and its own Python dispatch
        self.poll_dispatch: Any = None
        # the compiled poller itself, which the compiled loop calls from C
        self.poller: Any = None
        self._bind()

    def _bind(self) -> None:
        self.poll = self._ep.poll
        self.poller = _EpollPoller(self._ep) if _EpollPoller is not None else None
        self.poll_dispatch = self.poller.poll_dispatch if self.poller is not None else None

    def fileno(self) -> int:
        return self._ep.fileno()

    def register(self, fd: int, mask: int) -> None:
        try:
            self._ep.register(fd, mask)
        except FileExistsError:
            self._ep.modify(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._ep.modify(fd, mask)
        except FileNotFoundError:
            # the kernel dropped it (fd closed and its number reused)
            self._ep.register(fd, mask)

    def unregister(self, fd: int) -> bool:
        """Forget ``fd``; False when the kernel no longer knew it (closed fd)."""
        try:
            self._ep.unregister(fd)
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOENT):
                return False
            raise
        return True

    def rebuild(self, masks: dict[int, int]) -> None:
        """Replace the epoll instance, registering only ``masks`` (fd -> interest)."""
        old = self._ep
        self._ep = select.epoll()
        self._bind()
        old.close()
        for fd, mask in masks.items():
            try:
                self._ep.register(fd, mask)
            except OSError:
                pass  # that fd is gone too; its owner finds out on its next call

    def close(self) -> None:
        self._ep.close()
