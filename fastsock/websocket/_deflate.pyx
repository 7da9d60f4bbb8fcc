# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""permessage-deflate's per-message work (RFC 7692) on zlib's C API.

The twin of ``_deflate_py.py``, which documents the behaviour; the two give
the same bytes. A :class:`Compressor` turns one message into a raw DEFLATE
stream flushed with Z_SYNC_FLUSH, minus the 00 00 ff ff tail; a
:class:`Decompressor` appends the tail and inflates into an output buffer
that grows in bounded steps up to ``max_size`` + 1 bytes, so a message that
would inflate past the limit stops there (a "bomb" costs at most the limit
plus one step), and a text message's UTF-8 is checked step by step while it
grows. Neither allocates zlib's state before its first message; ``release``
frees it.

A :class:`ContextPool` keeps the most recently used context-takeover
streams whole (an intrusive list: no dict work per message), and a
:class:`DeflateCodec` is one connection's negotiated extension with the
whole per-message path (threshold, shared no-takeover streams, the pool,
zlib) in C; ``permessage_deflate.PerMessageDeflate`` subclasses it.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.string cimport memset

from fastsock.exceptions import InvalidUTF8Error, MessageTooBigError, ProtocolError
from fastsock.frame import Utf8Validator

cdef extern from "Python.h":
    PyObject *_new_bytes "PyBytes_FromStringAndSize"(const char *, Py_ssize_t) except NULL
    char *_bytes_data "PyBytes_AS_STRING"(PyObject *) noexcept
    int _PyBytes_Resize(PyObject **, Py_ssize_t) except -1
    object PyMemoryView_FromMemory(char *mem, Py_ssize_t size, int flags)
    int PyBUF_READ

cdef extern from "zlib.h":
    int Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_NO_FLUSH, Z_SYNC_FLUSH, Z_DEFLATED, Z_DEFAULT_STRATEGY
    int deflateInit2(z_stream *strm, int level, int method, int windowBits, int memLevel,
                     int strategy)
    int deflate(z_stream *strm, int flush)
    int deflateReset(z_stream *strm)
    int deflateGetDictionary(z_stream *strm, unsigned char *dictionary, unsigned int *dictLength)
    int deflateSetDictionary(z_stream *strm, const unsigned char *dictionary, unsigned int dictLength)
    int deflateEnd(z_stream *strm)
    unsigned long deflateBound(z_stream *strm, unsigned long sourceLen)
    int inflateInit2(z_stream *strm, int windowBits)
    int inflate(z_stream *strm, int flush)
    int inflateReset(z_stream *strm)
    int inflateGetDictionary(z_stream *strm, unsigned char *dictionary, unsigned int *dictLength)
    int inflateSetDictionary(z_stream *strm, const unsigned char *dictionary, unsigned int dictLength)
    int inflateEnd(z_stream *strm)
    const char *zlibVersion()

ZLIB_VERSION = zlibVersion().decode()
IMPLEMENTATION = "cython"

# The end of a sync-flushed DEFLATE stream, which RFC 7692 strips on the wire.
cdef const unsigned char *_TAIL = b"\x00\x00\xff\xff"
# A message is at most this big (zlib counts in unsigned int).
cdef Py_ssize_t INPUT_MAX = (1 << 31) - 1
# The output buffer of an inflate starts at a few times the input (a small
# message inflates in one zlib call), at least FIRST_OUT, and grows by
# doubling, each step at most STEP_MAX: the bound on what a message may
# hold beyond the limit.
cdef enum:
    _FIRST_OUT = 1024
    _STEP_MAX = 1 << 20
FIRST_OUT = _FIRST_OUT
STEP_MAX = _STEP_MAX

# deflate/inflate's GetDictionary and SetDictionary, for the helpers the two
# classes share.
ctypedef int (*_get_dictionary_t)(z_stream *, unsigned char *, unsigned int *) noexcept
ctypedef int (*_set_dictionary_t)(z_stream *, const unsigned char *, unsigned int) noexcept


