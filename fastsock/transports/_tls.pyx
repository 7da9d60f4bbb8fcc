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
  records separately). Outside a read, a write goes out at once, as before.
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
# asyncio logs writes to a closed TLS connection after this many
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5


class SSLProtocol(_SSLProtocolBase):
    """asyncio's ``SSLProtocol`` with the record path compiled and a read
    turn's records sent with one write."""

    _in_read = 0  # nesting depth: a close while reading reads again (asyncio's _do_flush)

    def _on_handshake_complete(self, handshake_exc):
        note_handshake_failure(self, handshake_exc)    # plain HTTP on a TLS port: one log line
        _SSLProtocolBase._on_handshake_complete(self, handshake_exc)

    def buffer_updated(self, nbytes):
        self._incoming.write(self._ssl_buffer_view[:nbytes])
        state = self._state
        if state is _WRAPPED:
            self._do_read()
        elif state is _DO_HANDSHAKE:
            self._do_handshake()
        elif state is _FLUSHING:
            self._do_flush()
        elif state is _SHUTDOWN:
            self._do_shutdown()

    # ------------------------------------------------------------ outgoing
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
        self._process_outgoing()

    def _process_outgoing(self):
        if not self._ssl_writing_paused:
            data = self._outgoing.read()
            if data:
                self._transport.write(data)
        self._control_app_writing()

    # ------------------------------------------------------------ incoming
    def _do_read(self):
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
                        self._do_read__copied()
                finally:
                    self._in_read -= 1
                if self._write_backlog:
                    self._do_write()
                else:
                    self._process_outgoing()
            self._control_ssl_reading()
        except Exception as ex:
            self._fatal_error(ex, "Fatal error on SSL protocol")

    def _do_read__copied(self):
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
