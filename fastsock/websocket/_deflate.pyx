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


cdef class Compressor:
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

    @property
    def allocated(self):
        """True while zlib's state is allocated (from the first message
        until ``release``)."""
        return self._ready

    def release(self):
        """Free zlib's state; the next message allocates it again (with
        context takeover that starts a new context: only at the end)."""
        self._history = None
        if self._ready:
            deflateEnd(&self._strm)
            self._ready = False

    def compact(self):
        """Keep only the history (the last window of what was compressed,
        at most 1 << wbits bytes) and free zlib's state; the next message
        rebuilds it from that history, so the context carries on."""
        if not self._ready or self.no_context_takeover:
            return
        self._history = _window_of(&self._strm, deflateGetDictionary)
        deflateEnd(&self._strm)
        self._ready = False

    @property
    def held(self):
        """Bytes of history kept by ``compact`` (0 when none)."""
        return len(self._history) if self._history is not None else 0

    def compress(self, data, bint final=True):
        """One message's payload as sent on the wire (tail stripped). With
        ``final=False``, one fragment of a message sent in pieces: flushed
        but not ended (the tail stays, the context is not reset); the
        message's last fragment is compressed with ``final=True``."""
        cdef Py_buffer view
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
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if view.len > INPUT_MAX:
                raise ValueError("cannot compress a message of 2 GiB or more")
            # deflateBound plus room for the sync-flush marker; grown if short.
            cap = <Py_ssize_t>deflateBound(&self._strm, <unsigned long>view.len) + 16
            out = _new_bytes(NULL, cap)
            self._strm.next_in = <const unsigned char *>view.buf
            self._strm.avail_in = <unsigned int>view.len
            if view.len == 0:
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
            PyBuffer_Release(&view)
            Py_XDECREF(out)
        return result


cdef class Decompressor:
    """Inflates one whole message at a time (see the module docstring)."""

    def __init__(self, int wbits=15, bint no_context_takeover=False):
        if not 8 <= wbits <= 15:
            raise ValueError("wbits must be 8..15")
        self.wbits = wbits
        self.no_context_takeover = no_context_takeover

    def __dealloc__(self):
        if self._ready:
            inflateEnd(&self._strm)

    @property
    def allocated(self):
        """True while zlib's state is allocated."""
        return self._ready

    def release(self):
        """Free zlib's state (see :meth:`Compressor.release`)."""
        self._history = None
        if self._ready:
            inflateEnd(&self._strm)
            self._ready = False

    def compact(self):
        """Keep only the history (the window) and free zlib's state (see
        :meth:`Compressor.compact`)."""
        if not self._ready or self.no_context_takeover:
            return
        self._history = _window_of(&self._strm, inflateGetDictionary)
        inflateEnd(&self._strm)
        self._ready = False

    @property
    def held(self):
        """Bytes of history kept by ``compact`` (0 when none)."""
        return len(self._history) if self._history is not None else 0

    def decompress(self, data, max_size=None, bint text=False):
        """The message inflated from ``data`` (a whole message's payload).

        Raises MessageTooBigError (1009) as soon as the output passes
        ``max_size`` (None: no limit), InvalidUTF8Error (1007) for ``text``
        whose bytes cannot be UTF-8 (checked while inflating; the caller's
        decode checks the end), ProtocolError (1007) for data that is not
        DEFLATE. After an error the context is gone: the caller closes.
        """
        cdef Py_buffer view
        cdef PyObject *out = NULL
        cdef Py_ssize_t limit, cap, step, produced = 0, checked = 0
        cdef int rc, seg
        cdef bint ended = False
        cdef const unsigned char *src
        cdef Py_ssize_t srclen
        if max_size is None:
            limit = INPUT_MAX
        else:
            limit = min(<Py_ssize_t>max_size, INPUT_MAX - 1) + 1
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
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if view.len > INPUT_MAX:
                raise MessageTooBigError("compressed message of 2 GiB or more")
            cap = min(limit, max(<Py_ssize_t>_FIRST_OUT, 4 * view.len + 64))
            out = _new_bytes(NULL, cap)
            for seg in range(2):
                if seg == 1 and ended:
                    break                       # no tail after a final block
                if seg == 0:
                    src = <const unsigned char *>view.buf
                    srclen = view.len
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
            PyBuffer_Release(&view)
            Py_XDECREF(out)
        return result
