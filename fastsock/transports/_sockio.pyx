# cython: language_level=3
"""Raw send/recv on a stream socket's fd, without the socket module's per-call
overhead (argument parsing, timeout logic, GIL release/re-acquire: the calls
never block, the fd is non-blocking). Errors raise the same OSError subclasses
as the socket methods (BlockingIOError, ConnectionResetError...)."""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_SetFromErrno
from libc.errno cimport errno, EINTR, EAGAIN

cdef extern from "errno.h":
    int EWOULDBLOCK
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE

cdef extern from "sys/uio.h":
    cdef struct iovec:
        void* iov_base
        size_t iov_len

cdef extern from "sys/socket.h":
    ctypedef unsigned int socklen_t
    cdef struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t c_send "send"(int, const void*, size_t, int)
    ssize_t c_recv "recv"(int, void*, size_t, int)
    ssize_t c_sendmsg "sendmsg"(int, const msghdr*, int)
    int MSG_NOSIGNAL

from libc.string cimport memset
from os import strerror as _strerror

from fastsock._receive cimport ChunkReceiver
from fastsock._send cimport ChunkWriter

# The receive buffer being parsed in place right now, if any. The reactor
# refuses to run nested, so that buffer is never refilled under its parser;
# this makes it so even if a callback drives a read by hand (or another
# thread's loop runs while a callback has released the GIL): a read that
# would land in the lent buffer goes into a fresh bytes object instead, and
# only one buffer is lent at a time.
cdef const char *_lent_buf = NULL

# How much a read takes when it must not use the lent buffer (the socket
# stays readable for the rest).
cdef enum:
    FRESH_READ = 65536

# writelines() gathers at most this many buffers in C (one sendmsg); longer
# lists take the Python path, which sends IOV_MAX at a time
cdef enum:
    GATHER_MAX = 64


def buffer_lent():
    """True while a receive buffer is being parsed in place (for tests)."""
    return _lent_buf != NULL


cdef inline ssize_t _send_once(int fd, const void *data, size_t size) noexcept:
    # One send(), retried on EINTR only: what it took, or -1 with errno set.
    cdef ssize_t n
    while True:
        n = c_send(fd, data, size, MSG_NOSIGNAL)
        if n >= 0 or errno != EINTR:
            return n


cdef bytes _recv_fresh(int fd):
    """One recv into a new bytes object; b'' at EOF; OSError on failure."""
    cdef ssize_t n
    scratch = PyBytes_FromStringAndSize(NULL, FRESH_READ)
    while True:
        n = c_recv(fd, PyBytes_AS_STRING(scratch), FRESH_READ, 0)
        if n >= 0:
            return PyBytes_FromStringAndSize(PyBytes_AS_STRING(scratch), n)
        if errno != EINTR:
            PyErr_SetFromErrno(OSError)


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
            n = _send_once(self.fd, view.buf, <size_t>view.len)
            if n < 0:
                PyErr_SetFromErrno(OSError)
            return n
        finally:
            PyBuffer_Release(&view)

    def recv_bytes(self, buffer):
        """Receive into ``buffer`` (writable) and return a copy of what came; b'' at EOF."""
        cdef Py_buffer view
        cdef ssize_t n
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            if <const char *>view.buf == _lent_buf:
                return _recv_fresh(self.fd)   # that buffer is being parsed
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


