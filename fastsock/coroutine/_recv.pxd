# The compiled receive path of a coroutine connection (see _recv.pyx).
from cpython.ref cimport PyObject


cdef class Receiver:
    cdef readonly object messages
    cdef object _append
    cdef object _popleft
    cdef readonly Py_ssize_t max_queue
    cdef Py_ssize_t _resume_at
    cdef readonly bint paused
    cdef object _owner
    cdef public object loop
    cdef object _wakeup
    cdef object _context
    cdef bint _waiting
    cdef bint _cancelled
    cdef bint _closed
    cdef int _mode
    cdef object _cancel_msg
    cdef public bint _asyncio_future_blocking

    cdef int _wake(self) except -1
    cdef int _step(self, PyObject **result) except -1
