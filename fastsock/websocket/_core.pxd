# The C-level fields and methods of fastsock/websocket/_core.pyx.
from fastsock._receive cimport ChunkReceiver


cdef class HandlerCore(ChunkReceiver):
    cdef public object _parser
    cdef public object _transport
    cdef public list _out
    cdef public bint _batching
    cdef public bint _fast
    cdef public bint _rx_fast
    cdef public bint _close_received
    cdef public TurnFlush _flusher   # None: write at the end of each data_received
    cdef public bint _queued         # waiting in _flusher for this turn's write

    cdef int _receive(self, const unsigned char *p, Py_ssize_t n, object data) except -1
    cdef int write_queued(self) except -1


cdef class TurnFlush:
    cdef public object loop
    cdef public list pending

    cpdef add(self, HandlerCore handler)