cdef class StreamFastPath(ChunkWriter):
    """The per-message calls of one ``TCPTransport``, in C.

    ``read_ready`` (the reactor's reader callback) receives into the loop's
    buffer and hands the chunk in place to a ``ChunkReceiver``
    (``fastsock/_receive.pxd``; ``receiver``), or else calls
    ``data_received`` with a ``bytes`` copy; ``write`` sends a
    ``bytes`` at once when nothing is queued, and ``write_chunk`` does the
    same for bytes behind a pointer (``fastsock/_send.pxd``). None of them
    runs a Python frame.
    Everything else -- EOF, errors, partial sends, queued data, other
    argument types -- goes back to the transport's Python methods, which own
    all the state: the transport clears ``direct`` whenever ``write`` may no
    longer send straight away (``write_eof``, ``close``, lost connection),
    and ``detach`` when the socket closes.
    """
    cdef int fd
    cdef object transport      # the TCPTransport
    cdef public object queue   # its write queue (empty until first used): write() sends only when it is empty
    cdef object rbuf           # the loop's receive buffer (a bytearray, never resized)
    cdef object slow_write     # TCPTransport.write, unbound
    cdef object slow_writelines  # TCPTransport.writelines, unbound
    cdef public object data_received
    cdef public ChunkReceiver receiver  # fastsock._receive.receiver_for(protocol); None: data_received gets bytes
    cdef public bint direct
    cdef public unsigned long long bytes_received
    cdef public unsigned long long bytes_sent

    def __cinit__(self, transport, int fd, queue, bytearray rbuf, slow_write, slow_writelines):
        if PyByteArray_GET_SIZE(rbuf) == 0:
            raise ValueError("the receive buffer is empty")
        self.transport = transport
        self.fd = fd
        self.queue = queue
        self.rbuf = rbuf
        self.slow_write = slow_write
        self.slow_writelines = slow_writelines
        self.data_received = None
        self.receiver = None
        self.direct = True
        self.bytes_received = 0
        self.bytes_sent = 0

    def detach(self):
        """The socket is closed: never touch the fd again (its number may be reused)."""
        self.fd = -1
        self.direct = False
        self.data_received = None
        self.receiver = None

    def read_ready(self):
        global _lent_buf
        cdef ssize_t n
        cdef char* buf
        cdef ChunkReceiver receiver
        if self.fd < 0:
            return
        transport = self.transport
        buf = PyByteArray_AS_STRING(self.rbuf)
        if _lent_buf != NULL:
            # a buffer is being parsed in place: take the transport's Python
            # read, whose recv_bytes never lands in the lent buffer and which
            # hands bytes to data_received (only one buffer is lent at a time)
            transport._read_ready_data()
            return
        while True:
            n = c_recv(self.fd, buf, <size_t>PyByteArray_GET_SIZE(self.rbuf), 0)
            if n >= 0 or errno != EINTR:
                break
        if n > 0:
            self.bytes_received += <unsigned long long>n
            receiver = self.receiver
            try:
                if receiver is not None:
                    _lent_buf = buf
                    try:
                        receiver.chunk_received(<const unsigned char *>buf, n)
                    finally:
                        _lent_buf = NULL
                else:
                    self.data_received(PyBytes_FromStringAndSize(buf, n))
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                transport._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
            return
        if n == 0:
            transport._read_eof()
            return
        if errno == EAGAIN or errno == EWOULDBLOCK:
            return
        try:
            PyErr_SetFromErrno(OSError)
        except OSError as exc:
            transport._fatal_error(exc, "Fatal read error on socket transport")

    def read_ready_buffered(self):
        """``read_ready`` for a ``BufferedProtocol`` (asyncio's TLS protocol is
        one): receive straight into the buffer its ``get_buffer`` returns,
        then ``buffer_updated(n)``, as the transport's Python path does."""
        cdef Py_buffer view
        cdef ssize_t n
        cdef int err
        if self.fd < 0:
            return
        transport = self.transport
        protocol = transport._protocol
        try:
            buf = protocol.get_buffer(-1)
            PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            transport._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        if view.len == 0:
            PyBuffer_Release(&view)
            transport._fatal_error(RuntimeError("get_buffer() returned an empty buffer"),
                                   "Fatal error: protocol.get_buffer() call failed.")
            return
        while True:
            n = c_recv(self.fd, view.buf, <size_t>view.len, 0)
            if n >= 0 or errno != EINTR:
                break
        err = errno
        PyBuffer_Release(&view)
        if n > 0:
            self.bytes_received += <unsigned long long>n
            try:
                protocol.buffer_updated(n)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                transport._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return
        if n == 0:
            transport._read_eof()
            return
        if err == EAGAIN or err == EWOULDBLOCK:
            return
        # OSError picks the subclass from the number (ConnectionResetError...)
        transport._fatal_error(OSError(err, _strerror(err)), "Fatal read error on socket transport")

    cdef int _after_send(self, ssize_t n, Py_ssize_t total, object data, bint gathered) except -1:
        # What a send()/sendmsg() of ``total`` bytes returned (errno still
        # holds its error): count it, hand a partial send's rest to the
        # transport's queue, or fail the transport.
        if n == total:
            self.bytes_sent += <unsigned long long>n
            return 0
        if n >= 0 or errno == EAGAIN or errno == EWOULDBLOCK:
            if n > 0:
                self.bytes_sent += <unsigned long long>n
            else:
                n = 0
            if gathered:
                self.transport._queue_rest_of(data, n)
            else:
                self.transport._queue_rest(data, n)
            return 0
        try:
            PyErr_SetFromErrno(OSError)
        except OSError as exc:
            self.transport._fatal_error(exc, "Fatal write error on socket transport")
        return 0

    def write(self, data):
        cdef ssize_t n
        cdef Py_ssize_t size
        if self.direct and type(data) is bytes and not self.queue:
            size = PyBytes_GET_SIZE(data)
            if size:
                n = _send_once(self.fd, PyBytes_AS_STRING(data), <size_t>size)
                self._after_send(n, size, data, False)
                return
        self.slow_write(self.transport, data)

    cdef int write_chunk(self, const char *data, Py_ssize_t size) except -1:
        # write(bytes(data[:size])) with no bytes object when it all goes out
        # at once; a partial send queues a copy (the caller reuses data)
        cdef ssize_t n
        if self.direct and not self.queue:
            if size:
                n = _send_once(self.fd, data, <size_t>size)
                if n == size:
                    self.bytes_sent += <unsigned long long>n
                elif n < 0 and errno != EAGAIN and errno != EWOULDBLOCK:
                    self._after_send(n, size, None, False)      # fails the transport
                else:
                    # partial: queue a copy (n >= 0 here, so errno is not read again)
                    self._after_send(n if n > 0 else 0, size,
                                     PyBytes_FromStringAndSize(data, size), False)
            return 0
        self.slow_write(self.transport, PyBytes_FromStringAndSize(data, size))
        return 0

    def writelines(self, list_of_data):
        """A list of ``bytes`` with nothing queued: one gathering ``sendmsg``."""
        cdef iovec iov[GATHER_MAX]
        cdef msghdr msg
        cdef Py_ssize_t count, i, total = 0
        cdef ssize_t n
        if self.direct and type(list_of_data) is list and not self.queue:
            count = len(<list>list_of_data)
            if 0 < count <= GATHER_MAX:
                for i in range(count):
                    item = (<list>list_of_data)[i]
                    if type(item) is not bytes:
                        break
                    iov[i].iov_base = PyBytes_AS_STRING(item)
                    iov[i].iov_len = <size_t>PyBytes_GET_SIZE(item)
                    total += PyBytes_GET_SIZE(item)
                else:
                    if total == 0:
                        return
                    memset(&msg, 0, sizeof(msg))
                    msg.msg_iov = iov
                    msg.msg_iovlen = <size_t>count
                    while True:
                        n = c_sendmsg(self.fd, &msg, MSG_NOSIGNAL)
                        if n >= 0 or errno != EINTR:
                            break
                    self._after_send(n, total, list_of_data, True)
                    return
        self.slow_writelines(self.transport, list_of_data)
