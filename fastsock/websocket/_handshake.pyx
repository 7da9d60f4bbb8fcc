# cython: language_level=3
"""Compiled opening-handshake scan: validate an upgrade request head and
build the ``101`` answer in one pass over the bytes, with no Python object
per header (see the twin ``_handshake_py.py`` for the contract and grammar;
both must give identical results)."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeLatin1
from libc.stdint cimport uint32_t, uint8_t
from libc.string cimport memcpy

WANT_ORIGIN = 1
WANT_PROTOCOL = 2
WANT_EXTENSIONS = 4
PLAIN_HTTP = 0
UPGRADE = 101

cdef enum:
    _WANT_ORIGIN = 1
    _WANT_PROTOCOL = 2
    _WANT_EXTENSIONS = 4
    KEY_LEN = 24            # base64 of 16 bytes with "==" padding
    ACCEPT_LEN = 28         # base64 of a 20-byte SHA-1
    MAX_JOIN = 8            # repeated headers of one name we keep positions of

cdef bytes RESPONSE_HEAD = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\nSec-WebSocket-Accept: ")
cdef bytes GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# RFC 9110 tchar, as a 256-entry table
cdef uint8_t TCHAR[256]
cdef uint8_t B64CHAR[256]


cdef void _tables():
    cdef int c
    for c in range(256):
        TCHAR[c] = 0
        B64CHAR[c] = 0
    for c in b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        TCHAR[c] = 1
    for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/":
        B64CHAR[c] = 1


_tables()


# ------------------------------------------------------------------ SHA-1 (FIPS 180-4)

cdef inline uint32_t _rol(uint32_t x, int n) noexcept nogil:
    return (x << n) | (x >> (32 - n))


cdef void _sha1_block(uint32_t *h, const uint8_t *p) noexcept nogil:
    cdef uint32_t w[80]
    cdef uint32_t a, b, c, d, e, f, k, t
    cdef int i
    for i in range(16):
        w[i] = ((<uint32_t>p[4 * i] << 24) | (<uint32_t>p[4 * i + 1] << 16)
                | (<uint32_t>p[4 * i + 2] << 8) | <uint32_t>p[4 * i + 3])
    for i in range(16, 80):
        w[i] = _rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]
    for i in range(80):
        if i < 20:
            f = (b & c) | (~b & d); k = 0x5A827999
        elif i < 40:
            f = b ^ c ^ d; k = 0x6ED9EBA1
        elif i < 60:
            f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC
        else:
            f = b ^ c ^ d; k = 0xCA62C1D6
        t = _rol(a, 5) + f + e + k + w[i]
        e = d; d = c; c = _rol(b, 30); b = a; a = t
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e


cdef void _accept(const uint8_t *key, char *out) noexcept nogil:
    """base64(SHA-1(key[24] + GUID)) into out[28]. 24 + 36 = 60 bytes: one
    block plus the padding block."""
    cdef uint8_t buf[128]
    cdef uint32_t h[5]
    cdef uint8_t digest[21]
    cdef int i, v
    cdef const char *guid = GUID_C
    h[0] = 0x67452301; h[1] = 0xEFCDAB89; h[2] = 0x98BADCFE; h[3] = 0x10325476; h[4] = 0xC3D2E1F0
    memcpy(buf, key, KEY_LEN)
    memcpy(buf + KEY_LEN, guid, 36)
    buf[60] = 0x80
    for i in range(61, 120):
        buf[i] = 0
    # message length in bits: 480, big-endian in the last 8 bytes
    for i in range(120, 126):
        buf[i] = 0
    buf[126] = 0x01
    buf[127] = 0xE0
    _sha1_block(h, buf)
    _sha1_block(h, buf + 64)
    for i in range(5):
        digest[4 * i] = <uint8_t>(h[i] >> 24)
        digest[4 * i + 1] = <uint8_t>(h[i] >> 16)
        digest[4 * i + 2] = <uint8_t>(h[i] >> 8)
        digest[4 * i + 3] = <uint8_t>h[i]
    digest[20] = 0
    # 20 bytes: 6 full groups of 3, then 2 bytes with one "=" of padding
    for i in range(6):
        v = (digest[3 * i] << 16) | (digest[3 * i + 1] << 8) | digest[3 * i + 2]
        out[4 * i] = B64_C[(v >> 18) & 63]
        out[4 * i + 1] = B64_C[(v >> 12) & 63]
        out[4 * i + 2] = B64_C[(v >> 6) & 63]
        out[4 * i + 3] = B64_C[v & 63]
    v = (digest[18] << 16) | (digest[19] << 8)
    out[24] = B64_C[(v >> 18) & 63]
    out[25] = B64_C[(v >> 12) & 63]
    out[26] = B64_C[(v >> 6) & 63]
    out[27] = b'='


cdef const char *GUID_C = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
cdef const char *B64_C = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def accept_key(bytes key):
    """``Sec-WebSocket-Accept`` for a key's ASCII bytes (any length)."""
    if PyBytes_GET_SIZE(key) == KEY_LEN:
        out = PyBytes_FromStringAndSize(NULL, ACCEPT_LEN)
        _accept(<const uint8_t *>PyBytes_AS_STRING(key), PyBytes_AS_STRING(out))
        return out
    import base64, hashlib
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


