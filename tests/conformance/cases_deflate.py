"""Cases equivalent to Autobahn|Testsuite 12.* and 13.* (permessage-deflate).

As in Autobahn's ``case12_x_x.py``, every case sends COUNT messages of one
size, each after the echo of the previous one, cut in turn from a test corpus
(wrapping around), and the server must echo each with its type and payload:

* 12.j.i: the default offer (``permessage-deflate; client_no_context_takeover;
  client_max_window_bits``) with corpus j (below) and size/fragmentation i;
* 13.j.i: the JSON corpus with offer set j (Autobahn's ``DEFLATE_PARAMS``:
  server_no_context_takeover and server_max_window_bits 8/15 combinations, and
  three offers in one header) and size/fragmentation i.

Autobahn's corpora are files it ships (Goethe's Faust, a 512x512 bitmap, a
PDF, a JSON and an HTML file); the corpora here are generated
deterministically to the same sizes and kinds (text of the same language
statistics is not the point; compressible text, a smooth image, a PDF-like mix
of text and incompressible streams are). Text corpora are ASCII, so any slice
is valid UTF-8, as with Autobahn's.

The client (fuzzer.py + deflate.py) checks the server's answer strictly and
inflates with exactly the window and context the server agreed to, so a
server that compresses beyond its promise fails the case. A server that
declines an offer it cannot honour (only ``server_max_window_bits=8``:
zlib cannot deflate with a 256-byte window) passes if the plain echoes are
right; declining any other offer set fails the case.
"""
from __future__ import annotations

import functools
import json
import random
import struct
from typing import Callable, Sequence

from .cases import OP_BINARY, OP_TEXT, Case, CompressedRoundTrips, Script
from .deflate import Offer
from .fuzzer import digest

# (payload length, message count, Autobahn's case timeout, auto-fragment size)
MSG_SIZES = [
    (16, 1000, 60, 0), (64, 1000, 60, 0), (256, 1000, 120, 0), (1024, 1000, 240, 0),
    (4096, 1000, 480, 0), (8192, 1000, 480, 0), (16384, 1000, 480, 0), (32768, 1000, 480, 0),
    (65536, 1000, 480, 0), (131072, 1000, 480, 0),
    (8192, 1000, 480, 256), (16384, 1000, 480, 256), (32768, 1000, 480, 256),
    (65536, 1000, 480, 256), (131072, 1000, 480, 256), (131072, 1000, 480, 1024),
    (131072, 1000, 480, 4096), (131072, 1000, 480, 32768),
]
# a case moving more than this many octets each way is marked slow
SLOW_OCTETS = 1000 * 4096


# --- corpora (deterministic) -----------------------------------------------------------

def _json_corpus(size: int = 194056) -> bytes:
    rnd = random.Random(1201)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
    records, total = [], 0
    while total < size:
        rec = {"id": len(records), "name": f"{rnd.choice(words)}-{rnd.randrange(10**6)}",
               "active": rnd.random() < 0.5, "score": round(rnd.uniform(0, 100), 3),
               "tags": rnd.sample(words, 3), "geo": {"lat": round(rnd.uniform(-90, 90), 5),
                                                     "lon": round(rnd.uniform(-180, 180), 5)}}
        records.append(rec)
        total += len(json.dumps(rec)) + 2
    return json.dumps(records, indent=1).encode("ascii")[:size]


def _bitmap_corpus(width: int = 512, height: int = 512) -> bytes:
    """An 8-bit grayscale BMP: a smooth image with noise (like a photo)."""
    rnd = random.Random(1202)
    rows = []
    for y in range(height):
        rows.append(bytes(max(0, min(255, (x * y // 1024 + (x ^ y) // 8 + rnd.randrange(-6, 7))
                                     & 0xFF)) for x in range(width)))
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    pixels = b"".join(reversed(rows))
    offset = 14 + 40 + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, len(pixels), 2835, 2835, 256, 0)
    return header + info + palette + pixels


def _text_corpus(size: int = 222218) -> bytes:
    """German-looking prose with umlauts (sent as binary, as Autobahn does)."""
    rnd = random.Random(1203)
    words = ("der die das und nicht ich ist mir mich sich mit dem den ein eine auch auf so "
             "wie was wenn noch nur schon Faust Mephistopheles Gretchen Geist Welt Herz "
             "Nacht Tag Licht Himmel Erde möchte über für Mädchen schön Gefühl wäre Natur "
             "Wissen Kraft Zeit Teufel Blut Seele Gott können müssen Grüße").split()
    out, total = [], 0
    while total < size:
        line = " ".join(rnd.choice(words) for _ in range(rnd.randrange(4, 12)))
        line = line[0].upper() + line[1:] + rnd.choice([".", ",", "!", "?", ";"]) + "\n"
        out.append(line)
        total += len(line.encode())
    return "".join(out).encode("utf-8")[:size]


def _html_corpus(size: int = 83602) -> bytes:
    rnd = random.Random(1204)
    parts = ["<!DOCTYPE html>\n<html><head><title>Test</title></head><body>\n"]
    total = len(parts[0])
    while total < size:
        n = rnd.randrange(1000)
        item = (f'<div class="item item-{n % 7}" id="i{n}"><a href="/p/{n}">Item {n}</a>'
                f'<span class="price">{rnd.randrange(100)}.{rnd.randrange(100):02d}</span>'
                f'<p>{" ".join(rnd.choice(["lorem", "ipsum", "dolor", "sit", "amet"]) for _ in range(8))}'
                "</p></div>\n")
        parts.append(item)
        total += len(item)
    return "".join(parts).encode("ascii")[:size]


