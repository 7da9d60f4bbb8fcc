# cython: language_level=3
"""epoll_wait into a preallocated C array and the reader/writer dispatch, in C.

``select.epoll.poll`` allocates the event array, a list and one ``(fd,
events)`` tuple per event on every call; this poller reuses one array and
looks each fd up in the loop's table directly. The dispatch is the same as
``fastsock.reactor.loop._dispatch`` (its pure-Python twin): readers first,
then writers, per event; an error or hang-up wakes both.
"""
from cpython.exc cimport PyErr_SetFromErrno, PyErr_CheckSignals
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.errno cimport errno, EINTR
from libc.math cimport ceil
from libc.stdint cimport uint32_t, uint64_t


cdef extern from "sys/epoll.h" nogil:
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLPRI


cdef uint32_t READ_EVENTS = EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLPRI
cdef uint32_t WRITE_EVENTS = EPOLLOUT | EPOLLERR | EPOLLHUP


cdef inline int _run(object cb, object args, object failed) except -1:
    """Call one reader/writer callback; its errors go to ``failed`` (the loop
    keeps serving) except SystemExit/KeyboardInterrupt, which propagate."""
    if cb is None:
        return 0
    try:
        if args is None:
            cb()
        else:
            cb(*args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        failed(cb, exc)
    return 0


cdef class EpollPoller:
    """``poll_dispatch(timeout, fds, stale, failed) -> events`` on one epoll fd.

    ``fds`` maps fd -> ``[reader, reader args, writer, writer args]`` (args
    None: call with no arguments). ``stale(fd)`` is called for an fd not in
    the table, ``failed(callback, exc)`` for a callback that raised (other
    than SystemExit/KeyboardInterrupt, which propagate). ``epoll`` (the
    ``select.epoll`` the fd belongs to) is kept alive by the poller.
    """
    def __cinit__(self, epoll, int maxevents=1024):
        if maxevents < 1:
            raise ValueError("maxevents must be >= 1")
        self.epoll = epoll
        self.epfd = epoll.fileno()
        self.maxevents = maxevents
        self.events = <epoll_event*>PyMem_Malloc(maxevents * sizeof(epoll_event))
        if self.events is NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.events)

    cpdef int poll_dispatch(self, double timeout, dict fds, object stale, object failed) except -1:
        cdef int ms, n, i, fd
        cdef uint32_t ev
        cdef list entry
        # select.epoll.poll's rounding: up to the next millisecond, negative = forever
        if timeout < 0:
            ms = -1
        elif timeout > 2147483.0:
            ms = 2147483647
        else:
            ms = <int>ceil(timeout * 1000.0)
        if ms == 0:
            n = epoll_wait(self.epfd, self.events, self.maxevents, 0)
        else:
            with nogil:
                n = epoll_wait(self.epfd, self.events, self.maxevents, ms)
        if n < 0:
            if errno == EINTR:
                # run the Python signal handlers (they may raise); the loop
                # recomputes its timeout next turn
                PyErr_CheckSignals()
                return 0
            PyErr_SetFromErrno(OSError)
        for i in range(n):
            fd = self.events[i].data.fd
            ev = self.events[i].events
            obj = fds.get(fd)
            if obj is None:
                stale(fd)
                continue
            entry = <list>obj
            if ev & READ_EVENTS:
                _run(entry[0], entry[1], failed)
            if ev & WRITE_EVENTS:
                _run(entry[2], entry[3], failed)
        return n
