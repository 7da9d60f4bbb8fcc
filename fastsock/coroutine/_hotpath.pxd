# The compiled per-message paths of a coroutine connection (see _hotpath.pyx).
from cpython.ref cimport PyObject


cdef class Waiter:
    cdef public object _loop         # the loop's; what asyncio reads without get_loop
    cdef object _done                # a done Future: the argument of each wake-up
    cdef public object add_done_callback   # self._add_done_callback, bound once
    cdef object _wakeup              # the waiting task's wake-up, and its context
    cdef object _context
    cdef bint _waiting
    cdef public bint _asyncio_future_blocking

    cdef int bind(self, loop) except -1
    cdef int wake(self, bint now) except -1


cdef class Receiver:
    cdef readonly object messages
    cdef object _append
    cdef object _popleft
    cdef readonly Py_ssize_t max_queue
    cdef Py_ssize_t _resume_at
    cdef readonly bint paused
    cdef object _owner
    cdef Waiter _waiter
    cdef bint _closed
    cdef int _mode

    cdef int _step(self, PyObject **result) except -1


cdef class Sent:
    pass


cdef class Sender:
    cdef object _core
    cdef object _slow                # the connection's coroutine for every other case
    cdef public bint fragmenting     # a fragmented message is being sent
