"""permessage-deflate (RFC 7692) for the fuzzing client, written from the RFC
with nothing but Python's zlib (nothing is imported from fastsock).

* ``Offer``: one extension offer as Autobahn's ``PerMessageDeflateOffer``
  builds it, and its header text;
* ``negotiate``: checks the server's ``Sec-WebSocket-Extensions`` answer
  against the offers the way a strict client must (RFC 7692 sections 5 and
  7.1) and returns the agreed ``Agreement`` - or raises ``NegotiationError``;
* ``Deflater`` / ``Inflater``: the client's side of the agreement. The
  inflater is as strict as the agreement allows: it uses exactly the window
  the server promised (``server_max_window_bits``) and forgets everything
  between messages when the server promised ``server_no_context_takeover``,
  so a server that breaks either promise makes zlib fail ("invalid distance
  too far back") or the echo differ.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

EXTENSION = "permessage-deflate"
# RFC 7692 7.2.1: a message's compressed data ends with an empty stored block,
# whose last four octets (0x00 0x00 0xff 0xff) are removed from the payload
TAIL = b"\x00\x00\xff\xff"
_BITS = re.compile(r"^(?:8|9|1[0-5])$")  # 1*DIGIT in 8..15, no leading zero
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class NegotiationError(Exception):
    """The server's answer is not a valid acceptance of any offer."""


@dataclass(frozen=True)
class Offer:
    """One permessage-deflate offer, as Autobahn's ``PerMessageDeflateOffer``:
    ``accept_no_context_takeover`` sends the ``client_no_context_takeover``
    hint, ``accept_max_window_bits`` sends ``client_max_window_bits`` (no
    value: the server may limit our window), ``request_no_context_takeover``
    asks for ``server_no_context_takeover`` and ``request_max_window_bits``
    (8..15, 0 for none) asks for ``server_max_window_bits``."""
    accept_no_context_takeover: bool = True
    accept_max_window_bits: bool = True
    request_no_context_takeover: bool = False
    request_max_window_bits: int = 0

    def header(self) -> str:
        params = [EXTENSION]
        if self.accept_no_context_takeover:
            params.append("client_no_context_takeover")
        if self.accept_max_window_bits:
            params.append("client_max_window_bits")
        if self.request_no_context_takeover:
            params.append("server_no_context_takeover")
        if self.request_max_window_bits:
            params.append(f"server_max_window_bits={self.request_max_window_bits}")
        return "; ".join(params)

    def short(self) -> str:
        return f"({self.request_no_context_takeover}, {self.request_max_window_bits})"


def offers_header(offers: list[Offer]) -> str:
    return ", ".join(o.header() for o in offers)


@dataclass(frozen=True)
class Agreement:
    """What both sides must do after the handshake."""
    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int   # the server's compressor window (15: no limit agreed)
    client_max_window_bits: int   # ours
    response: str                 # the server's header, for reports


def _split_unquoted(text: str, sep: str) -> list[str]:
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise NegotiationError(f"unterminated quoted string in {text!r}")
    out.append("".join(cur))
    return out


