"""Pure-Python twin of ``_handshake.pyx``: scan a request head, build the 101.

Both give the same results for the same bytes (tests/test_server_handshake.py
checks that with hypothesis). :func:`scan_request` validates an RFC 6455
upgrade request without making a Python object per header: it returns one
tuple (see ``SCAN_*`` below) whose ``response`` is the whole
``101 Switching Protocols`` answer. :func:`parse_head` makes the per-header
objects, and only runs when the application asks for them (``ws.request``).

The grammar (RFC 9112, strict): ``METHOD SP target SP HTTP/d.d CRLF``, then
``name: value CRLF`` lines (name a token, no space before the colon, no
obs-fold, no control characters in values except HTAB), then CRLF.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Optional

__all__ = ["WANT_ORIGIN", "WANT_PROTOCOL", "WANT_EXTENSIONS", "PLAIN_HTTP", "UPGRADE",
           "scan_request", "parse_head", "accept_key"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# scan_request(want=...): which header values the caller needs as str.
WANT_ORIGIN = 1
WANT_PROTOCOL = 2
WANT_EXTENSIONS = 4

# scan_request status besides HTTP error codes.
PLAIN_HTTP = 0     # well-formed, but not a WebSocket upgrade attempt
UPGRADE = 101      # a valid upgrade: response holds the 101 answer

RESPONSE_HEAD = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: ")

# RFC 9110 tchar
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_DIGITS = frozenset(b"0123456789")
_KEY_LEN = 24      # base64 of 16 bytes, with "==" padding
# At most this many headers of each name whose values are joined (Upgrade,
# Connection, Origin, Sec-WebSocket-Protocol/-Extensions): the compiled scan
# keeps their positions in fixed arrays. More is refused with 400.
MAX_JOIN = 8
_JOINED = (b"upgrade", b"connection", b"origin", b"sec-websocket-protocol",
           b"sec-websocket-extensions")

Scan = tuple[int, Optional[str], Optional[str], Optional[bytes],
             Optional[str], Optional[str], Optional[str]]


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` (base64 of SHA-1) for a key's ASCII bytes."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _bad(status: int, reason: str) -> Scan:
    return (status, reason, None, None, None, None, None)


def _refuse(status: int, reason: str, target: str) -> Scan:
    # The head parsed; the upgrade checks failed (target says so).
    return (status, reason, target, None, None, None, None)


def _value_ok(value: bytes) -> bool:
    return all(c == 9 or 32 <= c <= 126 or c >= 128 for c in value)


def _has_token(values: list[bytes], token: bytes) -> bool:
    for value in values:
        for item in value.split(b","):
            if item.strip(b" \t").lower() == token:
                return True
    return False


def _split(head: bytes, max_headers: int) -> tuple[int, str, list[tuple[bytes, bytes]], tuple[bytes, bytes, bytes]]:
    """(status, reason, [(lower name, value)], (method, target, version)); status 0 is ok."""
    end = head.find(b"\r\n")
    line = head[:end] if end >= 0 else b""
    parts = line.split(b" ")
    if (end < 0 or len(parts) != 3 or not parts[0] or not all(c in _TCHAR for c in parts[0])
            or not parts[1] or not all(33 <= c <= 126 for c in parts[1])
            or len(parts[2]) != 8 or not parts[2].startswith(b"HTTP/")
            or parts[2][5] not in _DIGITS or parts[2][6] != 0x2E or parts[2][7] not in _DIGITS):
        return 400, "peer sent a malformed request line", [], (b"", b"", b"")
    headers: list[tuple[bytes, bytes]] = []
    repeats = dict.fromkeys(_JOINED, 0)
    pos = end + 2
    while True:
        end = head.find(b"\r\n", pos)
        if end < 0:
            return 400, "peer sent an unterminated request head", [], (b"", b"", b"")
        if end == pos:
            break
        line = head[pos:end]
        pos = end + 2
        colon = line.find(b":")
        name = line[:colon]
        if colon <= 0 or not all(c in _TCHAR for c in name):
            return 400, "peer sent a malformed header line", [], (b"", b"", b"")
        value = line[colon + 1:].strip(b" \t")
        if not _value_ok(value):
            return 400, "peer sent a control character in a header value", [], (b"", b"", b"")
        if len(headers) == max_headers:
            return 431, f"peer sent more than {max_headers} headers", [], (b"", b"", b"")
        name = name.lower()
        headers.append((name, value))
        if name in repeats:
            repeats[name] += 1
            if repeats[name] > MAX_JOIN:
                return 400, "peer repeated a WebSocket header too often", [], (b"", b"", b"")
    return 0, "", headers, (parts[0], parts[1], parts[2][5:])


def scan_request(head: bytes, max_headers: int, want: int) -> Scan:
    """Validate a request head (ending with an empty line) as an upgrade.

    Returns ``(status, reason, target, response, origin, protocols, extensions)``:

    - ``status == UPGRADE``: valid; ``response`` is the complete 101 answer
      (ending with the empty line); ``origin``/``protocols``/``extensions``
      are the header values (several joined by ``", "``) when ``want`` asks
      for them, else None;
    - ``status == PLAIN_HTTP``: a well-formed request that is no upgrade
      attempt (no ``Upgrade`` and no ``Sec-WebSocket-Key`` header);
    - otherwise the HTTP status to answer (400, 405, 426, 431) and why;
      ``target`` is None when the head is malformed, set when it parsed and
      the upgrade checks failed.
    """
    status, reason, headers, line = _split(head, max_headers)
    if status:
        return _bad(status, reason)
    method, target_b, version = line
    target = target_b.decode("ascii")

    def values(name: bytes) -> list[bytes]:
        return [v for k, v in headers if k == name]

    upgrade, keys = values(b"upgrade"), values(b"sec-websocket-key")
    if not upgrade and not keys:
        return (PLAIN_HTTP, None, target, None, None, None, None)
    if method != b"GET":
        return _refuse(405, f"peer used method {method.decode('ascii')}, expected GET", target)
    if version != b"1.1":
        return _refuse(400, f"peer used HTTP/{version.decode('ascii')}, expected HTTP/1.1", target)
    if not any(values(b"host")):
        return _refuse(400, "peer sent no Host header", target)
    if not _has_token(upgrade, b"websocket"):
        return _refuse(400, "peer sent no 'Upgrade: websocket' header", target)
    if not _has_token(values(b"connection"), b"upgrade"):
        return _refuse(400, "peer sent no 'Connection: upgrade' header", target)
    versions = values(b"sec-websocket-version")
    if len(versions) != 1 or versions[0] != b"13":
        return _refuse(426, "peer did not ask for Sec-WebSocket-Version 13", target)
    if len(keys) != 1:
        return _refuse(400, "peer sent no or several Sec-WebSocket-Key headers", target)
    key = keys[0]
    if (len(key) != _KEY_LEN or not key.endswith(b"==")
            or not all(c in _B64 for c in key[:_KEY_LEN - 2])):
        return _refuse(400, "peer sent a Sec-WebSocket-Key that is not base64 of 16 bytes", target)

    def joined(name: bytes) -> Optional[str]:
        found = values(name)
        return b", ".join(found).decode("latin-1") if found else None

    response = RESPONSE_HEAD + accept_key(key) + b"\r\n\r\n"
    return (UPGRADE, None, target, response,
            joined(b"origin") if want & WANT_ORIGIN else None,
            joined(b"sec-websocket-protocol") if want & WANT_PROTOCOL else None,
            joined(b"sec-websocket-extensions") if want & WANT_EXTENSIONS else None)


def parse_head(head: bytes, max_headers: int) -> tuple[str, str, str, list[tuple[str, str]]]:
    """``(method, target, version, [(name, value), ...])`` of a head that
    :func:`scan_request` accepted (names as sent, values stripped)."""
    end = head.find(b"\r\n")
    method, target, version = head[:end].split(b" ")
    status, reason, _, _ = _split(head, max_headers)
    if status:
        raise ValueError(reason)
    items: list[tuple[str, str]] = []
    pos = end + 2
    while True:
        end = head.find(b"\r\n", pos)
        if end == pos:
            break
        line = head[pos:end]
        pos = end + 2
        colon = line.find(b":")
        items.append((line[:colon].decode("ascii"),
                      line[colon + 1:].strip(b" \t").decode("latin-1")))
    return method.decode("ascii"), target.decode("ascii"), version[5:].decode("ascii"), items
