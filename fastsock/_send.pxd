# The C-level send contract between a stream transport and its protocol.
#
# A transport whose write() is the bound method of a ChunkWriter also takes
# bytes by pointer: write_chunk(p, n) must do exactly what write(bytes(p[:n]))
# does -- send at once, queue the rest, or hand a copy to the transport's
# Python write -- and must copy whatever it keeps before it returns (the
# caller reuses the memory). writer_for() finds it, so a protocol builds a
# frame in scratch memory and sends it with no bytes object made.
# This sits below both layers that use it (transports and the WebSocket
# core), so neither has to know the other.
cdef class ChunkWriter:
    cdef int write_chunk(self, const char *data, Py_ssize_t n) except -1