# ------------------------------------------------------------------ the scan

cdef inline bint _lower_eq(const uint8_t *p, Py_ssize_t n, const char *lower, Py_ssize_t m) noexcept nogil:
    """p[:n], ASCII-lower-cased, equals lower[:m]."""
    cdef Py_ssize_t i
    cdef uint8_t c
    if n != m:
        return False
    for i in range(n):
        c = p[i]
        if 65 <= c <= 90:
            c += 32
        if c != <uint8_t>lower[i]:
            return False
    return True


cdef bint _has_token(const uint8_t *p, Py_ssize_t n, const char *token, Py_ssize_t m) noexcept nogil:
    """A comma-separated value p[:n] holds ``token`` (case-insensitive,
    items stripped of SP/HTAB)."""
    cdef Py_ssize_t i = 0, start, end
    while i <= n:
        start = i
        while i < n and p[i] != 44:       # ','
            i += 1
        end = i
        while start < end and (p[start] == 32 or p[start] == 9):
            start += 1
        while end > start and (p[end - 1] == 32 or p[end - 1] == 9):
            end -= 1
        if _lower_eq(p + start, end - start, token, m):
            return True
        i += 1
    return False


# Header names the scan looks at (index into the position arrays).
cdef enum:
    H_HOST = 0
    H_UPGRADE
    H_CONNECTION
    H_KEY
    H_VERSION
    H_ORIGIN
    H_PROTOCOL
    H_EXTENSIONS
    H_COUNT


