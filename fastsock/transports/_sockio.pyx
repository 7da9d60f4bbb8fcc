# cython: language_level=3
"""Raw send/recv on a stream socket's fd, without the socket module's per-call
overhead (argument parsing, timeout logic, GIL release/re-acquire: the calls
never block, the fd is non-blocking). Errors raise the same OSError subclasses
as the socket methods (BlockingIOError, ConnectionResetError...)."""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_SetFromErrno
from libc.errno cimport errno, EINTR

cdef extern from "sys/socket.h":
    ssize_t c_send "send"(int, const void*, size_t, int)
    ssize_t c_recv "recv"(int, void*, size_t, int)
    int MSG_NOSIGNAL


cdef class SockIO:
    """``send(data) -> int`` and ``recv_bytes(buffer) -> bytes`` on one fd."""
    cdef int fd

    def __cinit__(self, int fd):
        self.fd = fd

    def send(self, data):
        cdef Py_buffer view
        cdef ssize_t n
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            while True:
                n = c_send(self.fd, view.buf, <size_t>view.len, MSG_NOSIGNAL)
                if n >= 0:
                    return n
                if errno != EINTR:
                    PyErr_SetFromErrno(OSError)
        finally:
            PyBuffer_Release(&view)

    def recv_bytes(self, buffer):
        """Receive into ``buffer`` (writable) and return a copy of what came; b'' at EOF."""
        cdef Py_buffer view
        cdef ssize_t n
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            while True:
                n = c_recv(self.fd, view.buf, <size_t>view.len, 0)
                if n >= 0:
                    return PyBytes_FromStringAndSize(<char*>view.buf, n)
                if errno != EINTR:
                    PyErr_SetFromErrno(OSError)
        finally:
            PyBuffer_Release(&view)

    def recv_into(self, buffer):
        """Receive into ``buffer`` (writable); the number of bytes, 0 at EOF."""
        cdef Py_buffer view
        cdef ssize_t n
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            while True:
                n = c_recv(self.fd, view.buf, <size_t>view.len, 0)
                if n >= 0:
                    return n
                if errno != EINTR:
                    PyErr_SetFromErrno(OSError)
        finally:
            PyBuffer_Release(&view)
