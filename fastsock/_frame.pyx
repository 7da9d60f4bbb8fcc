# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, embedsignature=True
"""The RFC 6455 frame codec in Cython (the hot path of fastsock).

Same API, behaviour and errors as the pure-Python twin fastsock._frame_py;
docs/codec.md describes both. The parser reads straight from the caller's
chunk: payload bytes are unmasked (and UTF-8 checked) while they are copied
into the frame's own bytes object, and only an incomplete header (< 14
bytes) is carried between feeds.
"""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

import os

from fastsock.exceptions import FrameError, InvalidUTF8Error, MessageTooBigError

from cpython.unicode cimport PyUnicode_DecodeUTF8

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void *PyUnicode_DATA(object)
    PyObject *_new_bytes "PyBytes_FromStringAndSize"(const char *, Py_ssize_t) except NULL
    char *_bytes_data "PyBytes_AS_STRING"(PyObject *) noexcept
    int _PyBytes_Resize(PyObject **, Py_ssize_t) except -1

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(__GNUC__) || defined(__clang__)
    #define FS_RESTRICT __restrict__
    #else
    #define FS_RESTRICT
    #endif

    /* Masking: dst[i] = src[i] ^ key[(phase + i) % 4], where dst is either
       src itself (in place) or a separate buffer. Measured on this EPYC
       (docs/bench-codec.md), in place on 64 KiB-1 MiB: AVX2 with ordinary
       stores 87-97 GB/s, SSE2 54-57 GB/s, the plain 64-bit loop 28 GB/s with
       CPython's build flags; an AVX-512 variant was no faster than AVX2. So:
       AVX2 when the CPU has it (checked once at import), else SSE2 on x86-64,
       else the 64-bit loop. */
    /* Every kernel returns the OR of the words it wrote, which costs one
       instruction per vector: a caller unmasking text learns whether it was
       all ASCII (no byte with bit 7) without a second pass. */
    typedef uint64_t (*fs_mask_fn)(unsigned char *, const unsigned char *, size_t, uint64_t);

    #define FS_HIGH_BITS 0x8080808080808080ULL

    static uint64_t fs_mask_u64_inplace(unsigned char *p, size_t n, uint64_t k)
    {
        uint64_t w, acc = 0;
        size_t i;
        for (i = 0; i + 8 <= n; i += 8) {
            memcpy(&w, p + i, 8);
            w ^= k;
            acc |= w;
            memcpy(p + i, &w, 8);
        }
        return acc;
    }

    static uint64_t fs_mask_u64_copy(unsigned char *FS_RESTRICT dst,
                                     const unsigned char *FS_RESTRICT src, size_t n, uint64_t k)
    {
        uint64_t w, acc = 0;
        size_t i;
        for (i = 0; i + 8 <= n; i += 8) {
            memcpy(&w, src + i, 8);
            w ^= k;
            acc |= w;
            memcpy(dst + i, &w, 8);
        }
        return acc;
    }

    /* Handles whole 8-byte words only; the caller does the tail. */
    static uint64_t fs_mask_portable(unsigned char *dst, const unsigned char *src, size_t n, uint64_t k)
    {
        if (dst == src) return fs_mask_u64_inplace(dst, n, k);
        return fs_mask_u64_copy(dst, src, n, k);
    }

    #if defined(__x86_64__) || defined(_M_X64)
    /* SSE2 is part of x86-64 itself, so this is the baseline there. The plain
       64-bit loop above only does ~28 GB/s when built with CPython's flags;
       this does what the compiler should have. */
    #include <emmintrin.h>
    static uint64_t fs_mask_sse2(unsigned char *dst, const unsigned char *src, size_t n, uint64_t k)
    {
        const __m128i m = _mm_set1_epi64x((long long)k);
        __m128i acc = _mm_setzero_si128();
        uint64_t lanes[2];
        size_t i = 0;
        for (; i + 64 <= n; i += 64) {
            __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i)), m);
            __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i + 16)), m);
            __m128i c = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i + 32)), m);
            __m128i d = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i + 48)), m);
            _mm_storeu_si128((__m128i *)(dst + i), a);
            _mm_storeu_si128((__m128i *)(dst + i + 16), b);
            _mm_storeu_si128((__m128i *)(dst + i + 32), c);
            _mm_storeu_si128((__m128i *)(dst + i + 48), d);
            acc = _mm_or_si128(acc, _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)));
        }
        for (; i + 16 <= n; i += 16) {
            __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i)), m);
            _mm_storeu_si128((__m128i *)(dst + i), a);
            acc = _mm_or_si128(acc, a);
        }
        _mm_storeu_si128((__m128i *)lanes, acc);
        return lanes[0] | lanes[1] | fs_mask_portable(dst + i, src + i, n - i, k);
    }
    #define FS_MASK_BASE fs_mask_sse2
    #define FS_MASK_BASE_NAME "sse2"
    #else
    #define FS_MASK_BASE fs_mask_portable
    #define FS_MASK_BASE_NAME "u64"
    #endif

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    __attribute__((target("avx2")))
    static uint64_t fs_mask_avx2(unsigned char *dst, const unsigned char *src, size_t n, uint64_t k)
    {
        const __m256i m = _mm256_set1_epi64x((long long)k);
        __m256i acc = _mm256_setzero_si256();
        uint64_t lanes[4];
        size_t i = 0;
        for (; i + 128 <= n; i += 128) {
            __m256i a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i)), m);
            __m256i b = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i + 32)), m);
            __m256i c = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i + 64)), m);
            __m256i d = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i + 96)), m);
            _mm256_storeu_si256((__m256i *)(dst + i), a);
            _mm256_storeu_si256((__m256i *)(dst + i + 32), b);
            _mm256_storeu_si256((__m256i *)(dst + i + 64), c);
            _mm256_storeu_si256((__m256i *)(dst + i + 96), d);
            acc = _mm256_or_si256(acc, _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d)));
        }
        for (; i + 32 <= n; i += 32) {
            __m256i a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i)), m);
            _mm256_storeu_si256((__m256i *)(dst + i), a);
            acc = _mm256_or_si256(acc, a);
        }
        _mm256_storeu_si256((__m256i *)lanes, acc);
        return lanes[0] | lanes[1] | lanes[2] | lanes[3]
               | fs_mask_portable(dst + i, src + i, n - i, k);
    }
    #endif

    static fs_mask_fn fs_mask_words = FS_MASK_BASE;
    static const char *fs_mask_kernel = FS_MASK_BASE_NAME;

    static void fs_mask_init(int baseline_only)
    {
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        if (!baseline_only && __builtin_cpu_supports("avx2")) {
            fs_mask_words = fs_mask_avx2;
            fs_mask_kernel = "avx2";
        }
    #endif
    }

    static inline uint64_t fs_rotated_key(const unsigned char *key, unsigned phase)
    {
        unsigned char rot[8];
        uint64_t k;
        int j;
        for (j = 0; j < 8; j++) rot[j] = key[(phase + j) & 3];
        memcpy(&k, rot, 8);
        return k;
    }

    /* Out of place (apply_mask; the parser unmasking into a fresh payload).
       Measured on the Xeon (Sapphire Rapids) this project now runs on, into
       a fresh bytes object, 64 KiB / 1 MiB: 16-byte SSE2 stores 1.40 / 37 us,
       the same as websockets' loop (and memcpy at 64 KiB), while the AVX2
       kernel with 32-byte-aligned stores took 1.74 / 42 us; in place the two
       tie (docs/codec.md). Below FS_MASK_OUT_MIN, where source and
       destination together fit the 48 KiB L1d, the AVX2 kernel is the
       faster one (16 KiB: 296 against 363 ns), so it keeps those. Bytes
       objects are 16-byte aligned, so this needs no alignment head. Same
       contract as fs_mask_copy. */
    #define FS_MASK_OUT_MIN 24576
    static int fs_mask_out(unsigned char *FS_RESTRICT dst, const unsigned char *FS_RESTRICT src,
                           size_t n, uint64_t k)
    {
        uint64_t acc = 0;
        size_t i = 0;
        const unsigned char *rot = (const unsigned char *)&k;
    #if defined(__x86_64__) || defined(_M_X64)
        const __m128i m = _mm_set1_epi64x((long long)k);
        __m128i vacc = _mm_setzero_si128();
        uint64_t lanes[2];
        for (; i + 64 <= n; i += 64) {
            __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i)), m);
            __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i + 16)), m);
            __m128i c = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i + 32)), m);
            __m128i d = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + i + 48)), m);
            _mm_storeu_si128((__m128i *)(dst + i), a);
            _mm_storeu_si128((__m128i *)(dst + i + 16), b);
            _mm_storeu_si128((__m128i *)(dst + i + 32), c);
            _mm_storeu_si128((__m128i *)(dst + i + 48), d);
            /* four vectors per OR into the accumulator: one OR per 16 bytes
               would make its 1-cycle chain the limit (16 B per cycle) */
            vacc = _mm_or_si128(vacc, _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)));
        }
        _mm_storeu_si128((__m128i *)lanes, vacc);
        acc = lanes[0] | lanes[1];
    #endif
        acc |= fs_mask_u64_copy(dst + i, src + i, (n - i) & ~(size_t)7, k);
        for (i += (n - i) & ~(size_t)7; i < n; i++) {
            dst[i] = src[i] ^ rot[i & 3];
            acc |= dst[i];
        }
        return (acc & FS_HIGH_BITS) == 0;
    }

    /* Unmask src into dst; returns 1 if every byte written is ASCII (< 0x80). */
    static inline int fs_mask_copy(unsigned char *dst, const unsigned char *src,
                                   size_t n, const unsigned char *key, unsigned phase)
    {
        uint64_t k = fs_rotated_key(key, phase), acc = 0;
        size_t i, words;
        if (dst != src && n >= FS_MASK_OUT_MIN) return fs_mask_out(dst, src, n, k);
        if (n >= 256) {
            /* Align the stores to 32 bytes first: with ob_sval at offset 32 of
               a malloc'd bytes object, half of all unaligned 32-byte stores
               would straddle a cache line. The head goes a word at a time
               (its whole words keep the key's phase), then byte by byte. */
            size_t head = (32 - ((uintptr_t)dst & 31)) & 31;
            size_t head_words = head & ~(size_t)7;
            const unsigned char *rot = (const unsigned char *)&k;
            acc = fs_mask_portable(dst, src, head_words, k);
            for (i = head_words; i < head; i++) {
                dst[i] = src[i] ^ rot[i & 3];
                acc |= dst[i];
            }
            phase = (phase + (unsigned)head) & 3;
            k = fs_rotated_key(key, phase);
            dst += head;
            src += head;
            n -= head;
        }
        words = n & ~(size_t)7;
        if (words >= 256) {
            acc |= fs_mask_words(dst, src, words, k);
        } else if (words) {
            acc |= FS_MASK_BASE(dst, src, words, k);
        }
        {
            const unsigned char *rot = (const unsigned char *)&k;
            for (i = words; i < n; i++) {
                dst[i] = src[i] ^ rot[i & 3];
                acc |= dst[i];
            }
        }
        return (acc & FS_HIGH_BITS) == 0;
    }

    /* Copy for unmasked payloads. glibc's memcpy measured 31 GB/s for 64 KiB
       into a fresh bytes object here against 50 GB/s for the AVX2 kernel
       with its aligned stores, so large copies reuse the kernel with a zero
       key (which is also how unmasked text learns it is ASCII: fs_mask_copy). */
    static const unsigned char fs_zero_key[4] = {0, 0, 0, 0};

    static inline void fs_copy(unsigned char *dst, const unsigned char *src, size_t n)
    {
        if (n >= 4096) fs_mask_copy(dst, src, n, fs_zero_key, 0);
        else memcpy(dst, src, n);
    }

    /* UTF-8 as a DFA over the well-formed sequences of Unicode §3.9, Table 3-7.
       States: 0 between characters; 1, 2, 3 = that many continuation bytes
       (80..BF) still needed; 4 after E0 (next A0..BF); 5 after ED (next
       80..9F, no surrogates); 6 after F0 (next 90..BF, no overlongs); 7 after
       F4 (next 80..8F, nothing above U+10FFFF); 8 reject (sticky). */
    #define FS_UTF8_REJECT 8
    static uint8_t fs_utf8_next[9][256];

    static void fs_utf8_init(void)
    {
        int s, b;
        for (s = 0; s < 9; s++)
            for (b = 0; b < 256; b++) fs_utf8_next[s][b] = FS_UTF8_REJECT;
        for (b = 0x00; b <= 0x7F; b++) fs_utf8_next[0][b] = 0;
        for (b = 0xC2; b <= 0xDF; b++) fs_utf8_next[0][b] = 1;
        for (b = 0xE1; b <= 0xEF; b++) fs_utf8_next[0][b] = 2;
        for (b = 0xF1; b <= 0xF3; b++) fs_utf8_next[0][b] = 3;
        fs_utf8_next[0][0xE0] = 4;
        fs_utf8_next[0][0xED] = 5;
        fs_utf8_next[0][0xF0] = 6;
        fs_utf8_next[0][0xF4] = 7;
        for (b = 0x80; b <= 0xBF; b++) {
            fs_utf8_next[1][b] = 0;
            fs_utf8_next[2][b] = 1;
            fs_utf8_next[3][b] = 2;
        }
        for (b = 0xA0; b <= 0xBF; b++) fs_utf8_next[4][b] = 1;
        for (b = 0x80; b <= 0x9F; b++) fs_utf8_next[5][b] = 1;
        for (b = 0x90; b <= 0xBF; b++) fs_utf8_next[6][b] = 2;
        for (b = 0x80; b <= 0x8F; b++) fs_utf8_next[7][b] = 2;
    }

    /* Validate p[0:n] starting in DFA `state`; return the new state (REJECT
       sticks). ASCII runs are skipped a word at a time; a multi-byte sequence
       that lies wholly inside the chunk is checked in one go against Table
       3-7; only sequences cut by the chunk's end go through the DFA byte by
       byte. Either way the answer is the DFA's: the chunk is rejected iff
       its bytes cannot continue valid UTF-8. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define FS_ASCII_SKIP(w) ((size_t)__builtin_ctzll(w) >> 3)
    #else
    #define FS_ASCII_SKIP(w) 0
    #endif
    static inline int fs_utf8_run(int state, const unsigned char *p, size_t n)
    {
        size_t i = 0;
        uint64_t w;
        unsigned c, c1;
        while (state != 0 && i < n) {
            state = fs_utf8_next[state][p[i++]];
            if (state == FS_UTF8_REJECT) return state;
        }
        while (i < n) {
            c = p[i];
            if (c < 0x80) {
                i++;
                while (i + 8 <= n) {
                    memcpy(&w, p + i, 8);
                    w &= 0x8080808080808080ULL;
                    if (w) {
                        i += FS_ASCII_SKIP(w);
                        break;
                    }
                    i += 8;
                }
                while (i < n && p[i] < 0x80) i++;
                continue;
            }
            if (i + 4 <= n) {
                c1 = p[i + 1];
                if (c < 0xC2) return FS_UTF8_REJECT;
                if (c < 0xE0) {
                    if ((c1 & 0xC0) != 0x80) return FS_UTF8_REJECT;
                    i += 2;
                    continue;
                }
                if (c < 0xF0) {
                    if (c == 0xE0 ? (c1 < 0xA0 || c1 > 0xBF)
                        : c == 0xED ? (c1 < 0x80 || c1 > 0x9F)
                        : (c1 & 0xC0) != 0x80) return FS_UTF8_REJECT;
                    if ((p[i + 2] & 0xC0) != 0x80) return FS_UTF8_REJECT;
                    i += 3;
                    continue;
                }
                if (c < 0xF5) {
                    if (c == 0xF0 ? (c1 < 0x90 || c1 > 0xBF)
                        : c == 0xF4 ? (c1 < 0x80 || c1 > 0x8F)
                        : (c1 & 0xC0) != 0x80) return FS_UTF8_REJECT;
                    if ((p[i + 2] & 0xC0) != 0x80 || (p[i + 3] & 0xC0) != 0x80)
                        return FS_UTF8_REJECT;
                    i += 4;
                    continue;
                }
                return FS_UTF8_REJECT;
            }
            /* fewer than 4 bytes left: the DFA carries a cut sequence over */
            state = fs_utf8_next[0][c];
            i++;
            while (state != 0 && state != FS_UTF8_REJECT && i < n)
                state = fs_utf8_next[state][p[i++]];
            if (state == FS_UTF8_REJECT) return state;
        }
        return state;
    }
    """
    int fs_mask_copy(unsigned char *dst, const unsigned char *src, size_t n,
                     const unsigned char *key, unsigned phase) noexcept nogil
    void fs_copy(unsigned char *dst, const unsigned char *src, size_t n) noexcept nogil
    const unsigned char *fs_zero_key
    void fs_utf8_init() noexcept
    void fs_mask_init(int baseline_only) noexcept
    const char *fs_mask_kernel
    int fs_utf8_run(int state, const unsigned char *p, size_t n) noexcept nogil
    int FS_UTF8_REJECT

fs_utf8_init()
# FASTSOCK_MASK_KERNEL=baseline skips the AVX2 kernel (tests, comparisons).
fs_mask_init(os.environ.get("FASTSOCK_MASK_KERNEL") == "baseline")
#: The unmasking kernel chosen at import: "avx2", else "sse2" (x86-64) or "u64".
MASK_KERNEL = fs_mask_kernel.decode()

OP_CONTINUATION = 0
OP_TEXT = 1
OP_BINARY = 2
OP_CLOSE = 8
OP_PING = 9
OP_PONG = 10
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

cdef enum:
    _MIN_SPLIT_CAP = 65536    # first allocation for a payload that arrives in pieces
cdef uint64_t _LIMIT = 0x7FFFFFFFFFFFFFFF
_OPCODES = frozenset((0, 1, 2, 8, 9, 10))

__all__ = [
    "OP_CONTINUATION", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "RSV1", "RSV2", "RSV3",
    "Frame", "FrameParser", "build_frame", "apply_mask", "mask_inplace",
    "validate_utf8", "Utf8Validator",
]


cdef int _get_buffer(object obj, Py_buffer *view, str what) except -1:
    """Read-only contiguous view of any bytes-like ``obj`` (copying non-contiguous ones)."""
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    except BufferError:
        PyObject_GetBuffer(memoryview(obj).tobytes(), view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"{what} must be bytes-like, not {type(obj).__name__}") from None
    return 0


cdef int _get_key(object mask, unsigned char *key) except -1:
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(mask, &view, PyBUF_SIMPLE)
    except (TypeError, BufferError):
        raise TypeError(f"mask must be bytes-like, not {type(mask).__name__}") from None
    try:
        if view.len != 4:
            raise ValueError("mask must contain 4 bytes")
        memcpy(key, view.buf, 4)
    finally:
        PyBuffer_Release(&view)
    return 0


# --- UTF-8 ------------------------------------------------------------------

cdef class Utf8Validator:
    """Incremental UTF-8 check; :meth:`feed` fails at the first impossible byte."""

    def __init__(self):
        self._state = 0

    def feed(self, data) -> bool:
        """Return False once the bytes seen so far cannot start valid UTF-8."""
        cdef Py_buffer view
        if self._state == FS_UTF8_REJECT:
            return False
        _get_buffer(data, &view, "data")
        self._state = fs_utf8_run(self._state, <const unsigned char *>view.buf, view.len)
        PyBuffer_Release(&view)
        return self._state != FS_UTF8_REJECT

    def finish(self) -> bool:
        """Return False if the text was invalid or ends inside a sequence."""
        return self._state == 0

    def reset(self) -> None:
        """Forget everything; ready for the next message."""
        self._state = 0


def validate_utf8(data) -> bool:
    """Return True if ``data`` is complete, well-formed UTF-8."""
    cdef Py_buffer view
    cdef int state
    _get_buffer(data, &view, "data")
    state = fs_utf8_run(0, <const unsigned char *>view.buf, view.len)
    PyBuffer_Release(&view)
    return state == 0


# --- masking ----------------------------------------------------------------

cdef inline int _key4(object mask, unsigned char *key) except -1:
    if type(mask) is bytes and PyBytes_GET_SIZE(mask) == 4:
        memcpy(key, PyBytes_AS_STRING(mask), 4)
        return 0
    return _get_key(mask, key)


def apply_mask(data, mask) -> bytes:
    """Return ``data`` XOR the repeated 4-byte ``mask`` (websockets' contract)."""
    cdef unsigned char key[4]
    cdef Py_buffer view
    cdef bytes out
    cdef Py_ssize_t n
    _key4(mask, key)
    if type(data) is bytes:             # no buffer protocol round trip
        n = PyBytes_GET_SIZE(data)
        out = PyBytes_FromStringAndSize(NULL, n)
        fs_mask_copy(<unsigned char *>PyBytes_AS_STRING(out),
                     <const unsigned char *>PyBytes_AS_STRING(data), n, key, 0)
        return out
    _get_buffer(data, &view, "data")
    try:
        out = PyBytes_FromStringAndSize(NULL, view.len)
        fs_mask_copy(<unsigned char *>PyBytes_AS_STRING(out),
                     <const unsigned char *>view.buf, view.len, key, 0)
    finally:
        PyBuffer_Release(&view)
    return out


def mask_inplace(buf, mask, int phase=0) -> int:
    """XOR the writable buffer ``buf`` with ``mask`` starting at key byte ``phase``.

    Returns the phase for the next chunk of the same payload.
    """
    cdef unsigned char key[4]
    cdef Py_buffer view
    cdef Py_ssize_t n
    cdef unsigned char *p
    _key4(mask, key)
    if not 0 <= phase <= 3:
        raise ValueError("phase must be 0, 1, 2 or 3")
    if type(buf) is bytearray:
        p = <unsigned char *>PyByteArray_AS_STRING(buf)
        n = PyByteArray_GET_SIZE(buf)
        fs_mask_copy(p, p, n, key, phase)
        return (phase + n) & 3
    try:
        PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
    except TypeError:
        raise TypeError(
            f"buf must be a writable bytes-like object, not {type(buf).__name__}") from None
    except BufferError:
        raise TypeError("buf must be a writable, contiguous bytes-like object") from None
    n = view.len
    p = <unsigned char *>view.buf
    if n >= 262144:                 # big enough to be worth letting other threads run
        with nogil:
            fs_mask_copy(p, p, n, key, phase)
    else:
        fs_mask_copy(p, p, n, key, phase)
    PyBuffer_Release(&view)
    return (phase + n) & 3


# --- frames -----------------------------------------------------------------

@cython.freelist(256)
@cython.final
cdef class Frame:
    """One WebSocket frame. ``payload`` is unmasked bytes owned by the caller."""

    def __init__(self, int opcode, bytes payload not None=b"", bint fin=True, int rsv=0):
        self.opcode = opcode
        self.payload = payload
        self.fin = fin
        self.rsv = rsv

    def __repr__(self):
        data = self.payload
        shown = repr(data[:32]) + ("..." if len(data) > 32 else "")
        return (f"Frame(opcode={self.opcode}, fin={self.fin}, rsv=0x{self.rsv:02x}, "
                f"len={len(data)}, payload={shown})")


cdef inline Frame _make_frame(bint fin, int rsv, int opcode, bytes payload):
    cdef Frame f = Frame.__new__(Frame)
    f.fin = fin
    f.rsv = rsv
    f.opcode = opcode
    f.payload = payload
    return f


# Masking keys cut from one os.urandom call per 1024 frames.
cdef bytes _key_pool = b""
cdef Py_ssize_t _key_pos = 0
_urandom = os.urandom


cdef inline const unsigned char *_take_key() except NULL:
    global _key_pool, _key_pos
    if _key_pos + 4 > PyBytes_GET_SIZE(_key_pool):
        _key_pool = _urandom(4096)
        _key_pos = 0
    _key_pos += 4
    return <const unsigned char *>PyBytes_AS_STRING(_key_pool) + _key_pos - 4


def build_frame(opcode, payload=b"", *, bint fin=True, int rsv=0, bint mask=False) -> bytes:
    """Encode one frame (header + payload) as a single bytes object.

    ``mask=True`` (client side) masks with a fresh key from ``os.urandom``.
    The result can be written to any number of connections.
    """
    cdef Py_buffer view
    cdef Py_ssize_t n, h
    cdef unsigned char *out
    cdef const unsigned char *key
    cdef bytes frame
    cdef int i, op
    if opcode not in _OPCODES:
        raise ValueError(f"cannot build a frame with opcode {opcode!r}")
    op = opcode
    if rsv & ~0x70:
        raise ValueError(f"cannot build a frame with rsv 0x{rsv:x}: only 0x40, 0x20, 0x10 exist")
    _get_buffer(payload, &view, "payload")
    try:
        n = view.len
        if op >= 8:
            if n > 125:
                raise ValueError(
                    f"cannot build a control frame with {n} bytes of payload (max 125)")
            if not fin:
                raise ValueError("cannot build a fragmented control frame")
        h = 2 if n < 126 else (4 if n < 65536 else 10)
        if mask:
            h += 4
        frame = PyBytes_FromStringAndSize(NULL, h + n)
        out = <unsigned char *>PyBytes_AS_STRING(frame)
        out[0] = (0x80 if fin else 0) | rsv | op
        out[1] = 0x80 if mask else 0
        if n < 126:
            out[1] |= <unsigned char>n
        elif n < 65536:
            out[1] |= 126
            out[2] = <unsigned char>(n >> 8)
            out[3] = <unsigned char>n
        else:
            out[1] |= 127
            for i in range(8):
                out[2 + i] = <unsigned char>((<uint64_t>n) >> (56 - 8 * i))
        if mask:
            key = _take_key()
            memcpy(out + h - 4, key, 4)
            fs_mask_copy(out + h, <const unsigned char *>view.buf, n, key, 0)
        else:
            fs_copy(out + h, <const unsigned char *>view.buf, n)
    finally:
        PyBuffer_Release(&view)
    return frame


# --- parser -----------------------------------------------------------------

cdef class FrameParser:
    """Incremental RFC 6455 frame parser; see docs/codec.md for the rules.

    :meth:`feed` returns every frame completed so far. On the first protocol
    violation it returns the frames that preceded the bad one, stores the
    exception in :attr:`error`, and every later call raises it.
    """

    def __init__(self, *, require_mask, max_frame_size=_LIMIT, max_message_size=_LIMIT,
                 int allowed_rsv=0, validate_utf8=True):
        if max_frame_size < 0 or max_message_size < 0:
            raise ValueError("size limits must be >= 0")
        if allowed_rsv & ~0x70:
            raise ValueError(f"allowed_rsv 0x{allowed_rsv:x} is not a combination of RSV1-3")
        self.error = None
        self._require_mask = bool(require_mask)
        self._max_frame = min(max_frame_size, _LIMIT)
        self._max_message = min(max_message_size, _LIMIT)
        self._bad_rsv = 0x70 & ~allowed_rsv
        self._check_utf8 = bool(validate_utf8)
        self._hdr_len = 0
        self._in_payload = False
        self._drop_pbuf()
        self._fragmented = False
        self._msg_size = 0
        self._msg_text = False
        self._utf8_state = 0

    def __dealloc__(self):
        Py_XDECREF(self._pbuf)
        self._pbuf = NULL

    cdef int _drop_pbuf(self) noexcept:
        Py_XDECREF(self._pbuf)
        self._pbuf = NULL
        self._cap = 0
        return 0

    cdef Py_ssize_t _fail(self, exc):
        self.error = exc
        self._drop_pbuf()
        self._hdr_len = 0
        return -1

    cdef Py_ssize_t _header(self, const unsigned char *p, Py_ssize_t n):
        """Parse a header; return its size, 0 if incomplete, -1 after a violation."""
        cdef unsigned int b0, b1, opcode, rsv
        cdef bint fin, masked
        cdef uint64_t length, total
        cdef Py_ssize_t size, i
        if n < 2:
            return 0
        b0 = p[0]
        b1 = p[1]
        opcode = b0 & 0x0F
        fin = (b0 & 0x80) != 0
        rsv = b0 & 0x70
        if rsv & self._bad_rsv:
            return self._fail(FrameError(
                f"peer sent a frame with RSV bits 0x{rsv:02x} that were not negotiated"))
        if opcode > 10 or 2 < opcode < 8:
            return self._fail(FrameError(f"peer sent a frame with reserved opcode {opcode}"))
        masked = (b1 & 0x80) != 0
        if masked != self._require_mask:
            if masked:
                return self._fail(FrameError("peer sent a masked frame; a server must not mask"))
            return self._fail(FrameError("peer sent an unmasked frame; a client must mask"))
        length = b1 & 0x7F
        if opcode >= 8:
            if not fin:
                return self._fail(FrameError(
                    f"peer sent a fragmented control frame (opcode {opcode})"))
            if length > 125:
                return self._fail(FrameError(
                    f"peer sent a control frame (opcode {opcode}) longer than 125 bytes"))
        elif opcode == 0:
            if not self._fragmented:
                return self._fail(FrameError(
                    "peer sent a continuation frame but no message was started"))
        elif self._fragmented:
            return self._fail(FrameError(
                "peer started a new message before finishing the fragmented one"))
        size = 6 if masked else 2
        if length == 126:
            size += 2
        elif length == 127:
            size += 8
        if n < size:
            if length == 127 and n >= 3 and p[2] & 0x80:
                return self._fail(FrameError(
                    "peer sent a 64-bit frame length with the top bit set"))
            return 0
        if length == 126:
            length = (<uint64_t>p[2] << 8) | p[3]
        elif length == 127:
            if p[2] & 0x80:
                return self._fail(FrameError(
                    "peer sent a 64-bit frame length with the top bit set"))
            length = 0
            for i in range(2, 10):
                length = (length << 8) | p[i]
        if length > self._max_frame:
            return self._fail(MessageTooBigError(
                f"peer sent a {length}-byte frame; the limit is {self._max_frame} bytes"))
        if opcode < 8:
            if opcode != 0:
                self._msg_size = 0
                self._msg_text = self._check_utf8 and opcode == 1 and not (rsv & 0x40)
                self._utf8_state = 0
            total = self._msg_size + length
            if total > self._max_message:
                return self._fail(MessageTooBigError(
                    f"peer sent a message of at least {total} bytes; "
                    f"the limit is {self._max_message} bytes"))
            self._msg_size = total
            self._fragmented = not fin
            self._text = self._msg_text
        else:
            self._text = False
        if masked:
            memcpy(self._key, p + size - 4, 4)
        self._masked = masked
        self._fin = fin
        self._rsv = rsv
        self._opcode = opcode
        self._length = length
        self._received = 0
        self._in_payload = True
        return size

    def feed(self, data) -> list:
        """Consume ``data`` (any bytes-like) and return the frames it completed."""
        cdef Py_buffer view
        cdef bint have_view = False
        cdef const unsigned char *p
        cdef const unsigned char *end
        cdef Py_ssize_t n, rc, take, old
        cdef uint64_t remaining
        cdef unsigned char *dst
        cdef bytes payload
        cdef list frames = []
        if self.error is not None:
            raise self.error
        if type(data) is bytes:
            p = <const unsigned char *>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        else:
            _get_buffer(data, &view, "data")
            have_view = True
            p = <const unsigned char *>view.buf
            n = view.len
        try:
            end = p + n
            if self._hdr_len:
                # Complete the header carried over from the last feed.
                old = self._hdr_len
                take = min(14 - old, n)
                memcpy(self._hdr + old, p, take)
                rc = self._header(self._hdr, old + take)
                if rc < 0:
                    return frames
                if rc == 0:             # still incomplete: all of data is in _hdr
                    self._hdr_len = old + take
                    return frames
                self._hdr_len = 0
                p += rc - old
            while True:
                if not self._in_payload:
                    rc = self._header(p, end - p)
                    if rc < 0:
                        return frames
                    if rc == 0:
                        self._hdr_len = end - p
                        memcpy(self._hdr, p, self._hdr_len)
                        return frames
                    p += rc
                remaining = self._length - self._received
                if self._pbuf == NULL and <uint64_t>(end - p) >= remaining:
                    # The whole payload is here: one allocation, unmask while copying.
                    payload = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>remaining)
                    dst = <unsigned char *>PyBytes_AS_STRING(payload)
                    if self._masked:
                        fs_mask_copy(dst, p, remaining, self._key, 0)
                    else:
                        fs_copy(dst, p, remaining)
                    p += remaining
                    if self._text:
                        self._utf8_state = fs_utf8_run(self._utf8_state, dst, remaining)
                else:
                    if p == end:
                        return frames
                    take = <Py_ssize_t>min(<uint64_t>(end - p), remaining)
                    if self._reserve(self._received + take):
                        return frames
                    dst = <unsigned char *>_bytes_data(self._pbuf) + self._received
                    if self._masked:
                        fs_mask_copy(dst, p, take, self._key, self._received & 3)
                    else:
                        fs_copy(dst, p, take)
                    p += take
                    self._received += take
                    if self._text:
                        self._utf8_state = fs_utf8_run(self._utf8_state, dst, take)
                        if self._utf8_state == FS_UTF8_REJECT:
                            self._fail(InvalidUTF8Error(
                                "peer sent a text message that is not valid UTF-8"))
                            return frames
                    if self._received < self._length:
                        return frames
                    payload = <bytes>self._pbuf
                    self._drop_pbuf()
                self._in_payload = False
                if self._text:
                    if self._utf8_state == FS_UTF8_REJECT:
                        self._fail(InvalidUTF8Error(
                            "peer sent a text message that is not valid UTF-8"))
                        return frames
                    if self._fin and self._utf8_state != 0:
                        self._fail(InvalidUTF8Error(
                            "peer sent a text message that ends inside a UTF-8 sequence"))
                        return frames
                frames.append(_make_frame(self._fin, self._rsv, self._opcode, payload))
        finally:
            if have_view:
                PyBuffer_Release(&view)

    cdef object next_message(self, const unsigned char *p, Py_ssize_t n, Py_ssize_t *used):
        """The fast lane of the common case, for C callers (the WebSocket core).

        If ``p[:n]`` starts with a whole frame that is a complete message it
        returns that message and sets ``used[0]`` to the frame's size. The
        frame must be final and unfragmented, text or binary, with no RSV
        bits, a 7- or 16-bit length within the limits, and masked as
        required. A text message comes back as ``str`` (decoding checks its
        UTF-8), a binary one as ``bytes``.

        Anything else returns None and changes nothing: incomplete, control,
        fragment, extension, invalid or over a limit. ``feed`` then parses the
        same bytes with every check and error it has. No Frame or list
        objects are made, and a text payload is unmasked straight into a new
        ``str`` when it is ASCII (else decoded from that unmasked copy).
        """
        cdef unsigned int b0, b1
        cdef Py_ssize_t size, length
        cdef bint masked
        cdef const unsigned char *src
        cdef unsigned char *dst
        cdef bytes payload
        if n < 2 or self._in_payload or self._hdr_len or self._fragmented or self.error is not None:
            return None
        b0 = p[0]
        if b0 != 0x82 and (b0 != 0x81 or not self._check_utf8):
            return None
        b1 = p[1]
        masked = (b1 & 0x80) != 0
        if masked != self._require_mask:
            return None
        length = b1 & 0x7F
        size = 2
        if length == 127:
            return None
        if length == 126:
            if n < 4:
                return None
            length = (<Py_ssize_t>p[2] << 8) | p[3]
            size = 4
        if masked:
            size += 4
        if n - size < length or <uint64_t>length > self._max_frame \
                or <uint64_t>length > self._max_message:
            return None
        src = p + size
        if b0 == 0x82:
            payload = PyBytes_FromStringAndSize(NULL, length)
            if masked:
                fs_mask_copy(<unsigned char *>PyBytes_AS_STRING(payload), src, length, p + size - 4, 0)
            else:
                fs_copy(<unsigned char *>PyBytes_AS_STRING(payload), src, length)
            used[0] = size + length
            return payload
        # Text: unmask straight into a new ASCII str; most text is ASCII,
        # and then that is the message, with no second pass to decode it.
        # Otherwise CPython's strict decoder validates and decodes from there.
        message = PyUnicode_New(length, 127)
        dst = <unsigned char *>PyUnicode_DATA(message)
        if not fs_mask_copy(dst, src, length, p + size - 4 if masked else fs_zero_key, 0):
            try:
                decoded = PyUnicode_DecodeUTF8(<const char *>dst, length, NULL)
            except UnicodeDecodeError:
                return None     # feed() fails the stream with its own error (1007)
            used[0] = size + length
            return decoded
        used[0] = size + length
        return message

    cdef int _reserve(self, uint64_t need) except -1:
        """Make the split-payload buffer hold ``need`` bytes, growing geometrically.

        Returns 1 (with the stream failed as 1009) if the memory is not there.
        """
        cdef Py_ssize_t cap
        if self._pbuf != NULL and <uint64_t>self._cap >= need:
            return 0
        # Never more than the frame's length, never more than twice what arrived:
        # a header that announces a huge frame costs nothing until data comes.
        cap = <Py_ssize_t>min(self._length, max(<uint64_t>self._cap * 2, need,
                                                <uint64_t>_MIN_SPLIT_CAP))
        try:
            if self._pbuf == NULL:
                self._pbuf = _new_bytes(NULL, cap)
            else:
                _PyBytes_Resize(&self._pbuf, cap)   # on failure it frees and sets NULL
        except MemoryError:
            self._fail(MessageTooBigError(
                f"cannot buffer a {self._length}-byte frame: out of memory"))
            return 1
        self._cap = cap
        return 0
