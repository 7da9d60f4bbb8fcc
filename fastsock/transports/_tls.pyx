# cython: language_level=3
"""TLS over fastsock's stream transport: asyncio's record layer, compiled and batched.

asyncio's ``sslproto.SSLProtocol`` drives an ``ssl.SSLObject`` through two
``ssl.MemoryBIO``s: encrypted bytes from the socket go into the incoming
BIO, the application's bytes come out of ``SSLObject.read``; the
application's writes go into ``SSLObject.write`` and the records come out of
the outgoing BIO to the socket. Its state machine (handshake with timeout,
shutdown with close_notify, flow control, ``start_tls``) is the behavioural
reference and is kept as it is: :class:`SSLProtocol` subclasses it.

What changes is the per-record path, which this module compiles:

* receiving: the bytes the transport received go into the incoming BIO and
  are decrypted for the application in one compiled call;
* sending: while the application handles the data just decrypted, what it
  writes is encrypted at once but the records wait in the outgoing BIO;
  when the read is done they leave with **one** transport write, one
  ``send`` for every record of that turn (asyncio sends each write's
  records separately). Outside a read, a write goes out at once, as before;
  the application transport's ``write`` is compiled too, and a write with
  nothing queued before it is encrypted and sent without the backlog deque;
* flow control: the high/low-water checks asyncio makes after every read
  and write are made inline, asyncio's methods run only when a limit is
  crossed;
* the receive buffer: on fastsock's loop, ``get_buffer`` hands out the
  loop-owned receive buffer (one per loop thread) instead of a 256 KiB
  buffer per connection -- ``buffer_updated`` copies what was received into
  the incoming BIO before anything else runs, so nothing else can see the
  buffer in between;
* the record layer itself (``_Records``): once the handshake is done, the
  records are decrypted and encrypted by OpenSSL's C API (``SSL_read_ex``,
  ``SSL_write_ex``, ``BIO_write``/``BIO_read``/``BIO_ctrl_pending`` on the
  memory BIOs) on the very ``SSL`` object Python's ``ssl`` module created
  from the user's ``SSLContext`` (so SNI, verification, ALPN and
  ``get_extra_info('ssl_object')`` are the ssl module's), with the state it
  needs per record in C fields. The handshake, shutdown (close_notify),
  timeouts and every error stay on asyncio's ``SSLProtocol`` and the ssl
  module: ``_Records`` hands the connection back to them when the state
  leaves WRAPPED, and any OpenSSL error other than "want more data" is
  re-raised by the ssl module's own call so that the exception is the one it
  raises. The ``SSL*``/``BIO*`` are read from CPython's private ``_ssl``
  object layout (``_openssl_layout.h``); :data:`DIRECT` says whether the
  checks made at import passed (the runtime OpenSSL is the one ``_ssl``
  was built with, the layout's sizes, and a probe handshake step whose SSL,
  BIOs and context must be the ones read). If not, or with
  ``FASTSOCK_TLS_DIRECT=0`` in the environment, the ssl-module path below is
  used for every record.
"""
import os
import ssl
import sys

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_GET_BUFFER
from libc.limits cimport INT_MAX

from ._openssl cimport (
    SSL, SSL_CTX, BIO, SSL_read_ex, SSL_write_ex, SSL_do_handshake, SSL_get_error,
    SSL_pending, SSL_get_shutdown, SSL_get_SSL_CTX, SSL_get_rbio, SSL_get_wbio,
    BIO_write, BIO_read, BIO_ctrl_pending, ERR_clear_error, OpenSSL_version_num,
    SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE, SSL_ERROR_ZERO_RETURN, SSL_RECEIVED_SHUTDOWN,
)

cdef extern from "_openssl_layout.h":
    SSL *fs_layout_ssl(object o)
    BIO *fs_layout_bio(object o)
    SSL_CTX *fs_layout_ctx(object o)
    Py_ssize_t fs_layout_basicsize(object o)
    Py_ssize_t FS_LAYOUT_SSLSOCKET_MIN
    Py_ssize_t FS_LAYOUT_MEMORYBIO_SIZE
    Py_ssize_t FS_LAYOUT_CONTEXT_MIN

