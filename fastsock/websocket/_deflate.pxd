# The C-level fields of fastsock/websocket/_deflate.pyx (zlib streams, the
# active-context pool and the per-connection codec).
cdef extern from "zlib.h":
    ctypedef struct z_stream:
        const unsigned char *next_in
        unsigned int avail_in
        unsigned char *next_out
        unsigned int avail_out


cdef class _Stream:
    cdef z_stream _strm
    cdef bint _ready                 # _strm is initialised (lazily, at the first message)
    cdef bytes _history              # the window kept by compact(), or None
    cdef readonly int wbits
    cdef readonly bint no_context_takeover
    # Links of the ContextPool this stream is in (most recently used first).
    cdef ContextPool _pool
    cdef _Stream _prev, _next
    cdef int _compact(self) except -1


cdef class Compressor(_Stream):
    cdef readonly int mem_level, level
    cdef bytes _deflate(self, object data, bint final)


cdef class Decompressor(_Stream):
    cdef bytes _inflate(self, object data, Py_ssize_t limit, bint text)


cdef class ContextPool:
    cdef _Stream _head, _tail
    cdef Py_ssize_t _n
    cdef Py_ssize_t _limit           # -1: no limit
    cdef int _use(self, _Stream z) except -1
    cdef void _unlink(self, _Stream z) noexcept
    cdef void _push(self, _Stream z) noexcept


cdef class DeflateCodec:
    cdef readonly bint local_no_context_takeover, remote_no_context_takeover
    cdef readonly int local_max_window_bits, remote_max_window_bits, mem_level, level
    cdef readonly Py_ssize_t threshold
    cdef Compressor _compressor
    cdef Decompressor _decompressor
    cdef Compressor _fragmenter      # see encode_fragment
    cdef Compressor _get_compressor(self)
    cdef Decompressor _get_decompressor(self)
    # C entry points for a compiled caller (cimport DeflateCodec): decode
    # with limit = max_size + 1 (see _limit_of), encode giving (rsv, bytes).
    cdef object decode_c(self, int rsv, int opcode, object payload, Py_ssize_t limit)
    cdef tuple encode_c(self, int opcode, object payload)