cdef inline bytes _window_of(z_stream *strm, _get_dictionary_t get_dictionary):
    """The stream's last window (at most 1 << wbits bytes), or None when empty."""
    cdef unsigned int n = 0
    get_dictionary(strm, NULL, &n)
    history = PyBytes_FromStringAndSize(NULL, n)
    get_dictionary(strm, <unsigned char *>PyBytes_AS_STRING(history), &n)
    return history if n else None


cdef inline void _restore_window(z_stream *strm, bytes history,
                                 _set_dictionary_t set_dictionary) noexcept:
    """Start a fresh stream from the window ``compact`` kept."""
    set_dictionary(strm, <const unsigned char *>PyBytes_AS_STRING(history),
                   <unsigned int>PyBytes_GET_SIZE(history))




cdef class _Stream:
    """What a Compressor and a Decompressor share: zlib's state, allocated at
    the first message, the history ``compact`` keeps in its place, and the
    links of the ContextPool the stream is in."""

    @property
    def allocated(self):
        """True while zlib's state is allocated (from the first message
        until ``release``)."""
        return self._ready

    @property
    def held(self):
        """Bytes of history kept by ``compact`` (0 when none)."""
        return len(self._history) if self._history is not None else 0

    def compact(self):
        """Keep only the history (the last window of what went through, at
        most 1 << wbits bytes) and free zlib's state; the next message
        rebuilds it from that history, so the context carries on."""
        self._compact()

    cdef int _compact(self) except -1:
        return 0


cdef class Compressor(_Stream):
    """Compresses one whole message at a time (see the module docstring)."""

    def __init__(self, int wbits=15, int mem_level=8, int level=6,
                 bint no_context_takeover=False):
        if not 9 <= wbits <= 15:
            raise ValueError("wbits must be 9..15 (zlib cannot compress raw DEFLATE with 8)")
        if not 1 <= mem_level <= 9:
            raise ValueError("mem_level must be 1..9")
        if not -1 <= level <= 9:
            raise ValueError("level must be -1..9")
        self.wbits = wbits
        self.mem_level = mem_level
        self.level = level
        self.no_context_takeover = no_context_takeover

    def __dealloc__(self):
        if self._ready:
            deflateEnd(&self._strm)

    def release(self):
        """Free zlib's state; the next message allocates it again (with
        context takeover that starts a new context: only at the end)."""
        self._history = None
        if self._ready:
            deflateEnd(&self._strm)
            self._ready = False

    cdef int _compact(self) except -1:
        if not self._ready or self.no_context_takeover:
            return 0
        self._history = _window_of(&self._strm, deflateGetDictionary)
        deflateEnd(&self._strm)
        self._ready = False
        return 0

    def compress(self, data, bint final=True):
        """One message's payload as sent on the wire (tail stripped). With
        ``final=False``, one fragment of a message sent in pieces: flushed
        but not ended (the tail stays, the context is not reset); the
        message's last fragment is compressed with ``final=True``."""
        return self._deflate(data, final)

    cdef bytes _deflate(self, object data, bint final):
        cdef Py_buffer view
        cdef bint have_view = False
        cdef const unsigned char *src
        cdef Py_ssize_t srclen
        cdef PyObject *out = NULL
        cdef Py_ssize_t cap, produced = 0
        cdef int rc
        if not self._ready:
            memset(&self._strm, 0, sizeof(z_stream))
            if deflateInit2(&self._strm, self.level, Z_DEFLATED, -self.wbits,
                            self.mem_level, Z_DEFAULT_STRATEGY) != Z_OK:
                raise MemoryError("zlib deflateInit2 failed")
            self._ready = True
            if self._history is not None:
                history = self._history
                self._history = None
                _restore_window(&self._strm, history, deflateSetDictionary)
        if type(data) is bytes:             # the common case: no buffer protocol
            src = <const unsigned char *>PyBytes_AS_STRING(data)
            srclen = PyBytes_GET_SIZE(data)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            have_view = True
            src = <const unsigned char *>view.buf
            srclen = view.len
        try:
            if srclen > INPUT_MAX:
                raise ValueError("cannot compress a message of 2 GiB or more")
            # deflateBound plus room for the sync-flush marker; grown if short.
            cap = <Py_ssize_t>deflateBound(&self._strm, <unsigned long>srclen) + 16
            out = _new_bytes(NULL, cap)
            self._strm.next_in = src
            self._strm.avail_in = <unsigned int>srclen
            if srclen == 0:
                # zlib skips a sync flush right after another unless a call
                # in between (as the zlib module's compress() makes): then an
                # empty message still gets its empty block, as in the twin.
                self._strm.next_out = <unsigned char *>_bytes_data(out)
                self._strm.avail_out = <unsigned int>cap
                deflate(&self._strm, Z_NO_FLUSH)
            while True:
                self._strm.next_out = <unsigned char *>_bytes_data(out) + produced
                self._strm.avail_out = <unsigned int>(cap - produced)
                rc = deflate(&self._strm, Z_SYNC_FLUSH)
                produced = cap - self._strm.avail_out
                if rc != Z_OK and rc != Z_BUF_ERROR:
                    self.release()
                    raise RuntimeError(f"zlib deflate failed ({rc})")
                if self._strm.avail_out != 0:
                    break
                cap *= 2
                _PyBytes_Resize(&out, cap)
            if final and self.no_context_takeover:
                deflateReset(&self._strm)
            # A sync flush ends with the empty stored block 00 00 ff ff; a
            # flush with nothing new (an empty message after another) may
            # emit nothing at all, which the receiver's tail inflates to b"".
            if final and produced >= 4:
                produced -= 4
            _PyBytes_Resize(&out, produced)
            result = <bytes>out
        finally:
            if have_view:
                PyBuffer_Release(&view)
            Py_XDECREF(out)
        return result


