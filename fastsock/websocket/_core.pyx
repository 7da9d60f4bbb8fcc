# cython: language_level=3
"""The per-message path of a WebSocket connection, compiled.

This is the twin of ``fastsock/websocket/_core_py.py``, which documents the
behaviour; the two must not differ in anything a caller can observe. With
this module, the only Python frames a message runs through are the
application's own ``on_message``. ``data_received`` reads the compiled
codec's frames through their C fields; as a ``ChunkReceiver``
(``fastsock/_receive.pxd``) the core parses the transport's receive buffer
in place, so a read whose frames are all whole makes no ``bytes`` copy.
``send`` builds a small frame in one allocation, copying an ASCII ``str``
straight from the string with no ``encode()``; on a transport whose write
takes a pointer (``fastsock/_send.pxd``) it makes no allocation at all: the
frame is built in scratch memory just before it is sent, and a reply sent
while input is handled waits unframed until then (``_pending``).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from cpython.ref cimport PyObject, Py_INCREF
cimport cython
from libc.string cimport memcpy

from fastsock._frame cimport Frame, FrameParser
from fastsock._receive cimport ChunkReceiver

import logging

from fastsock.exceptions import ProtocolError
from fastsock.websocket._core_py import COALESCE as _PY_COALESCE, frame_header

cdef extern from "Python.h":
    object PyObject_CallMethodOneArg(object obj, object name, object arg)
    void *PyList_GET_ITEM(object list, Py_ssize_t i)
    void Py_DECREF(object o)
    bint PyUnicode_IS_ASCII(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)

cdef extern from *:
    """
    #define FS_PREFETCH(p) __builtin_prefetch((const void *)(p), 1, 3)

    /* A list of one item made empty, keeping its storage: "del out[0]"
       frees it, and the next append allocates it again (two allocator
       calls per frame for a connection that gets one frame per turn). */
    static inline void fs_list_empty_one(PyObject *list) {
        PyObject *item = PyList_GET_ITEM(list, 0);
        Py_SET_SIZE(list, 0);
        Py_DECREF(item);
    }
    """
    void _prefetch "FS_PREFETCH"(const void *p) noexcept nogil
    void _list_empty_one "fs_list_empty_one"(list out)

log = logging.getLogger("fastsock.websocket")

# TurnFlush.run fetches the connection PREFETCH_FAR places ahead, and the
# list and writer of the one PREFETCH_NEAR places ahead (one write is a few
# microseconds of kernel work: time enough for the memory to arrive).
cdef enum:
    PREFETCH_FAR = 4
    PREFETCH_NEAR = 2

cdef Py_ssize_t COALESCE = _PY_COALESCE
cdef str _ON_MESSAGE = "on_message"

# Where a frame under COALESCE bytes is built right before write_chunk()
# (which copies what it keeps), so one buffer serves every connection.
cdef enum:
    SCRATCH_SIZE = 4100
cdef unsigned char _scratch[SCRATCH_SIZE]
if COALESCE + 4 > SCRATCH_SIZE:
    raise ImportError("the frame scratch buffer is smaller than COALESCE")


cdef inline Py_ssize_t _frame_into(unsigned char *p, unsigned char b0,
                                   const char *src, Py_ssize_t n) noexcept:
    # An unmasked frame of n < 65536 payload bytes at p; returns its size.
    cdef Py_ssize_t h = 2 if n < 126 else 4
    p[0] = b0
    if n < 126:
        p[1] = <unsigned char>n
    else:
        p[1] = 126
        p[2] = <unsigned char>(n >> 8)
        p[3] = <unsigned char>(n & 0xFF)
    memcpy(p + h, src, <size_t>n)
    return h + n


cdef inline const char *_payload_of(object payload, Py_ssize_t *n) noexcept:
    # The bytes of an ASCII str or a bytes object (what _pending holds).
    if type(payload) is str:
        n[0] = PyUnicode_GET_LENGTH(payload)
        return <const char *>PyUnicode_DATA(payload)
    n[0] = PyBytes_GET_SIZE(payload)
    return PyBytes_AS_STRING(payload)


cdef bytes _frame_bytes(unsigned char b0, const char *src, Py_ssize_t n):
    frame = PyBytes_FromStringAndSize(NULL, (2 if n < 126 else 4) + n)
    _frame_into(<unsigned char *>PyBytes_AS_STRING(frame), b0, src, n)
    return frame


# Metrics: a few adds per message into the connection's own fields.

cdef inline Py_ssize_t _header_size(unsigned char b1) noexcept:
    # A frame header's size, from its second byte (mask bit, 7-bit length).
    cdef Py_ssize_t h = 6 if b1 & 0x80 else 2
    b1 &= 0x7F
    if b1 == 126:
        h += 2
    elif b1 == 127:
        h += 8
    return h


cdef inline void _count_in(HandlerCore core, unsigned char op, Py_ssize_t n) noexcept:
    if op == 1:
        core._rx_text += 1
        core._rx_text_bytes += <unsigned long long>n
    else:
        core._rx_binary += 1
        core._rx_binary_bytes += <unsigned long long>n


cdef inline void _count_out(HandlerCore core, unsigned char op, Py_ssize_t n) noexcept:
    if op == 1:
        core._tx_text += 1
        core._tx_text_bytes += <unsigned long long>n
    else:
        core._tx_binary += 1
        core._tx_binary_bytes += <unsigned long long>n


cdef inline void _count_frame_out(HandlerCore core, bytes frame) noexcept:
    # An encoded server data frame (fastsock.pubsub.fanout: broadcast, offer_frame).
    cdef const unsigned char *f = <const unsigned char *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(frame)
    if size >= 2 and (f[0] & 0x0F) in (1, 2):
        _count_out(core, f[0] & 0x0F, size - _header_size(f[1]))


def sum_counters(handlers):
    """The metrics counters of ``handlers`` added up, in ``COUNTER_FIELDS``
    order (one C loop, for a scrape over thousands of connections)."""
    cdef HandlerCore core
    cdef unsigned long long t[8]
    cdef int i
    for i in range(8):
        t[i] = 0
    for handler in handlers:
        core = <HandlerCore?>handler
        t[0] += core._rx_text
        t[1] += core._rx_text_bytes
        t[2] += core._rx_binary
        t[3] += core._rx_binary_bytes
        t[4] += core._tx_text
        t[5] += core._tx_text_bytes
        t[6] += core._tx_binary
        t[7] += core._tx_binary_bytes
    return [t[i] for i in range(8)]


cdef class HandlerCore(ChunkReceiver):
    """The per-message state and path of a connection (see ``_core_py.py``;
    the fields are declared in ``_core.pxd``)."""

    def data_received(self, data):
        """Handle received bytes. Callbacks fire first; then everything they
        sent goes out in one write. This is both the transport callback and the
        sans-I/O entry: with no transport attached, the output waits for
        ``data_to_send``."""
        if type(data) is bytes:
            self._receive(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), data)
        else:
            self._receive(NULL, 0, data)

    cdef int chunk_received(self, const unsigned char *data, Py_ssize_t n) except -1:
        # The transport's buffer, in place (fastsock/_receive.pxd): what
        # data_received(bytes) does, with a copy made only of a remainder
        # that feed() has to keep.
        self._receive(data, n, None)
        return 0

    cdef int _receive(self, const unsigned char *p, Py_ssize_t n, object data) except -1:
        # p/n: the bytes, readable until this returns (data, if not None, is
        # the same bytes as an object); p NULL: data is some other buffer.
        cdef list frames
        cdef Frame frame
        cdef bytes payload
        cdef Py_ssize_t i, count, pos = 0, used = 0
        parser = self._parser
        if parser is None:
            return 0
        self._batching = True
        try:
            if p != NULL and self._rx_fast and type(parser) is FrameParser:
                # The fast lane: whole small text/binary frames go from the
                # chunk to on_message with no Frame objects in between. The
                # first frame it does not take, and all that follows, goes
                # to feed().
                while pos < n and self._rx_fast:
                    message = (<FrameParser>parser).next_message(p + pos, n - pos, &used)
                    if message is None:
                        break
                    _count_in(self, p[pos] & 0x0F, used - _header_size(p[pos + 1]))
                    pos += used
                    PyObject_CallMethodOneArg(self, _ON_MESSAGE, message)
                if pos == n:
                    return 0
                parser = self._parser           # a callback may have closed
                if parser is None:
                    return 0
            if data is None or pos:
                data = PyBytes_FromStringAndSize(<const char *>p + pos, n - pos)
            try:
                frames = parser.feed(data)
            except ProtocolError:
                return 0   # already failed on this error: discard what follows
            count = len(frames)
            for i in range(count):
                frame = frames[i]
                if frame.fin and self._rx_fast:
                    # self.on_message(...) without a bound-method object per call
                    if frame.opcode == 1:
                        payload = frame.payload
                        _count_in(self, 1, PyBytes_GET_SIZE(payload))
                        # UTF-8 already checked by the codec; decoding cannot fail
                        PyObject_CallMethodOneArg(
                            self, _ON_MESSAGE,
                            PyUnicode_DecodeUTF8(PyBytes_AS_STRING(payload),
                                                 PyBytes_GET_SIZE(payload), NULL))
                        continue
                    if frame.opcode == 2:
                        payload = frame.payload
                        _count_in(self, 2, PyBytes_GET_SIZE(payload))
                        PyObject_CallMethodOneArg(self, _ON_MESSAGE, payload)
                        continue
                self._handle_frames(frames[i:] if i else frames)
                break
            err = parser.error
            if err is not None and not self._close_received:
                self._batching = False
                self.fail(err.close_code, str(err))
        except Exception:
            # A bug in an on_* callback: report it and fail with 1011.
            log.exception("error in a callback of %s", type(self).__name__)
            self._batching = False
            self.fail(1011, "internal error")
        finally:
            self._batching = False
            if self._outq or self._pending is not None:
                if self._flusher is None:
                    self.write_queued()
                else:
                    self._flusher.add(self)
        return 0

    @property
    def _out(self):
        """The frames queued to write (list[bytes], as in the twin)."""
        self._settle()
        return self._outq

    @_out.setter
    def _out(self, list value):
        self._pending = None
        self._outq = value

    cdef int _settle(self) except -1:
        # Frame the pending reply into the queue, for every path but the
        # one-reply write (which frames it in _scratch).
        cdef const char *src
        cdef Py_ssize_t n
        pending = self._pending
        if pending is not None:
            self._pending = None
            src = _payload_of(pending, &n)
            self._outq.append(_frame_bytes(self._pending_b0, src, n))
        return 0

    cdef int write_queued(self) except -1:
        cdef list out = self._outq
        cdef const char *src
        cdef Py_ssize_t n
        pending = self._pending
        if pending is not None:
            if not out and self._fast and self._writer is not None:
                # the one-reply case, with no frame object
                self._pending = None
                src = _payload_of(pending, &n)
                n = _frame_into(_scratch, self._pending_b0, src, n)
                try:
                    self._writer.write_chunk(<const char *>_scratch, n)
                except BaseException:
                    if self._pending is None and not out:
                        self._pending = pending    # kept queued, as a frame would be
                    raise
                return 0
            self._settle()
        if len(out) == 1 and self._fast:
            frame = <bytes>out[0]              # the one-frame case
            if self._writer is not None:
                self._writer.write_chunk(PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
            else:
                self._transport.write(frame)
            # (kept queued if the write raised; a callback inside the write,
            # e.g. on_pause_writing, may have queued more behind it)
            if len(out) == 1:
                _list_empty_one(out)
            else:
                del out[0]
        else:
            self._flush()
        return 0

    def _broadcast_frame(self, bytes frame):
        """Queue an encoded server frame for this turn's write if this
        connection is open, a server's, without extensions and not paused;
        else return False and leave it to the caller (``broadcast``)."""
        if not self._fast or self._writing_paused:
            return False
        _count_frame_out(self, frame)
        self._settle()
        self._outq.append(frame)
        if not self._batching:
            if self._flusher is not None:
                self._flusher.add(self)
            else:
                self._flush()
        return True

    def _write_out(self):
        """Write everything queued in ``_out``."""
        self.write_queued()

    def _count_frame_out(self, bytes frame):
        """Count an encoded server data frame as a message sent (metrics)."""
        _count_frame_out(self, frame)

    def send(self, message):
        """Send one message: ``str`` as text, bytes-like as binary.

        Raises :class:`~fastsock.exceptions.ConnectionClosed` once the
        closing handshake has started. A memoryview is copied only if it is
        small; do not change a large one until ``buffered_amount`` says it was
        sent.
        """
        cdef const char *src
        cdef unsigned char b0
        cdef Py_ssize_t n
        cdef bytes payload = None
        cdef list out
        if not self._fast:
            self._send_slow(message)
            return
        kind = type(message)
        if kind is str:
            if PyUnicode_IS_ASCII(message):
                src = <const char *>PyUnicode_DATA(message)
                n = PyUnicode_GET_LENGTH(message)
            else:
                payload = PyUnicode_AsUTF8String(message)
                src = PyBytes_AS_STRING(payload)
                n = PyBytes_GET_SIZE(payload)
            b0 = 0x81
        elif kind is bytes:
            payload = <bytes>message
            src = PyBytes_AS_STRING(payload)
            n = PyBytes_GET_SIZE(payload)
            b0 = 0x82
        else:
            self._send_slow(message)
            return
        _count_out(self, b0 & 0x0F, n)
        out = self._outq
        if n < COALESCE:
            if not out and self._pending is None and self._writer is not None:
                if self._batching:
                    # Keep the reply unframed until the turn's write, where
                    # it is framed in _scratch (write_queued): no allocation.
                    self._pending = payload if payload is not None else message
                    self._pending_b0 = b0
                else:
                    self._writer.write_chunk(<const char *>_scratch, _frame_into(_scratch, b0, src, n))
                return
            if not out and self._pending is None and not self._batching:
                self._transport.write(_frame_bytes(b0, src, n))
                return
            self._settle()
            out.append(_frame_bytes(b0, src, n))
            if not self._batching:
                self._flush()
            return
        if payload is None:
            payload = PyBytes_FromStringAndSize(src, n)
        self._settle()
        out.append(frame_header(b0, n))
        out.append(payload)
        if not self._batching:
            self._flush()


cdef str _CORE = "core"
cdef object _END = object()     # offer_all's end-of-iteration marker

# offer_all keeps OFFER_RING connections in flight: taken from the iterable
# (which increfs them: their first cache line is on its way), their list
# and flusher fetched OFFER_FIELDS places later, handled at the end of the
# ring. A set's iterator never touches the objects, so without this every
# connection would be a memory stall, one after the other.
cdef enum:
    OFFER_RING = 8          # a power of two
    OFFER_MASK = OFFER_RING - 1
    OFFER_FIELDS = 4


cdef inline void _prefetch_fields(object conn) noexcept:
    cdef HandlerCore core
    if isinstance(conn, HandlerCore):
        core = <HandlerCore>conn
        _prefetch(<void *>core._outq)
        _prefetch(<void *>core._flusher)


cdef int _offer_one(object conn, bytes frame, unsigned char op, Py_ssize_t n,
                    list rest) except -1:
    # 1 if frame was queued on conn, else 0 (conn appended to rest).
    cdef HandlerCore core
    cdef TurnFlush flusher
    if isinstance(conn, HandlerCore):
        core = <HandlerCore>conn
    else:
        inner = getattr(conn, _CORE, None)
        if not isinstance(inner, HandlerCore):
            rest.append(conn)
            return 0
        core = <HandlerCore>inner
    if not core._fast or core._writing_paused:
        rest.append(conn)
        return 0
    if op:
        _count_out(core, op, n)
    if core._pending is not None:
        core._settle()
    core._outq.append(frame)
    if not core._batching:
        flusher = core._flusher
        if flusher is not None:
            if not core._queued:
                core._queued = True
                if not flusher.pending:
                    flusher.loop.call_soon(flusher.run)
                flusher.pending.append(core)
        else:
            core._flush()
    return 1


def offer_all(connections, bytes frame, list rest):
    """Queue ``frame`` (an encoded server frame) for this turn's write on each
    of ``connections`` that takes the fast path (see ``_core_py.offer_all``):
    one C loop, no Python call per connection. The others go to ``rest``.
    Returns (how many were queued, the last connection seen or None)."""
    cdef const unsigned char *f = <const unsigned char *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(frame)
    cdef _OfferRing ring = _OfferRing.__new__(_OfferRing)
    ring.frame = frame
    ring.rest = rest
    if size >= 2 and (f[0] & 0x0F) in (1, 2):
        ring.op = f[0] & 0x0F     # counted as a message: header parsed once
        ring.n = size - _header_size(f[1])
    it = iter(connections)
    while True:
        try:
            item = next(it, _END)
        except BaseException:
            ring.drain()          # what was taken is offered, as the twin does
            raise
        if item is _END:
            break
        ring.push(item)
    ring.drain()
    return ring.sent, ring.last


@cython.final
cdef class _OfferRing:
    # offer_all's connections in flight (see OFFER_RING); owns a reference
    # to each one in ring[tail:head].
    cdef PyObject *ring[OFFER_RING]
    cdef size_t head, tail
    cdef bytes frame
    cdef list rest
    cdef unsigned char op
    cdef Py_ssize_t n, sent
    cdef object last

    def __cinit__(self):
        self.head = self.tail = 0
        self.sent = 0
        self.last = None

    def __dealloc__(self):
        while self.tail < self.head:        # after an error in an offer
            Py_DECREF(<object>self.ring[self.tail & OFFER_MASK])
            self.tail += 1

    cdef inline int push(self, object item) except -1:
        Py_INCREF(item)
        self.ring[self.head & OFFER_MASK] = <PyObject *>item
        self.head += 1
        if self.head - self.tail > OFFER_FIELDS:
            _prefetch_fields(<object>self.ring[(self.head - 1 - OFFER_FIELDS) & OFFER_MASK])
        if self.head - self.tail == OFFER_RING:
            self.offer_oldest()
        return 0

    cdef inline int offer_oldest(self) except -1:
        p = <object>self.ring[self.tail & OFFER_MASK]
        self.tail += 1
        Py_DECREF(p)                        # the ring's reference (``p`` holds one)
        self.last = p
        self.sent += _offer_one(p, self.frame, self.op, self.n, self.rest)
        return 0

    cdef int drain(self) except -1:
        while self.tail < self.head:
            if self.head - self.tail > OFFER_FIELDS:
                _prefetch_fields(<object>self.ring[(self.tail + OFFER_FIELDS) & OFFER_MASK])
            self.offer_oldest()
        return 0


cdef class TurnFlush:
    """Writes each connection's queued output once per loop turn (see ``_core_py.py``)."""

    def __init__(self, loop):
        self.loop = loop
        self.pending = []

    cpdef add(self, HandlerCore handler):
        """Write ``handler``'s queued output at the end of this turn (once)."""
        if handler._queued:
            return
        handler._queued = True
        if not self.pending:
            self.loop.call_soon(self.run)
        self.pending.append(handler)

    def run(self):
        cdef HandlerCore handler, ahead
        cdef list batch = self.pending
        cdef Py_ssize_t i, count = len(batch)
        self.pending = []
        for i in range(count):
            # Each write below is a system call whose kernel work evicts
            # the cache, so the next connections' objects would be fetched
            # from memory one miss at a time: fetch them while it runs.
            if i + PREFETCH_FAR < count:
                _prefetch(<void *>PyList_GET_ITEM(batch, i + PREFETCH_FAR))
            if i + PREFETCH_NEAR < count:
                ahead = <HandlerCore>PyList_GET_ITEM(batch, i + PREFETCH_NEAR)
                _prefetch(<void *>ahead._outq)
                _prefetch(<void *>ahead._writer)
            handler = <HandlerCore>PyList_GET_ITEM(batch, i)
            # the batch's reference dropped now, while the object is in the
            # cache, not by the batch's dealloc in one more pass over them all
            batch[i] = None
            handler._queued = False
            if handler._outq or handler._pending is not None:
                try:
                    handler.write_queued()
                except Exception:
                    # One broken transport must not keep the others' bytes queued.
                    log.exception("error writing to %r", handler._transport)