from asyncio import sslproto
from asyncio.log import logger

from ._tls_py import note_handshake_failure

_SSLProtocolBase = sslproto.SSLProtocol
_WRAPPED = sslproto.SSLProtocolState.WRAPPED
_FLUSHING = sslproto.SSLProtocolState.FLUSHING
_SHUTDOWN = sslproto.SSLProtocolState.SHUTDOWN
_UNWRAPPED = sslproto.SSLProtocolState.UNWRAPPED
_DO_HANDSHAKE = sslproto.SSLProtocolState.DO_HANDSHAKE
_SSL_AGAIN = sslproto.SSLAgainErrors
_AppTransportBase = sslproto._SSLProtocolTransport
# asyncio logs writes to a closed TLS connection after this many
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5


# CPython versions whose _ssl objects start as _openssl_layout.h says
_LAYOUT_PYTHONS = ((3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
_TLS_RECORD = 0x16  # the content type of a handshake record (the ClientHello)
# Plaintext is decrypted into this buffer, then copied into the bytes handed
# to the application (one record carries at most 16 KiB of it).
cdef enum:
    _PLAIN_CAP = 65536
cdef char _plain[_PLAIN_CAP]
_SSLSocketType = None
_MemoryBIOType = type(ssl.MemoryBIO())


cdef Py_ssize_t _basicsize(o):
    return fs_layout_basicsize(o)


cdef bint _bios_match(SSL *s, incoming, outgoing):
    return (s != NULL and SSL_get_rbio(s) == fs_layout_bio(incoming)
            and SSL_get_wbio(s) == fs_layout_bio(outgoing))


def _probe():
    """Whether the direct record layer can run here, and why not."""
    global _SSLSocketType
    cdef SSL *s
    cdef int r
    if os.environ.get("FASTSOCK_TLS_DIRECT") == "0":
        return False, "FASTSOCK_TLS_DIRECT=0"
    if OpenSSL_version_num() != ssl.OPENSSL_VERSION_NUMBER:
        return False, (f"runtime OpenSSL {OpenSSL_version_num():#x} is not the one the ssl "
                       f"module was built with ({ssl.OPENSSL_VERSION_NUMBER:#x})")
    if sys.version_info[:2] not in _LAYOUT_PYTHONS:
        return False, f"_ssl object layout not checked for Python {sys.version_info[:2]}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming = ssl.MemoryBIO()
    outgoing = ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="probe.invalid")
    sock = getattr(obj, "_sslobj", None)
    if (sock is None or _basicsize(sock) < FS_LAYOUT_SSLSOCKET_MIN
            or _basicsize(incoming) != FS_LAYOUT_MEMORYBIO_SIZE
            or _basicsize(ctx) < FS_LAYOUT_CONTEXT_MIN):
        return False, "unexpected _ssl object sizes"
    s = fs_layout_ssl(sock)
    if not _bios_match(s, incoming, outgoing) or SSL_get_SSL_CTX(s) != fs_layout_ctx(ctx):
        return False, "the SSL read from _ssl's objects is not theirs"
    ERR_clear_error()
    r = SSL_do_handshake(s)
    if r != -1 or SSL_get_error(s, r) != SSL_ERROR_WANT_READ:
        ERR_clear_error()
        return False, "probe handshake did not wait for the server"
    if BIO_ctrl_pending(fs_layout_bio(outgoing)) != <size_t>outgoing.pending or not outgoing.pending:
        return False, "probe handshake wrote nothing"
    hello = outgoing.read()
    if hello[0] != _TLS_RECORD:
        return False, "probe handshake wrote no handshake record"
    _SSLSocketType = type(sock)
    return True, "ok"


DIRECT, DIRECT_REASON = _probe()


cdef class _Records:
    """One connection's TLS records while it is WRAPPED, through OpenSSL's C
    API. The ``SSLProtocol`` stays the authority for its state: it calls
    :meth:`sync` whenever a flow-control flag or limit changes and
    :meth:`stop` when the state leaves WRAPPED."""
    cdef SSL *ssl
    cdef BIO *rbio
    cdef BIO *wbio
    cdef object proto          # the SSLProtocol
    cdef object sslobj         # ssl.SSLObject: owns the SSL (kept alive)
    cdef object sslsock        # its _ssl._SSLSocket
    cdef object incoming, outgoing   # the MemoryBIOs (own the BIOs)
    cdef object transport      # the socket transport
    cdef object app_protocol
    cdef object view           # the receive buffer get_buffer hands out
    cdef char *view_ptr
    cdef Py_ssize_t view_len
    cdef Py_ssize_t max_size
    cdef bint active
    cdef bint backlog_check    # data written before the handshake may be queued
    cdef int in_read
    cdef bint ssl_writing_paused, app_writing_paused, app_reading_paused, ssl_reading_paused
    cdef Py_ssize_t out_high, out_low, in_high, in_low

    cdef bint setup(self, proto, sslsock) except -1:
        self.incoming = proto._incoming
        self.outgoing = proto._outgoing
        if type(self.incoming) is not _MemoryBIOType or type(self.outgoing) is not _MemoryBIOType:
            return False
        self.ssl = fs_layout_ssl(sslsock)
        if not _bios_match(self.ssl, self.incoming, self.outgoing):
            return False
        self.rbio = fs_layout_bio(self.incoming)
        self.wbio = fs_layout_bio(self.outgoing)
        self.proto = proto
        self.sslobj = proto._sslobj
        self.sslsock = sslsock
        self.transport = proto._transport
        self.app_protocol = proto._app_protocol
        self.max_size = proto.max_size
        self._set_view(proto._ssl_buffer_view)
        self.backlog_check = bool(proto._write_backlog)
        self.active = True
        self.sync()
        return True

    cdef _set_view(self, view):
        self.view = view
        self.view_ptr = <char*>PyMemoryView_GET_BUFFER(view).buf
        self.view_len = PyMemoryView_GET_BUFFER(view).len

    cdef sync(self):
        proto = self.proto
        self.ssl_writing_paused = proto._ssl_writing_paused
        self.app_writing_paused = proto._app_writing_paused
        self.app_reading_paused = proto._app_reading_paused
        self.ssl_reading_paused = proto._ssl_reading_paused
        self.out_high = proto._outgoing_high_water
        self.out_low = proto._outgoing_low_water
        self.in_high = proto._incoming_high_water
        self.in_low = proto._incoming_low_water

    cdef stop(self):
        self.active = False

    # What the SSLProtocol's and the app transport's instances carry as their
    # get_buffer/buffer_updated/write while WRAPPED (instance attributes, so a
    # call reaches C without a Python-level method and an attribute lookup).
    # A reference taken before stop() still works: it goes the class's way.
    def _get_buffer(self, Py_ssize_t n):
        if not self.active:
            return SSLProtocol.get_buffer(self.proto, n)
        return self.get_buffer(n)

    def _buffer_updated(self, Py_ssize_t nbytes):
        if not self.active:
            SSLProtocol.buffer_updated(self.proto, nbytes)
            return
        self.received(nbytes)

    def _app_write(self, data):
        if type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        if not data:
            return
        self.write(data)

    cdef get_buffer(self, Py_ssize_t n):
        if n > self.view_len and n <= self.max_size:
            view = _SSLProtocolBase.get_buffer(self.proto, n)
            self._set_view(view)
        return self.view

    cdef received(self, Py_ssize_t nbytes):
        """``buffer_updated``: the bytes received into the incoming BIO, then
        decrypted for the application."""
        if nbytes > self.view_len or BIO_write(self.rbio, self.view_ptr, <int>nbytes) != nbytes:
            raise MemoryError("TLS: the incoming BIO did not take the bytes received")
        self.do_read()

    cdef do_read(self):
        """asyncio's ``_do_read`` for a WRAPPED connection."""
        cdef size_t size = 1
        cdef bint drained = False
        proto = self.proto
        try:
            if not self.app_reading_paused:
                self.in_read += 1
                try:
                    drained = self.read_records()
                finally:
                    self.in_read -= 1
                if not self.active:
                    return  # closed while reading: asyncio's shutdown flushed
                if self.backlog_check and proto._write_backlog:
                    proto._do_write()
                elif self.app_writing_paused or BIO_ctrl_pending(self.wbio):
                    self.process_outgoing()
            # asyncio's _control_ssl_reading, run only when a limit is crossed
            size = 0 if drained else BIO_ctrl_pending(self.rbio)
            if self.ssl_reading_paused:
                if <Py_ssize_t>size <= self.in_low:
                    proto._control_ssl_reading()
            elif <Py_ssize_t>size >= self.in_high:
                proto._control_ssl_reading()
        except Exception as ex:
            proto._fatal_error(ex, "Fatal error on SSL protocol")

    cdef bint read_records(self) except -1:
        """asyncio's ``_do_read__copied``: every record received decrypted,
        handed to the application in one ``data_received``."""
        cdef size_t n = 0
        cdef size_t filled = 0
        cdef int err
        cdef bint eof = False
        cdef bint drained = False   # the incoming BIO seen empty
        parts = None
        # no ERR_clear_error() first (it costs as much as a BIO write): the
        # ssl module clears the queue when it raises, so it only holds what
        # a failing call below put there
        while True:
            if SSL_read_ex(self.ssl, _plain + filled, _PLAIN_CAP - filled, &n) == 1:
                filled += n
                if filled == _PLAIN_CAP:
                    if parts is None:
                        parts = []
                    parts.append(PyBytes_FromStringAndSize(_plain, <Py_ssize_t>filled))
                    filled = 0
                if not BIO_ctrl_pending(self.rbio) and not SSL_pending(self.ssl):
                    # everything received is decrypted; a close_notify
                    # still in the BIO keeps the loop going
                    drained = True
                    break
                continue
            err = SSL_get_error(self.ssl, 0)
            if err == SSL_ERROR_WANT_READ:
                break
            if err == SSL_ERROR_ZERO_RETURN and SSL_get_shutdown(self.ssl) & SSL_RECEIVED_SHUTDOWN:
                eof = True
                break
            # any other outcome: the ssl module's read (the error is still
            # queued) returns or raises exactly what asyncio would see. It
            # releases the GIL, so what _plain holds is copied out first
            # (another loop thread may decrypt into it meanwhile).
            if parts is None:
                parts = []
            if filled:
                parts.append(PyBytes_FromStringAndSize(_plain, <Py_ssize_t>filled))
                filled = 0
            try:
                chunk = self.sslobj.read(self.max_size)
            except _SSL_AGAIN:
                break
            finally:
                ERR_clear_error()
            if not chunk:
                eof = True
                break
            parts.append(chunk)
        if parts:
            if filled:
                parts.append(PyBytes_FromStringAndSize(_plain, <Py_ssize_t>filled))
            self.app_protocol.data_received(b"".join(parts))
        elif filled:
            self.app_protocol.data_received(PyBytes_FromStringAndSize(_plain, <Py_ssize_t>filled))
        if eof:
            self.proto._call_eof_received()
            self.proto._start_shutdown()
        return drained

    cdef write(self, data):
        """One application write: encrypted into the outgoing BIO, sent at
        once unless a read is in progress (its end sends the turn's records)."""
        cdef Py_buffer buf
        cdef size_t written = 0
        cdef int ok
        cdef int err
        proto = self.proto
        if not self.active or (self.backlog_check and proto._write_backlog):
            _write_one_c(proto, data)
            return
        self.backlog_check = False
        try:
            if type(data) is bytes:
                ok = SSL_write_ex(self.ssl, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data),
                                  &written)
            else:
                PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
                try:
                    ok = SSL_write_ex(self.ssl, buf.buf, <size_t>buf.len, &written)
                finally:
                    PyBuffer_Release(&buf)
            if not ok:
                err = SSL_get_error(self.ssl, 0)
                if err == SSL_ERROR_WANT_READ or err == SSL_ERROR_WANT_WRITE:
                    # OpenSSL needs the peer first (TLS 1.2 renegotiation):
                    # asyncio's backlog takes it from here
                    ERR_clear_error()
                    self.backlog_check = True
                    proto._write_appdata((data,))
                    return
                # the ssl module's write raises what asyncio would see
                try:
                    self.sslobj.write(data)
                finally:
                    ERR_clear_error()
            if not self.in_read:
                self.process_outgoing()
        except Exception as ex:
            proto._fatal_error(ex, "Fatal error on SSL protocol")

    cdef process_outgoing(self):
        """asyncio's ``_process_outgoing``: the records to the transport, then
        its flow-control check, inline."""
        cdef size_t pending
        cdef Py_ssize_t size
        if not self.ssl_writing_paused:
            pending = BIO_ctrl_pending(self.wbio)
            if pending:
                if pending > <size_t>INT_MAX:
                    pending = <size_t>INT_MAX
                data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>pending)
                if BIO_read(self.wbio, PyBytes_AS_STRING(data), <int>pending) != <int>pending:
                    raise MemoryError("TLS: the outgoing BIO did not give its records")
                self.transport.write(data)
            size = 0
        else:
            size = <Py_ssize_t>BIO_ctrl_pending(self.wbio)
        # asyncio's _control_app_writing (it counts its backlog too, empty here
        # unless backlog_check), run only when a limit is crossed
        if self.app_writing_paused:
            if size <= self.out_low:
                self.proto._control_app_writing()
        elif size >= self.out_high:
            self.proto._control_app_writing()


