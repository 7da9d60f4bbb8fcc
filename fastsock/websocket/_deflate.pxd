# The C-level fields of fastsock/websocket/_deflate.pyx (zlib streams).
cdef extern from "zlib.h":
    ctypedef struct z_stream:
        const unsigned char *next_in
        unsigned int avail_in
        unsigned char *next_out
        unsigned int avail_out


cdef class Compressor:
    cdef z_stream _strm
    cdef bint _ready                 # _strm is initialised (lazily, at the first message)
    cdef bytes _history              # the window kept by compact(), or None
    cdef readonly int wbits, mem_level, level
    cdef readonly bint no_context_takeover


cdef class Decompressor:
    cdef z_stream _strm
    cdef bint _ready
    cdef bytes _history
    cdef readonly int wbits
    cdef readonly bint no_context_takeover