cdef inline Py_ssize_t _limit_of(object max_size) except? -1:
    """The output size at which an inflate stops: max_size + 1 (None: 2 GiB)."""
    if max_size is None:
        return INPUT_MAX
    return min(<Py_ssize_t>max_size, INPUT_MAX - 1) + 1


cdef class Decompressor(_Stream):
    """Inflates one whole message at a time (see the module docstring)."""

    def __init__(self, int wbits=15, bint no_context_takeover=False):
        if not 8 <= wbits <= 15:
            raise ValueError("wbits must be 8..15")
        self.wbits = wbits
        self.no_context_takeover = no_context_takeover

    def __dealloc__(self):
        if self._ready:
            inflateEnd(&self._strm)

    def release(self):
        """Free zlib's state (see :meth:`Compressor.release`)."""
        self._history = None
        if self._ready:
            inflateEnd(&self._strm)
            self._ready = False

    cdef int _compact(self) except -1:
        if not self._ready or self.no_context_takeover:
            return 0
        self._history = _window_of(&self._strm, inflateGetDictionary)
        inflateEnd(&self._strm)
        self._ready = False
        return 0

    def decompress(self, data, max_size=None, bint text=False):
        """The message inflated from ``data`` (a whole message's payload).

        Raises MessageTooBigError (1009) as soon as the output passes
        ``max_size`` (None: no limit), InvalidUTF8Error (1007) for ``text``
        whose bytes cannot be UTF-8 (checked while inflating; the caller's
        decode checks the end), ProtocolError (1007) for data that is not
        DEFLATE. After an error the context is gone: the caller closes.
        """
        return self._inflate(data, _limit_of(max_size), text)

    cdef bytes _inflate(self, object data, Py_ssize_t limit, bint text):
        cdef Py_buffer view
        cdef bint have_view = False
        cdef PyObject *out = NULL
        cdef Py_ssize_t cap, step, produced = 0, checked = 0
        cdef int rc, seg
        cdef bint ended = False
        cdef const unsigned char *src
        cdef const unsigned char *buf
        cdef Py_ssize_t srclen, buflen
        if not self._ready:
            memset(&self._strm, 0, sizeof(z_stream))
            if inflateInit2(&self._strm, -self.wbits) != Z_OK:
                raise MemoryError("zlib inflateInit2 failed")
            self._ready = True
            if self._history is not None:
                history = self._history
                self._history = None
                _restore_window(&self._strm, history, inflateSetDictionary)
        elif self.no_context_takeover:
            inflateReset(&self._strm)
        validator = None
        if type(data) is bytes:             # the common case: no buffer protocol
            buf = <const unsigned char *>PyBytes_AS_STRING(data)
            buflen = PyBytes_GET_SIZE(data)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            have_view = True
            buf = <const unsigned char *>view.buf
            buflen = view.len
        try:
            if buflen > INPUT_MAX:
                raise MessageTooBigError("compressed message of 2 GiB or more")
            cap = min(limit, max(<Py_ssize_t>_FIRST_OUT, 4 * buflen + 64))
            out = _new_bytes(NULL, cap)
            for seg in range(2):
                if seg == 1 and ended:
                    break                       # no tail after a final block
                if seg == 0:
                    src = buf
                    srclen = buflen
                else:
                    src = _TAIL
                    srclen = 4
                self._strm.next_in = src
                self._strm.avail_in = <unsigned int>srclen
                while True:
                    self._strm.next_out = <unsigned char *>_bytes_data(out) + produced
                    self._strm.avail_out = <unsigned int>(cap - produced)
                    rc = inflate(&self._strm, Z_SYNC_FLUSH)
                    produced = cap - self._strm.avail_out
                    if rc == Z_STREAM_END:
                        # The peer ended the stream (a final block): the
                        # tail is not appended to it, and what follows
                        # starts a new stream, without the old window.
                        inflateReset(&self._strm)
                        if seg == 1 or self._strm.avail_in == 0:
                            ended = True
                            break
                        continue
                    if rc != Z_OK and rc != Z_BUF_ERROR:
                        inflateReset(&self._strm)
                        raise ProtocolError("invalid compressed data (DEFLATE)", 1007)
                    if self._strm.avail_out == 0:
                        if cap >= limit:
                            inflateReset(&self._strm)
                            raise MessageTooBigError(
                                f"message inflates to more than {limit - 1} bytes; "
                                f"the limit is {limit - 1}")
                        if text:
                            if validator is None:
                                validator = Utf8Validator()
                            if not validator.feed(PyMemoryView_FromMemory(
                                    _bytes_data(out) + checked, produced - checked, PyBUF_READ)):
                                inflateReset(&self._strm)
                                raise InvalidUTF8Error("invalid UTF-8 in text message", 1007)
                            checked = produced
                        step = min(cap, <Py_ssize_t>_STEP_MAX)
                        cap = min(limit, cap + step)
                        _PyBytes_Resize(&out, cap)
                        continue
                    if self._strm.avail_in == 0:
                        break
            if produced != cap:
                _PyBytes_Resize(&out, produced)
            result = <bytes>out
        finally:
            if have_view:
                PyBuffer_Release(&view)
            Py_XDECREF(out)
        return result