def parse_extensions(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """RFC 6455 9.1 ``Sec-WebSocket-Extensions`` grammar (values may be quoted)."""
    result = []
    for item in _split_unquoted(header, ","):
        parts = [p.strip() for p in _split_unquoted(item, ";")]
        if not parts[0] or not _TOKEN.match(parts[0]):
            raise NegotiationError(f"bad extension name in {header!r}")
        params: list[tuple[str, str | None]] = []
        for p in parts[1:]:
            name, eq, value = (x.strip() for x in p.partition("="))
            if not _TOKEN.match(name):
                raise NegotiationError(f"bad extension parameter {p!r}")
            if not eq:
                params.append((name, None))
                continue
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not _TOKEN.match(value):
                raise NegotiationError(f"bad extension parameter value {p!r}")
            params.append((name, value))
        result.append((parts[0], params))
    return result


def _check_against(offer: Offer, params: dict[str, str | None], header: str) -> Agreement:
    """The agreement if ``params`` validly accepts ``offer`` (RFC 7692 7.1)."""
    snct = "server_no_context_takeover" in params
    cnct = "client_no_context_takeover" in params
    if offer.request_no_context_takeover and not snct:
        raise NegotiationError("server_no_context_takeover was requested but not agreed")
    smwb = 15
    if "server_max_window_bits" in params:
        smwb = int(params["server_max_window_bits"] or 0)
        if offer.request_max_window_bits and smwb > offer.request_max_window_bits:
            raise NegotiationError(f"server_max_window_bits={smwb} is above the "
                                   f"{offer.request_max_window_bits} requested")
    elif offer.request_max_window_bits:
        # 7.1.2.1: a server that accepts the offer MUST include it with a
        # value no larger than the offered one
        raise NegotiationError("server_max_window_bits was requested but not answered")
    cmwb = 15
    if "client_max_window_bits" in params:
        if not offer.accept_max_window_bits:
            raise NegotiationError("client_max_window_bits answered but not offered")
        cmwb = int(params["client_max_window_bits"] or 0)
    # the hint: a client that offered client_no_context_takeover does not use
    # context takeover even if the answer leaves it out (7.1.1.2)
    return Agreement(snct, cnct or offer.accept_no_context_takeover, smwb, cmwb, header)


def negotiate(offers: list[Offer], header: str | None) -> Agreement | None:
    """The agreement for the server's answer (``None``: it declined)."""
    if header is None:
        return None
    items = parse_extensions(header)
    if len(items) != 1 or items[0][0].lower() != EXTENSION:
        raise NegotiationError(f"server answered extensions that were not offered: {header!r}")
    params: dict[str, str | None] = {}
    for name, value in items[0][1]:
        name = name.lower()
        if name in params:
            raise NegotiationError(f"duplicate parameter {name} in {header!r}")
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise NegotiationError(f"{name} takes no value: {header!r}")
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            # in a response both carry a value (7.1.2.2: client_max_window_bits
            # without a value is for offers only)
            if value is None or not _BITS.match(value):
                raise NegotiationError(f"{name} must be 8..15 in a response: {header!r}")
        else:
            raise NegotiationError(f"unknown parameter {name} in {header!r}")
        params[name] = value
    problems = []
    for offer in offers:
        try:
            return _check_against(offer, params, header)
        except NegotiationError as exc:
            problems.append(str(exc))
    raise NegotiationError(f"{header!r} accepts none of the offers: {'; '.join(problems)}")


class Deflater:
    """The client's compressor under an agreement."""

    def __init__(self, agreement: Agreement, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        self._reset = agreement.client_no_context_takeover
        bits = agreement.client_max_window_bits
        # zlib cannot deflate with an 8-bit window (raw deflate rejects
        # wbits=-8); Huffman-only output has no back references at all, so it
        # is valid whatever window the server keeps
        self._args = ((level, zlib.DEFLATED, -9, 8, zlib.Z_HUFFMAN_ONLY) if bits == 8
                      else (level, zlib.DEFLATED, -bits))
        self._c = zlib.compressobj(*self._args)

    def compress(self, message: bytes) -> bytes:
        data = self._c.compress(message) + self._c.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        if self._reset:
            self._c = zlib.compressobj(*self._args)
        return data[:-4]


class Inflater:
    """The client's decompressor under an agreement."""

    def __init__(self, agreement: Agreement) -> None:
        self._bits = agreement.server_max_window_bits
        self._reset = agreement.server_no_context_takeover
        self._d = zlib.decompressobj(-self._bits)

    def decompress(self, payload: bytes) -> bytes:
        """One whole message; raises ``zlib.error`` on a broken stream.

        zlib only rejects a distance beyond its window plus what the current
        inflate() call has produced, so the output is taken one window at a
        time: a back reference further than two windows fails."""
        step = 1 << self._bits
        parts = [self._d.decompress(payload + TAIL, step)]
        # a full chunk may leave output pending in zlib with no input left
        while self._d.unconsumed_tail or len(parts[-1]) == step:
            parts.append(self._d.decompress(self._d.unconsumed_tail, step))
        out = b"".join(parts)
        if self._d.eof:
            # eof: the server ended the deflate stream (BFINAL) inside a
            # message; legal, but then the next message needs a new stream
            self._d = zlib.decompressobj(-self._bits)
        elif self._reset:
            self._d = zlib.decompressobj(-self._bits)
        return out