cdef int _which(const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """Which header of interest the name p[:n] is, else -1."""
    if n == 4:
        return H_HOST if _lower_eq(p, n, b"host", 4) else -1
    if n == 6:
        return H_ORIGIN if _lower_eq(p, n, b"origin", 6) else -1
    if n == 7:
        return H_UPGRADE if _lower_eq(p, n, b"upgrade", 7) else -1
    if n == 10:
        return H_CONNECTION if _lower_eq(p, n, b"connection", 10) else -1
    if n == 17:
        return H_KEY if _lower_eq(p, n, b"sec-websocket-key", 17) else -1
    if n == 21:
        return H_VERSION if _lower_eq(p, n, b"sec-websocket-version", 21) else -1
    if n == 22:
        return H_PROTOCOL if _lower_eq(p, n, b"sec-websocket-protocol", 22) else -1
    if n == 24:
        return H_EXTENSIONS if _lower_eq(p, n, b"sec-websocket-extensions", 24) else -1
    return -1


cdef tuple _bad(int status, str reason):
    return (status, reason, None, None, None, None, None)


cdef tuple _refuse(int status, str reason, str target):
    # The head parsed; the upgrade checks failed (target says so).
    return (status, reason, target, None, None, None, None)


cdef object _joined(const uint8_t *base, Py_ssize_t *starts, Py_ssize_t *ends, int count):
    if count == 0:
        return None
    if count == 1:
        return PyUnicode_DecodeLatin1(<const char *>base + starts[0], ends[0] - starts[0], NULL)
    parts = [PyUnicode_DecodeLatin1(<const char *>base + starts[i], ends[i] - starts[i], NULL)
             for i in range(count)]
    return ", ".join(parts)


def scan_request(bytes head, Py_ssize_t max_headers, int want):
    """See ``_handshake_py.scan_request``."""
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(head)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(head)
    cdef Py_ssize_t i = 0, j, m_end, t_start, t_end, line_end, name_end, v_start, v_end
    cdef Py_ssize_t starts[H_COUNT][MAX_JOIN]
    cdef Py_ssize_t ends[H_COUNT][MAX_JOIN]
    cdef int counts[H_COUNT]
    cdef int h, k, headers = 0
    cdef bint host_ok = False
    cdef uint8_t c
    for h in range(H_COUNT):
        counts[h] = 0
    # request line: METHOD SP target SP HTTP/d.d CRLF
    while i < n and TCHAR[p[i]]:
        i += 1
    m_end = i
    if m_end == 0 or i >= n or p[i] != 32:
        return _bad(400, "peer sent a malformed request line")
    i += 1
    t_start = i
    while i < n and 33 <= p[i] <= 126:
        i += 1
    t_end = i
    if t_end == t_start or i >= n or p[i] != 32:
        return _bad(400, "peer sent a malformed request line")
    i += 1
    if (n - i < 10 or p[i] != 72 or p[i + 1] != 84 or p[i + 2] != 84 or p[i + 3] != 80
            or p[i + 4] != 47 or not (48 <= p[i + 5] <= 57) or p[i + 6] != 46
            or not (48 <= p[i + 7] <= 57) or p[i + 8] != 13 or p[i + 9] != 10):
        return _bad(400, "peer sent a malformed request line")
    cdef Py_ssize_t v_pos = i + 5
    i += 10
    # header lines
    while True:
        if n - i < 2:
            return _bad(400, "peer sent an unterminated request head")
        if p[i] == 13 and p[i + 1] == 10:
            break
        j = i
        while j < n and TCHAR[p[j]]:
            j += 1
        name_end = j
        if name_end == i or j >= n or p[j] != 58:          # ':'
            # a bad name, or the line has no ":", or it ends before one
            line_end = i
            while line_end + 1 < n and not (p[line_end] == 13 and p[line_end + 1] == 10):
                line_end += 1
            if line_end + 1 >= n:
                return _bad(400, "peer sent an unterminated request head")
            return _bad(400, "peer sent a malformed header line")
        j += 1
        # the value: up to CRLF; control characters other than HTAB are refused
        v_start = j
        while j < n:
            c = p[j]
            if c == 13 and j + 1 < n and p[j + 1] == 10:
                break
            if (c < 32 and c != 9) or c == 127:
                # a CR/LF/CTL inside the value (the twin sees the same line
                # up to the next CRLF; that line has a CTL either way)
                line_end = j
                while line_end + 1 < n and not (p[line_end] == 13 and p[line_end + 1] == 10):
                    line_end += 1
                if line_end + 1 >= n:
                    return _bad(400, "peer sent an unterminated request head")
                return _bad(400, "peer sent a control character in a header value")
            j += 1
        if j >= n:
            return _bad(400, "peer sent an unterminated request head")
        line_end = j
        v_end = j
        while v_start < v_end and (p[v_start] == 32 or p[v_start] == 9):
            v_start += 1
        while v_end > v_start and (p[v_end - 1] == 32 or p[v_end - 1] == 9):
            v_end -= 1
        if headers == max_headers:
            return _bad(431, f"peer sent more than {max_headers} headers")
        headers += 1
        h = _which(p + i, name_end - i)
        if h >= 0:
            if h == H_HOST:
                if v_end > v_start:
                    host_ok = True
            elif counts[h] < MAX_JOIN:
                starts[h][counts[h]] = v_start
                ends[h][counts[h]] = v_end
                counts[h] += 1
            else:
                counts[h] += 1
                if h == H_KEY or h == H_VERSION:
                    counts[h] = MAX_JOIN        # "several" either way
                else:
                    return _bad(400, "peer repeated a WebSocket header too often")
        i = line_end + 2
    target = PyUnicode_DecodeASCII(<const char *>p + t_start, t_end - t_start, NULL)
    if counts[H_UPGRADE] == 0 and counts[H_KEY] == 0:
        return (PLAIN_HTTP, None, target, None, None, None, None)
    if not (m_end == 3 and p[0] == 71 and p[1] == 69 and p[2] == 84):
        return _refuse(405, "peer used method " + PyUnicode_DecodeASCII(<const char *>p, m_end, NULL)
                       + ", expected GET", target)
    if not (p[v_pos] == 49 and p[v_pos + 2] == 49):
        return _refuse(400, "peer used HTTP/" + PyUnicode_DecodeASCII(<const char *>p + v_pos, 3, NULL)
                       + ", expected HTTP/1.1", target)
    if not host_ok:
        return _refuse(400, "peer sent no Host header", target)
    cdef bint found = False
    for k in range(counts[H_UPGRADE]):
        if _has_token(p + starts[H_UPGRADE][k], ends[H_UPGRADE][k] - starts[H_UPGRADE][k], b"websocket", 9):
            found = True
            break
    if not found:
        return _refuse(400, "peer sent no 'Upgrade: websocket' header", target)
    found = False
    for k in range(counts[H_CONNECTION]):
        if _has_token(p + starts[H_CONNECTION][k], ends[H_CONNECTION][k] - starts[H_CONNECTION][k],
                      b"upgrade", 7):
            found = True
            break
    if not found:
        return _refuse(400, "peer sent no 'Connection: upgrade' header", target)
    if (counts[H_VERSION] != 1 or ends[H_VERSION][0] - starts[H_VERSION][0] != 2
            or p[starts[H_VERSION][0]] != 49 or p[starts[H_VERSION][0] + 1] != 51):
        return _refuse(426, "peer did not ask for Sec-WebSocket-Version 13", target)
    if counts[H_KEY] != 1:
        return _refuse(400, "peer sent no or several Sec-WebSocket-Key headers", target)
    cdef const uint8_t *key = p + starts[H_KEY][0]
    found = ends[H_KEY][0] - starts[H_KEY][0] == KEY_LEN and key[22] == 61 and key[23] == 61
    if found:
        for k in range(KEY_LEN - 2):
            if not B64CHAR[key[k]]:
                found = False
                break
    if not found:
        return _refuse(400, "peer sent a Sec-WebSocket-Key that is not base64 of 16 bytes", target)
    cdef Py_ssize_t head_len = PyBytes_GET_SIZE(RESPONSE_HEAD)
    response = PyBytes_FromStringAndSize(NULL, head_len + ACCEPT_LEN + 4)
    cdef char *out = PyBytes_AS_STRING(response)
    memcpy(out, PyBytes_AS_STRING(RESPONSE_HEAD), head_len)
    _accept(key, out + head_len)
    memcpy(out + head_len + ACCEPT_LEN, b"\r\n\r\n", 4)
    return (UPGRADE, None, target, response,
            _joined(p, starts[H_ORIGIN], ends[H_ORIGIN], counts[H_ORIGIN]) if want & _WANT_ORIGIN else None,
            _joined(p, starts[H_PROTOCOL], ends[H_PROTOCOL], counts[H_PROTOCOL]) if want & _WANT_PROTOCOL else None,
            _joined(p, starts[H_EXTENSIONS], ends[H_EXTENSIONS], counts[H_EXTENSIONS])
            if want & _WANT_EXTENSIONS else None)


def parse_head(bytes head, Py_ssize_t max_headers):
    """See ``_handshake_py.parse_head``: the per-header objects, made only
    when the application asks for them (not on the handshake's path)."""
    from ._handshake_py import parse_head as _parse
    return _parse(head, max_headers)