cdef class ContextPool:
    """Bounds how many context-takeover zlib states hold memory at once.

    Every connection with context takeover needs its history (the last
    window of what went through) to carry on, but not zlib's working state
    (hash tables, buffers: most of its memory, see docs/compression.md).
    The ``limit`` most recently used states stay whole; when one more is
    used, the least recently used is compacted to its history
    (``Compressor.compact``: at most ``1 << wbits`` bytes) and rebuilt from
    it when its connection sends or receives again. One pool serves the
    compressors and one the decompressors of the process; ``limit=None``
    never compacts. The streams are linked through their own fields, most
    recently used first: using one is a few pointer moves.
    """

    def __init__(self, limit):
        self.limit = limit

    @property
    def limit(self):
        return None if self._limit < 0 else self._limit

    @limit.setter
    def limit(self, value):
        self._limit = -1 if value is None else <Py_ssize_t>value

    def __len__(self):
        return self._n

    def use(self, _Stream z not None):
        self._use(z)

    def forget(self, z):
        if isinstance(z, _Stream) and (<_Stream>z)._pool is self:
            self._unlink(<_Stream>z)

    cdef void _unlink(self, _Stream z) noexcept:
        cdef _Stream p = z._prev, n = z._next
        if p is None:
            self._head = n
        else:
            p._next = n
        if n is None:
            self._tail = p
        else:
            n._prev = p
        z._prev = None
        z._next = None
        z._pool = None
        self._n -= 1

    cdef int _use(self, _Stream z) except -1:
        cdef _Stream t
        if z._pool is self:
            if z is self._head:
                return 0
            self._unlink(z)
            self._push(z)
            return 0
        if z._pool is not None:
            z._pool._unlink(z)
        self._push(z)
        while self._limit >= 0 and self._n > self._limit:
            t = self._tail
            self._unlink(t)
            t._compact()
        return 0

    cdef void _push(self, _Stream z) noexcept:
        z._next = self._head
        if self._head is not None:
            self._head._prev = z
        else:
            self._tail = z
        self._head = z
        z._pool = self
        self._n += 1


