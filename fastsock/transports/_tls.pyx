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
  buffer in between.
"""
import ssl

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


class SSLProtocol(_SSLProtocolBase):
    """asyncio's ``SSLProtocol`` with the record path compiled and a read
    turn's records sent with one write."""

    _in_read = 0  # nesting depth: a close while reading reads again (asyncio's _do_flush)

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
        return self._app_transport

    def get_buffer(self, n):
        view = self._ssl_buffer_view
        if n > len(view) and n <= self.max_size:
            return _SSLProtocolBase.get_buffer(self, n)
        return view

    def _on_handshake_complete(self, handshake_exc):
        note_handshake_failure(self, handshake_exc)    # plain HTTP on a TLS port: one log line
        _SSLProtocolBase._on_handshake_complete(self, handshake_exc)

    def buffer_updated(self, nbytes):
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
        _do_read_c(self)

    def _do_read__copied(self):
        _read_copied(self)


class _AppTransport(_AppTransportBase):
    """asyncio's TLS application transport with ``write`` compiled."""

    def write(self, data):
        if type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        if not data:
            return
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
