# The C-level fields and methods of fastsock/websocket/_core.pyx.
from fastsock._receive cimport ChunkReceiver
from fastsock._send cimport ChunkWriter


cdef class HandlerCore(ChunkReceiver):
    cdef public object _parser
    cdef public object _transport
    cdef list _outq                  # the frames queued; Python reads it as _out
    cdef object _pending             # one reply not yet framed (see send), or None
    cdef unsigned char _pending_b0   # its first header byte (0x81 text, 0x82 binary)
    cdef public ChunkWriter _writer  # fastsock._send.writer_for(transport), or None
    cdef public bint _batching
    cdef public bint _fast
    cdef public bint _rx_fast
    cdef public bint _close_received
    cdef public TurnFlush _flusher   # None: write at the end of each data_received
    cdef public bint _queued         # waiting in _flusher for this turn's write
    cdef public bint _writing_paused # the transport asked us to stop writing (pause_writing)
    # Metrics (fastsock/metrics.py): whole text/binary messages and their
    # payload bytes, in and out. Plain C adds on the hot path; a server sums
    # them over its connections when scraped (sum_counters) and keeps the
    # totals of connections that are gone.
    cdef public unsigned long long _rx_text, _rx_text_bytes, _rx_binary, _rx_binary_bytes
    cdef public unsigned long long _tx_text, _tx_text_bytes, _tx_binary, _tx_binary_bytes

    cdef int _receive(self, const unsigned char *p, Py_ssize_t n, object data) except -1
    cdef int write_queued(self) except -1
    cdef int _settle(self) except -1


cdef class TurnFlush:
    cdef public object loop
    cdef public list pending

    cpdef add(self, HandlerCore handler)