# Measured (docs/compression.md): rebuilding a state from its history costs
# a few microseconds, paid only by a connection that was idle while this
# many others were busy.
DEFAULT_ACTIVE_CONTEXTS = 256
cdef ContextPool _cpool = ContextPool(DEFAULT_ACTIVE_CONTEXTS)
cdef ContextPool _dpool = ContextPool(DEFAULT_ACTIVE_CONTEXTS)
compressor_pool = _cpool
decompressor_pool = _dpool


def set_active_contexts(limit):
    """How many context-takeover compressors (and, separately,
    decompressors) keep zlib's whole state; None: all of them."""
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1 or None")
    _cpool.limit = limit
    _dpool.limit = limit


# Without context takeover a stream keeps nothing between messages, so every
# such connection of the process shares one compressor per setting (and
# every peer that resets shares one decompressor): no zlib state per
# connection, and a broadcast compresses once for all of them.
cdef dict _shared_compressors = {}
cdef Decompressor _shared_decompressor = None


cdef Compressor _shared_compressor(int wbits, int mem_level, int level):
    key = (wbits, mem_level, level)
    c = _shared_compressors.get(key)
    if c is None:
        c = _shared_compressors[key] = Compressor(wbits, mem_level, level, True)
    return <Compressor>c


cdef Decompressor _shared_inflater():
    global _shared_decompressor
    if _shared_decompressor is None:
        # A 15-bit window inflates what any smaller one compressed.
        _shared_decompressor = Decompressor(15, True)
    return _shared_decompressor


cdef enum:
    _RSV1 = 0x40
    _OP_TEXT = 1


