# The compiled per-message paths of a coroutine connection (see _hotpath.pyx).
from cpython.ref cimport PyObject


cdef class Receiver:
    cdef readonly object messages
    cdef object _append
    cdef object _popleft
    cdef readonly Py_ssize_t max_queue
    cdef Py_ssize_t _resume_at
    cdef readonly bint paused
    cdef object _owner
    cdef public object _loop         # the loop's; what asyncio reads without get_loop
    cdef object _done                # a done Future: the argument of each wake-up
    cdef public object add_done_callback   # self._add_done_callback, bound once
    cdef object _wakeup
    cdef object _context
    cdef bint _waiting
    cdef bint _closed
    cdef int _mode
    cdef public bint _asyncio_future_blocking

    cdef int _wake(self) except -1
    cdef int _bind(self, loop) except -1
    cdef int _step(self, PyObject **result) except -1


cdef class Sent:
    pass


cdef class Sender:
    cdef object _core
    cdef object _slow                # the connection's coroutine for every other case
    cdef public bint fragmenting     # a fragmented message is being sent