class SSLProtocol(_SSLProtocolBase):
    """asyncio's ``SSLProtocol`` with the record path compiled and a read
    turn's records sent with one write."""

    _in_read = 0  # nesting depth: a close while reading reads again (asyncio's _do_flush)
    _rec = None   # the direct record layer (_Records) while WRAPPED

    def __init__(self, loop, *args, **kwargs):
        _SSLProtocolBase.__init__(self, loop, *args, **kwargs)
        view = getattr(loop, "recv_view", None)
        if type(view) is memoryview and len(view) >= self.max_size:
            # the loop-owned receive buffer (fastsock's loop): drop asyncio's
            # 256 KiB buffer for this connection
            self._ssl_buffer = loop.recv_buffer
            self._ssl_buffer_view = view

    def _get_app_transport(self):
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_transport = _AppTransport(self._loop, self)
            self._app_transport_created = True
            rec = self._rec
            if rec is not None:
                self._app_transport._rec = rec
                self._app_transport.write = rec._app_write
        return self._app_transport

    # ------------------------------------------------ the direct record layer
    def _set_state(self, new_state):
        _SSLProtocolBase._set_state(self, new_state)
        rec = self._rec
        if rec is not None and new_state is not _WRAPPED:
            self._stop_records()
        elif new_state is _WRAPPED and DIRECT and not self._app_protocol_is_buffer:
            self._start_records()

    def _start_records(self):
        sock = getattr(self._sslobj, "_sslobj", None)
        if type(sock) is not _SSLSocketType:
            return
        rec = _Records.__new__(_Records)
        if not (<_Records>rec).setup(self, sock):
            return
        self._rec = rec
        self.get_buffer = rec._get_buffer
        self.buffer_updated = rec._buffer_updated
        if self._app_transport is not None:
            self._app_transport._rec = rec
            self._app_transport.write = rec._app_write

    def _stop_records(self):
        rec = self._rec
        if rec is not None:
            (<_Records>rec).stop()
            self._rec = None
            # the class's methods again (and no cycle through rec)
            self.__dict__.pop("get_buffer", None)
            self.__dict__.pop("buffer_updated", None)
            app = self._app_transport
            if app is not None:
                app._rec = None
                app.__dict__.pop("write", None)

    def _sync_records(self):
        rec = self._rec
        if rec is not None:
            (<_Records>rec).sync()

    def _set_app_protocol(self, app_protocol):
        _SSLProtocolBase._set_app_protocol(self, app_protocol)
        rec = self._rec
        if rec is not None:
            if self._app_protocol_is_buffer:
                self._stop_records()
            else:
                (<_Records>rec).app_protocol = app_protocol

    # every flag and limit _Records mirrors changes in one of these
    def pause_writing(self):
        _SSLProtocolBase.pause_writing(self)
        self._sync_records()

    def resume_writing(self):
        _SSLProtocolBase.resume_writing(self)
        self._sync_records()

    def _pause_reading(self):
        _SSLProtocolBase._pause_reading(self)
        self._sync_records()

    def _resume_reading(self):
        _SSLProtocolBase._resume_reading(self)
        self._sync_records()

    def _control_app_writing(self):
        _SSLProtocolBase._control_app_writing(self)
        self._sync_records()

    def _control_ssl_reading(self):
        _SSLProtocolBase._control_ssl_reading(self)
        self._sync_records()

    def _set_write_buffer_limits(self, high=None, low=None):
        _SSLProtocolBase._set_write_buffer_limits(self, high, low)
        self._sync_records()

    def _set_read_buffer_limits(self, high=None, low=None):
        _SSLProtocolBase._set_read_buffer_limits(self, high, low)
        self._sync_records()

    def get_buffer(self, n):
        rec = self._rec
        if rec is not None:
            return (<_Records>rec).get_buffer(n)
        view = self._ssl_buffer_view
        if n > len(view) and n <= self.max_size:
            return _SSLProtocolBase.get_buffer(self, n)
        return view

    def _on_handshake_complete(self, handshake_exc):
        note_handshake_failure(self, handshake_exc)    # plain HTTP on a TLS port: one log line
        _SSLProtocolBase._on_handshake_complete(self, handshake_exc)

    def buffer_updated(self, nbytes):
        rec = self._rec
        if rec is not None:
            (<_Records>rec).received(nbytes)
            return
        self._incoming.write(self._ssl_buffer_view[:nbytes])
        state = self._state
        if state is _WRAPPED:
            _do_read_c(self)
        elif state is _DO_HANDSHAKE:
            self._do_handshake()
        elif state is _FLUSHING:
            self._do_flush()
        elif state is _SHUTDOWN:
            self._do_shutdown()

    # ------------------------------------------------------------ outgoing
    def _write_one(self, data):
        """One application write (the app transport's ``write``): with
        nothing queued before it, encrypted straight from ``data``."""
        rec = self._rec
        if rec is not None:
            (<_Records>rec).write(data)
        else:
            _write_one_c(self, data)

    def _write_appdata(self, list_of_data):
        state = self._state
        if state is _FLUSHING or state is _SHUTDOWN or state is _UNWRAPPED:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("SSL connection is closed")
            self._conn_lost += 1
            return
        backlog = self._write_backlog
        added = 0
        for data in list_of_data:
            backlog.append(data)
            added += len(data)
        self._write_buffer_size += added
        try:
            if state is _WRAPPED:
                if self._in_read:
                    self._encrypt_backlog()  # _do_read sends the records once
                else:
                    self._do_write()
        except Exception as ex:
            self._fatal_error(ex, "Fatal error on SSL protocol")
        rec = self._rec
        if rec is not None and self._write_backlog:
            (<_Records>rec).backlog_check = True  # keep the order of what waits

    def _encrypt_backlog(self):
        """Encrypt what the application wrote into the outgoing BIO."""
        backlog = self._write_backlog
        write = self._sslobj.write
        try:
            while backlog:
                data = backlog[0]
                count = write(data)
                size = len(data)
                if count < size:
                    backlog[0] = data[count:]
                    self._write_buffer_size -= count
                else:
                    backlog.popleft()
                    self._write_buffer_size -= size
        except _SSL_AGAIN:
            pass

    def _do_write(self):
        self._encrypt_backlog()
        _process_outgoing(self)

    def _process_outgoing(self):
        _process_outgoing(self)

    # ------------------------------------------------------------ incoming
    def _do_read(self):
        rec = self._rec
        if rec is not None:
            (<_Records>rec).do_read()
        else:
            _do_read_c(self)

    def _do_read__copied(self):
        _read_copied(self)


