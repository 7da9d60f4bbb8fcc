"""Property tests for the frame codec (hypothesis).

Round trips and chunking run on both implementations; the agreement tests
feed the same random (valid and invalid) streams to the Cython module and to
the pure-Python twin and require identical frames, errors and timing.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastsock import _frame_py

try:
    from fastsock import _frame as _frame_c
except ImportError:
    _frame_c = None

IMPLS = [pytest.param(_frame_py, id="python"),
         pytest.param(_frame_c, id="cython", marks=pytest.mark.skipif(
             _frame_c is None, reason="fastsock._frame is not built"))]
needs_c = pytest.mark.skipif(_frame_c is None, reason="fastsock._frame is not built")

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def messages(draw):
    """A valid frame sequence: fragmented data messages with control frames between."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        opcode = draw(st.sampled_from([1, 2]))
        parts = draw(st.integers(1, 4))
        for i in range(parts):
            if opcode == 1:
                text = draw(st.text(max_size=40))
                payload = text.encode()
            else:
                payload = draw(st.binary(max_size=300))
            out.append((i == parts - 1, 0, opcode if i == 0 else 0, payload))
            if draw(st.booleans()):
                out.append((True, 0, draw(st.sampled_from([8, 9, 10])),
                            draw(st.binary(max_size=125))))
    return out


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


def run(parser, chunks):
    """Per-feed results, stopping at the first error; comparable across impls."""
    trace = []
    for chunk in chunks:
        try:
            frames = parser.feed(chunk)
        except Exception as exc:  # a feed after the error: must re-raise it
            trace.append(("raised", type(exc).__name__, str(exc)))
            break
        trace.append([(f.fin, f.rsv, f.opcode, f.payload) for f in frames])
        if parser.error is not None:
            err = parser.error
            trace.append(("error", type(err).__name__, err.close_code, str(err)))
            break
    return trace


@pytest.mark.parametrize("codec", IMPLS)
@SETTINGS
@given(seq=messages(), mask=st.booleans(), points=st.lists(st.integers(0, 10**6), max_size=12))
def test_build_parse_round_trip_any_chunking(codec, seq, mask, points):
    wire = b"".join(codec.build_frame(op, p, fin=fin, rsv=rsv, mask=mask)
                    for fin, rsv, op, p in seq)
    parser = codec.FrameParser(require_mask=mask)
    out = []
    for chunk in cut(wire, points):
        out += parser.feed(chunk)
    assert parser.error is None
    assert [(f.fin, f.rsv, f.opcode, f.payload) for f in out] == seq


@pytest.mark.parametrize("codec", IMPLS)
@SETTINGS
@given(payload=st.binary(max_size=70000), key=st.binary(min_size=4, max_size=4),
       points=st.lists(st.integers(0, 10**6), max_size=8))
def test_mask_inplace_chunks_equal_apply_mask(codec, payload, key, points):
    buf = bytearray(payload)
    phase, pos = 0, 0
    for chunk in cut(payload, points):
        phase = codec.mask_inplace(memoryview(buf)[pos:pos + len(chunk)], key, phase)
        pos += len(chunk)
    assert bytes(buf) == codec.apply_mask(payload, key)
    assert codec.apply_mask(bytes(buf), key) == payload


# --- the two implementations agree ------------------------------------------

parser_configs = st.fixed_dictionaries({
    "max_frame_size": st.sampled_from([2**63 - 1, 2**63 - 1, 2**63 - 1, 0, 5, 125, 300]),
    "max_message_size": st.sampled_from([2**63 - 1, 2**63 - 1, 10, 400]),
    "allowed_rsv": st.sampled_from([0, 0x40, 0x70]),
    "validate_utf8": st.booleans(),
})


