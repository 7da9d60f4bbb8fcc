"""The frame codec, run case by case on both implementations.

Every test takes the ``codec`` fixture: the Cython module and its pure-Python
twin must pass exactly the same cases (websockets' SpeedupsTests pattern).
"""
from __future__ import annotations

import os

import pytest

from fastsock import _frame_py
from fastsock.exceptions import FrameError, InvalidUTF8Error, MessageTooBigError, ProtocolError

try:
    from fastsock import _frame as _frame_c
except ImportError:  # the extension is not built (FASTSOCK_NO_EXT=1)
    _frame_c = None

IMPLS = [pytest.param(_frame_py, id="python"),
         pytest.param(_frame_c, id="cython", marks=pytest.mark.skipif(
             _frame_c is None, reason="fastsock._frame is not built"))]


@pytest.fixture(params=IMPLS)
def codec(request):
    return request.param


def naive_mask(data: bytes, key: bytes, phase: int = 0) -> bytes:
    return bytes(b ^ key[(i + phase) % 4] for i, b in enumerate(data))


def header(opcode, length, *, fin=True, rsv=0, key=None):
    """Hand-made header bytes (so malformed ones can be written too)."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if key is not None else 0
    if length < 126:
        h = bytes((b0, m | length))
    elif length < 65536:
        h = bytes((b0, m | 126)) + length.to_bytes(2, "big")
    else:
        h = bytes((b0, m | 127)) + length.to_bytes(8, "big")
    return h + (key or b"")


def raw(opcode, payload=b"", *, fin=True, rsv=0, key=None):
    body = naive_mask(payload, key) if key is not None else payload
    return header(opcode, len(payload), fin=fin, rsv=rsv, key=key) + body


def fields(frames):
    return [(f.fin, f.rsv, f.opcode, f.payload) for f in frames]


def feed_all(parser, data, step):
    out = []
    for i in range(0, len(data), step):
        out += parser.feed(data[i:i + step])
    return out


KEY = b"\x37\xfa\x21\x3d"


# --- RFC 6455 §5.7 ----------------------------------------------------------

RFC_EXAMPLES = [
    # (bytes on the wire, masked, [(fin, rsv, opcode, payload)])
    (b"\x81\x05\x48\x65\x6c\x6c\x6f", False, [(True, 0, 1, b"Hello")]),
    (b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", True, [(True, 0, 1, b"Hello")]),
    (b"\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f", False,
     [(False, 0, 1, b"Hel"), (True, 0, 0, b"lo")]),
    (b"\x89\x05\x48\x65\x6c\x6c\x6f", False, [(True, 0, 9, b"Hello")]),
    (b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", True, [(True, 0, 10, b"Hello")]),
    (b"\x82\x7E\x01\x00" + bytes(range(256)), False, [(True, 0, 2, bytes(range(256)))]),
    (b"\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00" + bytes(65536), False,
     [(True, 0, 2, bytes(65536))]),
]


@pytest.mark.parametrize("wire,masked,expected", RFC_EXAMPLES)
@pytest.mark.parametrize("step", [1, 3, 1 << 20])
def test_rfc_examples_parse(codec, wire, masked, expected, step):
    if step == 1 and len(wire) > 1000:
        step = 777
    parser = codec.FrameParser(require_mask=masked)
    assert fields(feed_all(parser, wire, step)) == expected
    assert parser.error is None


@pytest.mark.parametrize("wire,masked,expected", RFC_EXAMPLES)
def test_rfc_examples_build(codec, wire, masked, expected):
    if masked:
        # The key is random: build, then re-mask the RFC payload with its key.
        for fin, rsv, opcode, payload in expected:
            frame = codec.build_frame(opcode, payload, fin=fin, rsv=rsv, mask=True)
            key = frame[2:6]
            assert frame[:2] == wire[:2]
            assert codec.apply_mask(frame[6:], key) == payload
        assert codec.apply_mask(b"Hello", KEY) == wire[6:]
    else:
        built = b"".join(codec.build_frame(op, p, fin=fin, rsv=rsv)
                         for fin, rsv, op, p in expected)
        assert built == wire


def test_payload_is_bytes_and_frame_is_read_only(codec):
    frame = codec.FrameParser(require_mask=False).feed(bytearray(b"\x82\x02ab"))[0]
    assert type(frame.payload) is bytes
    assert frame.fin is True
    for name, value in [("fin", False), ("rsv", 0), ("opcode", 1), ("payload", b"")]:
        with pytest.raises(AttributeError):
            setattr(frame, name, value)


def test_frame_constructor(codec):
    frame = codec.Frame(codec.OP_TEXT, b"hi", fin=False, rsv=codec.RSV1)
    assert (frame.fin, frame.rsv, frame.opcode, frame.payload) == (False, 0x40, 1, b"hi")
    assert "opcode=1" in repr(frame)
    with pytest.raises(TypeError):
        codec.Frame(codec.OP_TEXT, bytearray(b"hi"))


def test_constants(codec):
    assert (codec.OP_CONTINUATION, codec.OP_TEXT, codec.OP_BINARY, codec.OP_CLOSE,
            codec.OP_PING, codec.OP_PONG) == (0, 1, 2, 8, 9, 10)
    assert (codec.RSV1, codec.RSV2, codec.RSV3) == (0x40, 0x20, 0x10)


# --- lengths and chunking ---------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 125, 126, 127, 65535, 65536, 65537, 200_003])
@pytest.mark.parametrize("masked", [False, True])
def test_length_boundaries_round_trip(codec, n, masked):
    payload = os.urandom(n)
    wire = codec.build_frame(codec.OP_BINARY, payload, mask=masked)
    expected_header = 2 + (4 if masked else 0) + (0 if n < 126 else 2 if n < 65536 else 8)
    assert len(wire) == expected_header + n
    for step in {1 if n < 300 else 4093, 13, 65536, len(wire) or 1}:
        parser = codec.FrameParser(require_mask=masked)
        assert fields(feed_all(parser, wire, step)) == [(True, 0, 2, payload)]


@pytest.mark.parametrize("encoded", [
    b"\x82\x7e\x00\x05", b"\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x05"])
def test_non_minimal_length_is_accepted(codec, encoded):
    assert fields(codec.FrameParser(require_mask=False).feed(encoded + b"hello")) == [
        (True, 0, 2, b"hello")]


def test_many_frames_in_one_chunk_and_split_headers(codec):
    frames = [(i % 3 != 0, 0, 2 if i % 3 == 1 else 0, os.urandom(i * 7)) for i in range(1, 40)]
    # a valid sequence: start a message, continue it, finish it, repeat
    seq, open_ = [], False
    for fin, rsv, op, payload in frames:
        op = 0 if open_ else 2
        seq.append((fin, rsv, op, payload))
        open_ = not fin
    wire = b"".join(raw(op, p, fin=fin, key=os.urandom(4)) for fin, _, op, p in seq)
    for step in (1, 2, 5, 14, 15, 100, len(wire)):
        parser = codec.FrameParser(require_mask=True)
        assert fields(feed_all(parser, wire, step)) == seq


def test_feed_accepts_any_bytes_like(codec):
    wire = raw(2, b"abcdef", key=KEY)
    for data in (wire, bytearray(wire), memoryview(wire), memoryview(wire * 2)[::2][:0]):
        parser = codec.FrameParser(require_mask=True)
        out = parser.feed(data)
        assert fields(out) == ([(True, 0, 2, b"abcdef")] if len(data) else [])
    # a non-contiguous view is read correctly
    doubled = bytes(b for b in wire for _ in range(2))
    assert fields(codec.FrameParser(require_mask=True).feed(memoryview(doubled)[::2])) == [
        (True, 0, 2, b"abcdef")]
    with pytest.raises(TypeError):
        codec.FrameParser(require_mask=True).feed("text")
    # and after a partial header, too
    parser = codec.FrameParser(require_mask=True)
    assert parser.feed(wire[:3]) == []
    assert fields(parser.feed(memoryview(doubled[6:])[::2])) == [(True, 0, 2, b"abcdef")]


def test_control_frames_between_fragments(codec):
    wire = (raw(1, b"He", fin=False) + raw(9, b"p") + raw(0, b"ll", fin=False)
            + raw(10, b"") + raw(8, b"\x03\xe8") + raw(0, b"o"))
    out = codec.FrameParser(require_mask=False).feed(wire)
    assert fields(out) == [(False, 0, 1, b"He"), (True, 0, 9, b"p"), (False, 0, 0, b"ll"),
                           (True, 0, 10, b""), (True, 0, 8, b"\x03\xe8"), (True, 0, 0, b"o")]


# --- protocol violations ----------------------------------------------------

GOOD = raw(2, b"ok")

VIOLATIONS = [
    # (id, parser kwargs, bad bytes, error class, code)
    ("rsv1", {}, raw(2, b"x", rsv=0x40), FrameError, 1002),
    ("rsv2", {"allowed_rsv": 0x40}, raw(2, b"x", rsv=0x20), FrameError, 1002),
    ("rsv3", {"allowed_rsv": 0x60}, raw(2, b"x", rsv=0x10), FrameError, 1002),
    *[(f"opcode{op}", {}, raw(op, b"x"), FrameError, 1002) for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)],
    ("close-126", {}, header(8, 126) + bytes(126), FrameError, 1002),
    ("ping-127-marker", {}, b"\x89\x7f" + (200).to_bytes(8, "big") + bytes(200), FrameError, 1002),
    ("pong-126-marker", {}, b"\x8a\x7e\x00\x10" + bytes(16), FrameError, 1002),
    ("ping-not-fin", {}, raw(9, b"x", fin=False), FrameError, 1002),
    ("close-not-fin", {}, raw(8, b"", fin=False), FrameError, 1002),
    ("top-bit-length", {}, b"\x82\x7f\x80" + bytes(7), FrameError, 1002),
    ("continuation-first", {}, raw(0, b"x"), FrameError, 1002),
    ("text-inside-fragmented", {}, raw(2, b"a", fin=False) + raw(1, b"b"), FrameError, 1002),
    ("binary-inside-fragmented", {}, raw(1, b"a", fin=False) + raw(2, b"b"), FrameError, 1002),
    ("frame-too-big", {"max_frame_size": 10}, raw(2, bytes(11)), MessageTooBigError, 1009),
    ("message-too-big", {"max_message_size": 10},
     raw(2, bytes(6), fin=False) + raw(0, bytes(5)), MessageTooBigError, 1009),
    ("bad-utf8", {}, raw(1, b"\xff"), InvalidUTF8Error, 1007),
    ("truncated-utf8", {}, raw(1, b"\xce"), InvalidUTF8Error, 1007),
]


@pytest.mark.parametrize("kwargs,bad,exc,code", [v[1:] for v in VIOLATIONS],
                         ids=[v[0] for v in VIOLATIONS])
@pytest.mark.parametrize("step", [1, 1 << 20])
def test_violation_returns_earlier_frames_then_fails(codec, kwargs, bad, exc, code, step):
    parser = codec.FrameParser(require_mask=False, **kwargs)
    wire = GOOD + GOOD + bad + GOOD
    out = []
    for i in range(0, len(wire), step):
        out += parser.feed(wire[i:i + step])
        if parser.error is not None:
            break
    frames = fields(out)
    # what precedes the bad frame comes out, nothing after it
    assert frames[:2] == [(True, 0, 2, b"ok")] * 2
    assert (True, 0, 2, b"ok") not in frames[2:] or len(frames) < 4
    assert type(parser.error) is exc
    assert parser.error.close_code == code
    assert str(parser.error).startswith("peer ")
    with pytest.raises(exc) as info:
        parser.feed(GOOD)
    assert info.value is parser.error


@pytest.mark.parametrize("require_mask", [True, False])
def test_masking_rule(codec, require_mask):
    wrong = raw(2, b"x") if require_mask else raw(2, b"x", key=KEY)
    right = raw(2, b"x", key=KEY) if require_mask else raw(2, b"x")
    parser = codec.FrameParser(require_mask=require_mask)
    assert fields(parser.feed(right + wrong + right)) == [(True, 0, 2, b"x")]
    assert isinstance(parser.error, FrameError) and parser.error.close_code == 1002
    assert "unmasked" in str(parser.error) if require_mask else "masked" in str(parser.error)


def test_size_limits_fail_before_payload_arrives(codec):
    parser = codec.FrameParser(require_mask=True, max_frame_size=1000)
    # header only: a 2**40-byte frame is refused from its 14 header bytes
    assert parser.feed(b"\x82\xff" + (2**40).to_bytes(8, "big") + KEY) == []
    assert isinstance(parser.error, MessageTooBigError)
    assert parser.error.close_code == 1009
    parser = codec.FrameParser(require_mask=False, max_message_size=100)
    assert fields(parser.feed(raw(1, b"a" * 60, fin=False))) == [(False, 0, 1, b"a" * 60)]
    assert parser.feed(header(0, 41)) == []
    assert isinstance(parser.error, MessageTooBigError)


def test_size_limits_exact_and_control_frames_do_not_count(codec):
    parser = codec.FrameParser(require_mask=False, max_frame_size=10, max_message_size=15)
    wire = (raw(2, bytes(10), fin=False) + raw(9, bytes(10)) + raw(0, bytes(5))
            + raw(2, bytes(10)))
    assert len(parser.feed(wire)) == 4 and parser.error is None
    with pytest.raises(ValueError):
        codec.FrameParser(require_mask=False, max_frame_size=-1)
    with pytest.raises(ValueError):
        codec.FrameParser(require_mask=False, allowed_rsv=0x80)


def test_allowed_rsv_passes_bits_through(codec):
    parser = codec.FrameParser(require_mask=False, allowed_rsv=0x70)
    out = parser.feed(raw(2, b"z", rsv=0x70) + raw(1, b"\xff", rsv=0x40))
    # RSV1 text (compressed) is not UTF-8 checked by the parser
    assert fields(out) == [(True, 0x70, 2, b"z"), (True, 0x40, 1, b"\xff")]
    assert parser.error is None


def test_compressed_message_continuations_are_not_utf8_checked(codec):
    parser = codec.FrameParser(require_mask=False, allowed_rsv=0x40)
    out = parser.feed(raw(1, b"\xff", rsv=0x40, fin=False) + raw(0, b"\xfe"))
    assert len(out) == 2 and parser.error is None


def test_validate_utf8_off_and_binary_not_checked(codec):
    parser = codec.FrameParser(require_mask=False, validate_utf8=False)
    assert len(parser.feed(raw(1, b"\xff\xfe") + raw(2, b"\xff"))) == 2
    parser = codec.FrameParser(require_mask=False)
    assert len(parser.feed(raw(2, b"\xff", fin=False) + raw(0, b"\xc0"))) == 2


def test_partial_64bit_header_with_top_bit_fails_early(codec):
    parser = codec.FrameParser(require_mask=False)
    assert parser.feed(b"\x82\x7f") == [] and parser.error is None
    assert parser.feed(b"\x80") == []
    assert isinstance(parser.error, FrameError)


def test_error_is_a_protocol_error(codec):
    parser = codec.FrameParser(require_mask=False)
    parser.feed(b"\x83\x00")
    assert isinstance(parser.error, ProtocolError)


# --- UTF-8 ------------------------------------------------------------------

VALID_TEXT = [
    "", "\x00", "\x7f", "\x80", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\ufffd", "\uffff",
    "\U00010000", "\U0010ffff", "κόσμε", "Hello-µ@ßöäüàá-UTF-8!!", "a" * 37 + "€" + "b" * 20,
]

# (bytes, index of the first byte that makes the prefix impossible)
INVALID_UTF8 = [
    (b"\x80", 0), (b"\xbf", 0), (b"\xc0\xaf", 0), (b"\xc1\xbf", 0),             # overlong / lone cont.
    (b"\xe0\x80\xaf", 1), (b"\xe0\x9f\xbf", 1), (b"\xf0\x80\x80\xaf", 1),
    (b"\xf0\x8f\xbf\xbf", 1),                                                  # overlong 3/4-byte
    (b"\xed\xa0\x80", 1), (b"\xed\xbf\xbf", 1), (b"\xed\xad\xbf\xed\xb0\x80", 1),  # surrogates
    (b"\xf4\x90\x80\x80", 1), (b"\xf5\x80\x80\x80", 0), (b"\xf7\xbf\xbf\xbf", 0),
    (b"\xf8\x88\x80\x80\x80", 0), (b"\xfe", 0), (b"\xff", 0),                 # > U+10FFFF
    (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", 12),     # Autobahn 6.4.x
    (b"\xc2\x41", 1), (b"\xe1\x80\x41", 2), (b"\xf1\x80\x80\x41", 3),          # cut short
    (b"abc\xf4\x8f\xbf\xc0", 6),
]


@pytest.mark.parametrize("text", VALID_TEXT)
def test_valid_utf8_split_everywhere(codec, text):
    data = text.encode()
    assert codec.validate_utf8(data)
    for cut in range(len(data) + 1):
        # across fragments
        wire = raw(1, data[:cut], fin=False) + raw(0, data[cut:])
        parser = codec.FrameParser(require_mask=False)
        assert b"".join(f.payload for f in parser.feed(wire)) == data
        assert parser.error is None
        # across feeds inside one masked frame
        wire = raw(1, data, key=KEY)
        parser = codec.FrameParser(require_mask=True)
        hlen = 6 if len(data) < 126 else 8
        out = parser.feed(wire[:hlen + cut]) + parser.feed(wire[hlen + cut:])
        assert fields(out) == [(True, 0, 1, data)] and parser.error is None
        v = codec.Utf8Validator()
        assert v.feed(data[:cut]) and v.feed(data[cut:]) and v.finish()


@pytest.mark.parametrize("data,bad", INVALID_UTF8)
def test_invalid_utf8_fails_at_first_bad_byte(codec, data, bad):
    assert not codec.validate_utf8(data)
    v = codec.Utf8Validator()
    assert v.feed(data[:bad])
    assert not v.feed(data[bad:bad + 1])
    assert not v.feed(b"a") and not v.finish()      # sticky until reset
    v.reset()
    assert v.feed(b"ok") and v.finish()
    # Inside a partly received frame: the header promises more bytes than are
    # sent; the parser must fail as soon as the bad byte arrives.
    wire = header(1, len(data) + 100, key=KEY) + naive_mask(data + bytes(100), KEY)
    parser = codec.FrameParser(require_mask=True)
    head = len(wire) - len(data) - 100
    assert parser.feed(wire[:head + bad]) == [] and parser.error is None
    assert parser.feed(wire[head + bad:head + bad + 1]) == []
    assert isinstance(parser.error, InvalidUTF8Error) and parser.error.close_code == 1007
    # The same prefix split over fragments
    parser = codec.FrameParser(require_mask=False)
    wire = raw(1, data[:bad], fin=False) + raw(0, data[bad:], fin=False)
    assert fields(parser.feed(wire)) == [(False, 0, 1, data[:bad])]
    assert isinstance(parser.error, InvalidUTF8Error)


@pytest.mark.parametrize("data", [b"\xce", b"\xe2\x82", b"\xf0\x9f\x98", b"ok\xf4\x8f\xbf"])
def test_truncated_utf8_at_message_end(codec, data):
    v = codec.Utf8Validator()
    assert v.feed(data) and not v.finish()
    assert not codec.validate_utf8(data)
    parser = codec.FrameParser(require_mask=False)
    # incomplete at a fragment boundary is fine...
    assert len(parser.feed(raw(1, data, fin=False))) == 1 and parser.error is None
    # ...but not at the end of the message
    assert parser.feed(raw(0, b"")) == []
    assert isinstance(parser.error, InvalidUTF8Error)


def test_utf8_error_in_large_frame_is_found_in_the_chunk_that_carries_it(codec):
    data = ("€" * 30000).encode()[:70001] + b"\xff" + b"a" * 30000
    wire = raw(1, data, key=KEY)
    parser = codec.FrameParser(require_mask=True)
    fed = 0
    while parser.error is None and fed < len(wire):
        assert parser.feed(wire[fed:fed + 4096]) == []
        fed += 4096
    assert isinstance(parser.error, InvalidUTF8Error)
    bad_at = len(wire) - len(data) + 70001        # position of the 0xff byte
    assert fed - 4096 <= bad_at < fed


def test_utf8_inputs(codec):
    assert codec.validate_utf8(bytearray("ü".encode()))
    assert codec.validate_utf8(memoryview(b"abc"))
    with pytest.raises(TypeError):
        codec.validate_utf8("abc")


# --- masking ----------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 125, 1024, 65537])
def test_apply_mask_matches_naive(codec, n):
    data = os.urandom(n)
    key = os.urandom(4)
    expected = naive_mask(data, key)
    for d in (data, bytearray(data), memoryview(data)):
        out = codec.apply_mask(d, key)
        assert type(out) is bytes and out == expected
    assert codec.apply_mask(data, bytearray(key)) == expected


def test_apply_mask_every_length_and_source_offset(codec):
    # the out-of-place kernel: 64-byte vector blocks, 8-byte words, then bytes;
    # sources at every offset mod 16 (bytes objects are 16-byte aligned)
    base = os.urandom(70000 + 16)
    key = b"\x9d\x01\xf0\x7e"
    sizes = list(range(0, 200)) + [255, 256, 257, 4095, 4096, 4097, 65535, 65536, 65537]
    for n in sizes:
        for off in (0, 1, 5, 8, 15):
            data = base[off:off + n]
            assert codec.apply_mask(memoryview(base)[off:off + n], key) == naive_mask(data, key), (n, off)


def test_apply_mask_unaligned_and_non_contiguous(codec):
    data = os.urandom(100)
    for off in range(1, 9):
        assert codec.apply_mask(memoryview(data)[off:], KEY) == naive_mask(data[off:], KEY)
    assert codec.apply_mask(memoryview(data)[::2], KEY) == naive_mask(data[::2], KEY)


def test_apply_mask_errors(codec):
    for bad in (b"", b"abc", b"abcde"):
        with pytest.raises(ValueError, match="4 bytes"):
            codec.apply_mask(b"data", bad)
    with pytest.raises(TypeError):
        codec.apply_mask("text", KEY)
    with pytest.raises(TypeError):
        codec.apply_mask(b"data", "abcd")


def test_apply_mask_agrees_with_websockets(codec):
    from websockets.utils import apply_mask as ws_apply_mask
    for n in (0, 5, 64, 1000):
        data = os.urandom(n)
        assert codec.apply_mask(data, KEY) == ws_apply_mask(data, KEY)


@pytest.mark.parametrize("split", [[1, 2, 3, 50], [7, 7, 7, 7, 7], [0, 5, 0, 16, 100], [1] * 20])
def test_mask_inplace_phase_carries_across_chunks(codec, split):
    data = os.urandom(sum(split))
    buf = bytearray(data)
    phase, pos = 0, 0
    for n in split:
        chunk = memoryview(buf)[pos:pos + n]
        phase = codec.mask_inplace(chunk, KEY, phase)
        pos += n
        assert phase == pos % 4
    assert bytes(buf) == naive_mask(data, KEY)


def test_mask_inplace_errors(codec):
    with pytest.raises(TypeError):
        codec.mask_inplace(b"read-only", KEY)
    with pytest.raises(TypeError):
        codec.mask_inplace(memoryview(bytearray(8))[::2], KEY)
    with pytest.raises(TypeError):
        codec.mask_inplace("str", KEY)
    with pytest.raises(ValueError):
        codec.mask_inplace(bytearray(4), KEY, 4)
    with pytest.raises(ValueError):
        codec.mask_inplace(bytearray(4), b"abc")
    buf = bytearray(b"abcd")
    assert codec.mask_inplace(buf, KEY, 2) == 2 and bytes(buf) == naive_mask(b"abcd", KEY, 2)


# --- building ---------------------------------------------------------------

def test_build_frame_headers(codec):
    assert codec.build_frame(1, b"a", fin=False) == b"\x01\x01a"
    assert codec.build_frame(0, b"", rsv=0x40 | 0x10) == b"\xd0\x00"
    assert codec.build_frame(2, bytearray(b"xy")) == b"\x82\x02xy"
    assert codec.build_frame(2, memoryview(b"xyz")[1:]) == b"\x82\x02yz"
    assert codec.build_frame(9) == b"\x89\x00"
    assert codec.build_frame(8, bytes(125))[:2] == b"\x88\x7d"
    masked = codec.build_frame(1, b"Hello", mask=True)
    assert masked[:2] == b"\x81\x85" and len(masked) == 11
    assert codec.apply_mask(masked[6:], masked[2:6]) == b"Hello"


def test_build_frame_errors(codec):
    for op in (3, 7, 11, 15, 16, -1):
        with pytest.raises(ValueError):
            codec.build_frame(op, b"")
    with pytest.raises(ValueError):
        codec.build_frame(9, bytes(126))
    with pytest.raises(ValueError):
        codec.build_frame(8, b"", fin=False)
    with pytest.raises(ValueError):
        codec.build_frame(2, b"", rsv=0x80)
    with pytest.raises(TypeError):
        codec.build_frame(1, "text")


def test_masking_keys_come_from_batched_urandom(codec, monkeypatch):
    calls = []

    def fake_urandom(n):
        calls.append(n)
        return bytes(i % 251 for i in range(n))

    monkeypatch.setattr(codec, "_urandom", fake_urandom)
    keys = [codec.build_frame(2, b"x", mask=True)[2:6] for _ in range(3000)]
    assert 1 <= len(calls) <= 3 and all(n >= 1024 for n in calls)
    # Past what was left of the previous pool (< 1024 keys), every key is a
    # slice of what urandom returned, and they vary.
    pool = fake_urandom(4096)
    assert sum(k in pool for k in keys) >= 3000 - 1024 and len(set(keys)) > 100
    # Leave no predictable keys behind for later tests in this process.
    monkeypatch.undo()
    for _ in range(1024):
        codec.build_frame(2, b"", mask=True)


def test_masked_keys_differ(codec):
    keys = {codec.build_frame(2, b"", mask=True)[2:6] for _ in range(200)}
    assert len(keys) > 190


@pytest.mark.skipif(_frame_c is None, reason="fastsock._frame is not built")
def test_portable_mask_kernel_matches():
    """The baseline kernel (chosen on CPUs without AVX2) gives the same bytes."""
    import subprocess
    import sys

    code = """