class _AppTransport(_AppTransportBase):
    """asyncio's TLS application transport with ``write`` compiled."""

    _rec = None  # the protocol's _Records while it is WRAPPED

    def write(self, data):
        if type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        if not data:
            return
        rec = self._rec
        if rec is not None:
            (<_Records>rec).write(data)
        else:
            _write_one_c(self._ssl_protocol, data)


cdef _process_outgoing(self):
    """asyncio's ``_process_outgoing``: the records in the outgoing BIO to the
    transport, then its flow-control check, made inline."""
    if not self._ssl_writing_paused:
        data = self._outgoing.read()
        if data:
            self._transport.write(data)
        size = self._write_buffer_size  # the outgoing BIO is empty now
    else:
        size = self._outgoing.pending + self._write_buffer_size
    # asyncio's _control_app_writing, run only when a limit is crossed
    if self._app_writing_paused:
        if size <= self._outgoing_low_water:
            self._control_app_writing()
    elif size >= self._outgoing_high_water:
        self._control_app_writing()


cdef _read_copied(self):
    """asyncio's ``_do_read__copied``: decrypt what the incoming BIO holds
    and hand it to the application in one ``data_received``."""
    sslobj = self._sslobj
    incoming = self._incoming
    read = sslobj.read
    max_size = self.max_size
    chunk = b"1"
    first = None
    parts = None
    try:
        while True:
            chunk = read(max_size)
            if not chunk:
                break
            if first is None:
                first = chunk
            elif parts is None:
                parts = [first, chunk]
            else:
                parts.append(chunk)
            if not incoming.pending and not sslobj.pending():
                # every record received is decrypted: another read would
                # only raise SSLWantReadError (about a tenth of a small
                # message's cost); a close_notify still waiting in the
                # BIO keeps the loop going, so EOF is seen as before
                break
    except _SSL_AGAIN:
        pass
    if parts is not None:
        self._app_protocol.data_received(b"".join(parts))
    elif first is not None:
        self._app_protocol.data_received(first)
    if not chunk:
        # close_notify
        self._call_eof_received()
        self._start_shutdown()