def _pdf_corpus(size: int = 1042328) -> bytes:
    """PDF-like: text objects between incompressible (already deflated) streams."""
    rnd = random.Random(1205)
    out, total, n = [b"%PDF-1.4\n"], 9, 1
    while total < size:
        text = (f"{n} 0 obj\n<< /Type /Page /Parent 2 0 R /Contents {n + 1} 0 R "
                f"/MediaBox [0 0 612 792] >>\nendobj\n").encode()
        stream = rnd.randbytes(rnd.randrange(2000, 20000))
        chunk = text + b"%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n" % (
            n + 1, len(stream)) + stream + b"\nendstream\nendobj\n"
        out.append(chunk)
        total += len(chunk)
        n += 2
    return b"".join(out)[:size]


# Autobahn's 12.1-12.5, in the order its reports list them
CORPORA: list[tuple[str, Callable[[], bytes], bool]] = [
    ("Large JSON data file", _json_corpus, False),
    ("Bitmap 512x512 grayscale", _bitmap_corpus, True),
    ("Human readable text (German)", _text_corpus, True),
    ("Large HTML file", _html_corpus, False),
    ("A larger PDF", _pdf_corpus, True),
]


@functools.lru_cache(maxsize=None)
def corpus(index: int) -> bytes:
    return CORPORA[index][1]()


def messages(data: bytes, size: int, count: int) -> list[bytes]:
    """Autobahn's sendOne: consecutive ``size``-octet slices, wrapping around."""
    out, ptr, n = [], 0, len(data)
    for _ in range(count):
        end = (ptr + size) % n
        out.append(data[ptr:end] if end > ptr else data[ptr:] + data[:end])
        ptr = end
    return out


# Autobahn 13.1-13.7 client offers: (request_no_context_takeover, request_max_window_bits)
DEFLATE_PARAMS: list[list[Offer]] = [
    [Offer()],
    [Offer(request_no_context_takeover=True)],
    [Offer(request_max_window_bits=8)],
    [Offer(request_max_window_bits=15)],
    [Offer(request_no_context_takeover=True, request_max_window_bits=8)],
    [Offer(request_no_context_takeover=True, request_max_window_bits=15)],
    [Offer(request_no_context_takeover=True, request_max_window_bits=8),
     Offer(request_no_context_takeover=True), Offer()],
]


def _may_decline(offers: Sequence[Offer]) -> bool:
    # only an offer zlib cannot honour may be declined; with several offers
    # the server must take one it can
    return all(o.request_max_window_bits == 8 for o in offers)


def _script(corpus_index: int, size: int, count: int, frag: int,
            offers: Sequence[Offer]) -> Script:
    binary = CORPORA[corpus_index][2]
    payloads = messages(corpus(corpus_index), size, count)
    ok = [("message", digest(p), binary) for p in payloads]
    op = OP_BINARY if binary else OP_TEXT
    return Script([CompressedRoundTrips(count, op, payloads.__getitem__, frag)], ok,
                  offers=list(offers), may_decline=_may_decline(offers), digest=True)


def _offers_text(offers: Sequence[Offer]) -> str:
    return ("client offers (requestNoContextTakeover, requestMaxWindowBits): ["
            + ", ".join(o.short() for o in offers) + "]")


DEFLATE_CASES: list[Case] = []
for _j, (_desc, _make, _binary) in enumerate(CORPORA, 1):
    for _i, (_size, _count, _t, _frag) in enumerate(MSG_SIZES, 1):
        DEFLATE_CASES.append(Case(
            f"12.{_j}.{_i}",
            f"{_desc} ({'binary' if _binary else 'utf8'}): send {_count} compressed messages "
            f"each of payload size {_size}, auto-fragment to {_frag} octets; default offer",
            lambda j=_j - 1, s=_size, c=_count, f=_frag: _script(j, s, c, f, [Offer()]),
            slow=_size * _count > SLOW_OCTETS))
for _j, _offers in enumerate(DEFLATE_PARAMS, 1):
    for _i, (_size, _count, _t, _frag) in enumerate(MSG_SIZES, 1):
        DEFLATE_CASES.append(Case(
            f"13.{_j}.{_i}",
            f"Large JSON data file: send {_count} compressed messages each of payload size "
            f"{_size}, auto-fragment to {_frag} octets; {_offers_text(_offers)}",
            lambda o=_offers, s=_size, c=_count, f=_frag: _script(0, s, c, f, o),
            slow=_size * _count > SLOW_OCTETS))

assert len({c.id for c in DEFLATE_CASES}) == len(DEFLATE_CASES) == (5 + 7) * len(MSG_SIZES)


def select_deflate(patterns: Sequence[str] | None = None, *, include_slow: bool = True) -> list[Case]:
    chosen = []
    for c in DEFLATE_CASES:
        if not include_slow and c.slow:
            continue
        if patterns and not any(c.id == p or c.id.startswith(p.rstrip(".") + ".")
                                for p in patterns):
            continue
        chosen.append(c)
    return chosen
