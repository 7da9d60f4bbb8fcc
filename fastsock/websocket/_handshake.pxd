# The compiled opening-handshake scan (see _handshake.pyx); C-level helpers.
from libc.stdint cimport uint8_t

cdef void _accept(const uint8_t *key, char *out) noexcept nogil
