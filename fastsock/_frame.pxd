# The table of contents of fastsock._frame: the C-level fields of its classes.
# Other Cython modules may `cimport` these to read frames without a Python
# attribute lookup.
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t


cdef class Frame:
    cdef readonly bint fin
    cdef readonly int rsv            # RSV bits of the header byte (0x70 mask)
    cdef readonly int opcode
    cdef readonly bytes payload      # unmasked


cdef class Utf8Validator:
    cdef int _state                  # DFA state; 0 = between characters


cdef class FrameParser:
    cdef public object error         # the ProtocolError that broke the stream
    # configuration
    cdef bint _require_mask
    cdef bint _check_utf8
    cdef int _bad_rsv                # RSV bits that are a protocol error
    cdef uint64_t _max_frame
    cdef uint64_t _max_message
    # an incomplete header carried to the next feed
    cdef unsigned char _hdr[14]
    cdef Py_ssize_t _hdr_len
    # the frame whose payload is being received
    cdef bint _in_payload
    cdef bint _fin
    cdef bint _masked
    cdef bint _text                  # this frame's payload is UTF-8 checked
    cdef int _rsv
    cdef int _opcode
    cdef unsigned char _key[4]
    cdef uint64_t _length
    cdef uint64_t _received
    cdef PyObject *_pbuf             # bytes being filled when a payload is split
    cdef Py_ssize_t _cap
    # the data message being received
    cdef bint _fragmented            # a non-FIN data frame was seen
    cdef bint _msg_text
    cdef uint64_t _msg_size
    cdef int _utf8_state

    cdef Py_ssize_t _header(self, const unsigned char *p, Py_ssize_t n)
    # whole small text/binary frame at p -> str/bytes (used[0] = its size), else None
    cdef object next_message(self, const unsigned char *p, Py_ssize_t n, Py_ssize_t *used)
    cdef Py_ssize_t _fail(self, exc)
    cdef int _drop_pbuf(self) noexcept
    cdef int _reserve(self, uint64_t need) except -1