cdef class DeflateCodec:
    """One connection's negotiated permessage-deflate: the per-message path.

    ``local_*`` is about what this side sends (its compressor), ``remote_*``
    about what it receives. zlib's state is allocated at the first
    compressed message in each direction; without context takeover on a
    side, that side uses the process's shared state instead. The
    Extension interface (``decode``, ``encode``, ``release``) is
    ``permessage_deflate.PerMessageDeflate``, a subclass.
    """

    def __init__(self, bint local_no_context_takeover, bint remote_no_context_takeover,
                 int local_max_window_bits, int remote_max_window_bits,
                 int mem_level, int level, Py_ssize_t threshold):
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.mem_level = mem_level
        self.level = level
        self.threshold = threshold

    cdef Compressor _get_compressor(self):
        c = self._compressor
        if c is None:
            if self.local_no_context_takeover:
                c = _shared_compressor(self.local_max_window_bits, self.mem_level, self.level)
            else:
                c = Compressor(self.local_max_window_bits, self.mem_level, self.level, False)
            self._compressor = c
        return c

    cdef Decompressor _get_decompressor(self):
        d = self._decompressor
        if d is None:
            if self.remote_no_context_takeover:
                d = _shared_inflater()
            else:
                d = Decompressor(self.remote_max_window_bits, False)
            self._decompressor = d
        return d

    @property
    def compressor(self):
        """What compresses this side's messages (allocated on first use)."""
        return self._get_compressor()

    @property
    def decompressor(self):
        return self._get_decompressor()

    @property
    def broadcast_key(self):
        """Without local context takeover every message is compressed from
        an empty window by the process's shared compressor: a message gives
        the same bytes on every connection with these settings, so
        ``broadcast`` compresses it once per key. None: per connection."""
        if not self.local_no_context_takeover:
            return None
        return (self.local_max_window_bits, self.mem_level, self.level, self.threshold)

    @property
    def memory_held(self):
        """True if this connection holds zlib state of its own (not just
        compacted history)."""
        for z in (self._compressor, self._decompressor):
            if z is not None and not (<_Stream>z).no_context_takeover and (<_Stream>z)._ready:
                return True
        return False

    def decode(self, int rsv, int opcode, payload, max_size=None):
        return self.decode_c(rsv, opcode, payload, _limit_of(max_size))

    def encode(self, int opcode, payload):
        return self.encode_c(opcode, payload)

    cdef object decode_c(self, int rsv, int opcode, object payload, Py_ssize_t limit):
        """``decode`` for a compiled caller; ``limit`` is max_size + 1."""
        cdef Decompressor d
        if not rsv & _RSV1:
            return payload
        d = self._decompressor
        if d is None:
            d = self._get_decompressor()
        if not self.remote_no_context_takeover:
            _dpool._use(d)
        return d._inflate(payload, limit, opcode == _OP_TEXT)

    cdef tuple encode_c(self, int opcode, object payload):
        """``encode`` for a compiled caller: (rsv, payload)."""
        cdef Compressor c
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload) if type(payload) is bytes else len(payload)
        if n < self.threshold:
            return (0, payload)
        c = self._compressor
        if c is None:
            c = self._get_compressor()
        if not self.local_no_context_takeover:
            _cpool._use(c)
        return (_RSV1, c._deflate(payload, True))

    def encode_fragment(self, int opcode, payload, bint first, bint fin):
        """One fragment of a message sent in pieces (the coroutine API's
        ``send(iterable)``): compressed as it comes, RSV1 on the first
        frame only, the tail stripped from the last. The threshold does not
        apply (the size is not known in advance). Without context takeover
        the process's shared compressor cannot be held across fragments
        (other connections use it in between), so such a message gets a
        compressor of its own, dropped at its end."""
        cdef Compressor c
        if first:
            self._fragmenter = None
            if self.local_no_context_takeover and not fin:
                self._fragmenter = Compressor(self.local_max_window_bits, self.mem_level,
                                              self.level, True)
        c = self._fragmenter
        if c is None:
            c = self._get_compressor()
            if not self.local_no_context_takeover:
                _cpool._use(c)
        out = c._deflate(payload, fin)
        if fin:
            self._fragmenter = None
        return (_RSV1 if first else 0), out

    def release(self):
        cdef Compressor c = self._compressor
        cdef Decompressor d = self._decompressor
        self._fragmenter = None
        if c is not None and not c.no_context_takeover:
            if c._pool is not None:
                c._pool._unlink(c)
            c.release()
        if d is not None and not d.no_context_takeover:
            if d._pool is not None:
                d._pool._unlink(d)
            d.release()
        self._compressor = None
        self._decompressor = None