import os
from fastsock import _frame
assert _frame.MASK_KERNEL in ("sse2", "u64"), _frame.MASK_KERNEL
key = b"\\x01\\x82\\x43\\xc4"
for n in (0, 7, 8, 255, 256, 257, 1000, 4099, 70001):
    data = os.urandom(n)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert _frame.apply_mask(data, key) == expected, n
    buf = bytearray(data)
    assert _frame.mask_inplace(memoryview(buf)[1:], key, 3) == (3 + max(n - 1, 0)) % 4
    assert bytes(buf[1:]) == bytes(b ^ key[(i + 3) % 4] for i, b in enumerate(data[1:]))
    frame = _frame.build_frame(2, data, mask=True)
    assert _frame.FrameParser(require_mask=True).feed(frame)[0].payload == data
    assert _frame.FrameParser(require_mask=False).feed(_frame.build_frame(2, data))[0].payload == data
print("ok")
"""
    env = {**os.environ, "FASTSOCK_MASK_KERNEL": "baseline"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(_frame_c is None, reason="fastsock._frame is not built")
def test_the_ascii_check_holds_on_the_baseline_kernel():
    """The text fast lane learns "all ASCII" from whichever unmasking kernel
    runs: the ASCII/invalid-byte position test again, on SSE2 (or u64)."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    env = {**os.environ, "FASTSOCK_MASK_KERNEL": "baseline"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_websocket_protocol.py", "-k", "ascii_checked_at_every_position"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "12 passed" in out.stdout


def test_apply_mask_large_at_every_source_distance(codec):
    # The out-of-place kernel (sizes from FS_MASK_OUT_MIN, 24 KiB) with its
    # fresh output at 64 distances from the source within a page, and the
    # block/word/byte tails of each size.
    base = os.urandom(4096 + 70000)
    key = b"\x37\xfa\x21\x3d"
    for n in (24576, 24577, 24639, 65536 + 63, 65536 + 7):
        for off in range(0, 4096, 64):
            data = memoryview(base)[off:off + n]
            assert codec.apply_mask(data, key) == naive_mask(bytes(data), key), (n, off)