def encode(draw, fin, rsv, opcode, payload, mask):
    """One frame with a random (possibly non-minimal) length encoding."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    # control frames: a 126/127 length marker is itself a violation, so rarely
    enc = draw(st.sampled_from(["min"] * (12 if opcode >= 8 else 2) + ["16", "64"]))
    m = 0x80 if mask else 0
    if enc == "min" and n < 126:
        head = bytes((b0, m | n))
    elif enc in ("min", "16") and n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if mask:
        key = draw(st.binary(min_size=4, max_size=4))
        return head + key + _frame_py.apply_mask(payload, key)
    return head + payload


@st.composite
def noisy_streams(draw):
    """Valid message sequences, sometimes with broken text and one corruption."""
    mask = draw(st.booleans())
    frames = []
    for fin, rsv, opcode, payload in draw(messages()):
        if opcode in (0, 1) and payload and draw(st.integers(0, 7)) == 0:
            i = draw(st.integers(0, len(payload) - 1))   # maybe invalid UTF-8 now
            payload = payload[:i] + bytes([draw(st.integers(0x80, 0xFF))]) + payload[i + 1:]
        if draw(st.integers(0, 15)) == 0:
            rsv = draw(st.sampled_from([0x40, 0x20, 0x10, 0x70]))
        frames.append(bytearray(encode(draw, fin, rsv, opcode, payload, mask)))
    how = draw(st.sampled_from(["none", "none", "flip", "header", "junk", "mask"]))
    i = draw(st.integers(0, len(frames) - 1))
    frame = frames[i]
    if how == "flip":
        j = draw(st.integers(0, len(frame) - 1))
        frame[j] ^= 1 << draw(st.integers(0, 7))
    elif how == "header":
        frame[draw(st.integers(0, 1))] = draw(st.integers(0, 255))
    elif how == "junk":
        frames.insert(i, bytearray(draw(st.binary(min_size=1, max_size=12))))
    elif how == "mask":
        frame[1] ^= 0x80
    return mask, b"".join(frames)


@needs_c
@SETTINGS
@given(config=parser_configs, stream=noisy_streams(),
       points=st.lists(st.integers(0, 10**6), max_size=10))
def test_implementations_agree_on_noisy_streams(config, stream, points):
    mask, stream = stream
    config = {**config, "require_mask": mask}
    chunks = cut(stream, points) + [b"\x82\x00"]   # one more feed: must raise if broken
    a = run(_frame_c.FrameParser(**config), chunks)
    b = run(_frame_py.FrameParser(**config), chunks)
    assert a == b


@needs_c
@SETTINGS
@given(config=parser_configs, stream=st.binary(max_size=400),
       points=st.lists(st.integers(0, 10**6), max_size=10))
def test_implementations_agree_on_random_bytes(config, stream, points):
    config = {**config, "require_mask": bool(stream) and stream[-1] & 1}
    chunks = cut(stream, points)
    assert run(_frame_c.FrameParser(**config), chunks) == run(_frame_py.FrameParser(**config), chunks)


@needs_c
@SETTINGS
@given(seq=messages(), mask=st.booleans(), points=st.lists(st.integers(0, 10**6), max_size=12))
def test_implementations_agree_on_valid_streams(seq, mask, points):
    wire = b"".join(_frame_py.build_frame(op, p, fin=fin, rsv=rsv, mask=mask)
                    for fin, rsv, op, p in seq)
    chunks = cut(wire, points)
    a = run(_frame_c.FrameParser(require_mask=mask), chunks)
    assert a == run(_frame_py.FrameParser(require_mask=mask), chunks)
    assert not any(isinstance(x, tuple) for x in a)


# --- UTF-8 against an independent oracle ------------------------------------

_CONT = bytes([0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF])


def prefix_can_be_valid(data: bytes) -> bool:
    """Brute force: can some 0-3 more bytes make ``data`` valid UTF-8?"""
    for k in range(4):
        for tail in itertools.product(_CONT, repeat=k):
            try:
                (data + bytes(tail)).decode("utf-8")
                return True
            except UnicodeDecodeError:
                pass
    return False


utf8ish = st.one_of(
    st.binary(max_size=12),
    st.text(max_size=6).map(str.encode),
    st.lists(st.sampled_from([b"\xed", b"\xa0", b"\x80", b"\xbf", b"\xf4", b"\x90", b"\x8f",
                              b"\xe0", b"\xf0", b"\xc2", b"\xc0", b"a", b"\xef\xbf\xbf",
                              b"\xf5", b"\xff"]), max_size=6).map(b"".join),
)


@pytest.mark.parametrize("codec", IMPLS)
@SETTINGS
@given(data=utf8ish)
def test_utf8_fails_exactly_when_prefix_is_impossible(codec, data):
    v = codec.Utf8Validator()
    ok = True
    for i in range(len(data)):
        ok = v.feed(data[i:i + 1])
        assert ok == prefix_can_be_valid(data[:i + 1])
        if not ok:
            break
    expected_complete = True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        expected_complete = False
    assert codec.validate_utf8(data) == expected_complete
    if ok:
        assert v.finish() == expected_complete


@needs_c
@SETTINGS
@given(data=st.binary(max_size=64), points=st.lists(st.integers(0, 100), max_size=5))
def test_utf8_validators_agree(data, points):
    a, b = _frame_c.Utf8Validator(), _frame_py.Utf8Validator()
    for chunk in cut(data, points):
        assert a.feed(chunk) == b.feed(chunk)
    assert a.finish() == b.finish()
    assert _frame_c.validate_utf8(data) == _frame_py.validate_utf8(data)


@needs_c
@SETTINGS
@given(data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4),
       opcode=st.sampled_from([0, 1, 2, 8, 9, 10]), fin=st.booleans(),
       rsv=st.sampled_from([0, 0x40, 0x70]))
def test_builders_agree_unmasked(data, key, opcode, fin, rsv):
    assume(opcode < 8 or (len(data) <= 125 and fin))
    assert _frame_c.build_frame(opcode, data, fin=fin, rsv=rsv) == \
        _frame_py.build_frame(opcode, data, fin=fin, rsv=rsv)
    assert _frame_c.apply_mask(data, key) == _frame_py.apply_mask(data, key)


@st.composite
def mutated_text(draw):
    data = bytearray(draw(st.text(min_size=1, max_size=40)).encode())
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.sampled_from([0x80, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0,
                                        0xF4, 0xF5, 0xFF, draw(st.integers(0, 255))]))
    return bytes(data)


@pytest.mark.parametrize("codec", IMPLS)
@SETTINGS
@given(data=mutated_text(), points=st.lists(st.integers(0, 200), max_size=4))
def test_utf8_chunked_verdict_matches_oracle(codec, data, points):
    """Chunks of any size (whole-sequence fast path and the DFA) give the oracle's verdict."""
    v = codec.Utf8Validator()
    seen = 0
    for chunk in cut(data, points):
        seen += len(chunk)
        ok = v.feed(chunk)
        assert ok == prefix_can_be_valid(data[:seen])
        if not ok:
            return
    try:
        data.decode("utf-8")
        complete = True
    except UnicodeDecodeError:
        complete = False
    assert v.finish() == complete == codec.validate_utf8(data)