cdef _write_one_c(self, data):
    """``SSLProtocol._write_one``, called in C by the app transport."""
    state = self._state
    if state is not _WRAPPED or self._write_backlog:
        self._write_appdata((data,))
        return
    try:
        try:
            count = self._sslobj.write(data)
        except _SSL_AGAIN:
            count = 0
        size = len(data)
        if count < size:
            self._write_backlog.append(data[count:] if count else data)
            self._write_buffer_size += size - count
        if not self._in_read:
            _process_outgoing(self)
    except Exception as ex:
        self._fatal_error(ex, "Fatal error on SSL protocol")


cdef _do_read_c(self):
    """``SSLProtocol._do_read``, called in C by ``buffer_updated``."""
    state = self._state
    if state is not _WRAPPED and state is not _FLUSHING:
        return
    try:
        if not self._app_reading_paused:
            self._in_read += 1
            try:
                if self._app_protocol_is_buffer:
                    self._do_read__buffered()
                else:
                    _read_copied(self)
            finally:
                self._in_read -= 1
            if self._write_backlog:
                self._do_write()
            elif self._outgoing.pending or self._app_writing_paused:
                # records to send (written during the read, or TLS
                # messages of its own), or writing to resume; otherwise
                # asyncio's _process_outgoing would do nothing
                _process_outgoing(self)
        # asyncio's _control_ssl_reading, run only when a limit is crossed
        size = self._incoming.pending
        if self._ssl_reading_paused:
            if size <= self._incoming_low_water:
                self._control_ssl_reading()
        elif size >= self._incoming_high_water:
            self._control_ssl_reading()
    except Exception as ex:
        self._fatal_error(ex, "Fatal error on SSL protocol")
