# The C-level receive contract between a stream transport and its protocol.
#
# A protocol that extends ChunkReceiver is handed each received chunk as a
# pointer into the transport's receive buffer, with no bytes object made:
# chunk_received must read (copy) what it needs before it returns and must
# never keep the pointer. It must do exactly what data_received(bytes) does,
# so the compiled class that defines data_received overrides it to match;
# receiver_for() refuses a protocol whose data_received is Python code (a
# subclass that overrides it gets its own method called, with bytes).
# This sits below both layers that use it (transports and the WebSocket
# core), so neither has to know the other.
cdef class ChunkReceiver:
    cdef int chunk_received(self, const unsigned char *data, Py_ssize_t n) except -1
