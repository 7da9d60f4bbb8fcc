"""The compiled permessage-deflate codec (_deflate.pyx) against its zlib-module
twin (_deflate_py.py): same bytes out, round trips under any chunking, the
size limit enforced while inflating, UTF-8 checked while inflating."""
from __future__ import annotations

import os
import time
import tracemalloc
import zlib
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsock.exceptions import InvalidUTF8Error, MessageTooBigError, ProtocolError
from fastsock.websocket import _deflate_py
from fastsock.websocket.extensions.permessage_deflate import PerMessageDeflate

try:
    from fastsock.websocket import _deflate as _compiled
except ImportError:     # pragma: no cover - a build without extensions
    _compiled = None

needs_compiled = pytest.mark.skipif(_compiled is None, reason="compiled _deflate not built")
IMPLS = [pytest.param(_deflate_py, id="python"),
         pytest.param(_compiled, id="cython", marks=needs_compiled)]

messages = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=1500).map(str.encode),
    st.builds(lambda a, n: a * n, st.binary(min_size=1, max_size=8), st.integers(0, 5000)),
)
settings_kw = dict(max_examples=150, deadline=None)


@needs_compiled
@given(msgs=st.lists(messages, min_size=1, max_size=6),
       wbits=st.integers(9, 15), mem=st.integers(1, 9), level=st.integers(0, 9),
       nct=st.booleans())
@settings(**settings_kw)  # type: ignore[arg-type]
def test_compiled_and_twin_give_the_same_bytes(msgs: list[bytes], wbits: int, mem: int,
                                               level: int, nct: bool) -> None:
    assert _compiled is not None
    a = _compiled.Compressor(wbits, mem, level, nct)
    b = _deflate_py.Compressor(wbits, mem, level, nct)
    da = _compiled.Decompressor(wbits, nct)
    db = _deflate_py.Decompressor(wbits, nct)
    for m in msgs:
        za, zb = a.compress(m), b.compress(m)
        if level:
            assert za == zb
        # Level 0 (stored blocks) is sized by the output buffer, which the
        # two fill differently: both are valid; each decodes the other's.
        assert da.decompress(zb, len(m)) == m == db.decompress(za, len(m))


@pytest.mark.parametrize("impl", IMPLS)
@given(msgs=st.lists(messages, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 4000)))
@settings(**settings_kw)  # type: ignore[arg-type]
def test_round_trip_of_a_message_split_into_any_fragments(impl: ModuleType, msgs: list[bytes],
                                                          cuts: list[int]) -> None:
    # A compressed message may travel in any number of frames: the receiver
    # joins the fragments and inflates the whole; the context carries over.
    c = impl.Compressor(12, 5, 6, False)
    d = impl.Decompressor(12, False)
    for m in msgs:
        z = c.compress(m)
        points = sorted({x % (len(z) + 1) for x in cuts})
        pieces = [z[i:j] for i, j in zip([0] + points, points + [len(z)])]
        assert b"".join(pieces) == z
        assert d.decompress(b"".join(pieces), None) == m


@pytest.mark.parametrize("impl", IMPLS)
@given(data=st.one_of(st.binary(max_size=20000),
                      st.builds(lambda a, n: a * n, st.binary(min_size=1, max_size=3),
                                st.integers(0, 200_000))))
@settings(**settings_kw)  # type: ignore[arg-type]
def test_inflate_grows_in_steps_and_the_limit_is_exact(impl: ModuleType, data: bytes) -> None:
    # The output grows from a guess (a few times the input) in bounded
    # steps; highly compressible data takes many steps. The whole message
    # comes out, and one byte less of limit rejects it.
    z = impl.Compressor(15, 8, 6, True).compress(data)
    d = impl.Decompressor(15, True)
    assert d.decompress(z, len(data)) == data
    if data:
        with pytest.raises(MessageTooBigError):
            d.decompress(z, len(data) - 1)
        assert d.decompress(z, len(data)) == data      # usable again (no takeover)


@pytest.mark.parametrize("impl", IMPLS)
def test_decodes_what_pythons_zlib_made_and_the_other_way(impl: ModuleType) -> None:
    msg = os.urandom(3000) + b"abc" * 4000
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = (z.compress(msg) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert impl.Decompressor(15).decompress(wire, None) == msg
    ours = impl.Compressor(15, 8, 6).compress(msg)
    assert zlib.decompressobj(-15).decompress(ours + b"\x00\x00\xff\xff") == msg


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_message_and_a_final_block(impl: ModuleType) -> None:
    d = impl.Decompressor(15)
    assert d.decompress(impl.Compressor().compress(b""), 0) == b""
    assert d.decompress(b"\x00", 0) == b""        # RFC 7692 7.2.3.6: one 0x00 byte
    # A peer may end the DEFLATE stream (BFINAL) in a message; the next one
    # then starts a new stream.
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = z.compress(b"hello") + z.flush(zlib.Z_FINISH)
    assert d.decompress(final, 100) == b"hello"
    assert d.decompress(impl.Compressor(15, 8, 6, True).compress(b"again"), 100) == b"again"


@pytest.mark.parametrize("impl", IMPLS)
def test_one_byte_over_the_limit_is_rejected_not_truncated(impl: ModuleType) -> None:
    for size in (1, 1023, 1024, 1025, 4096, 65536, 200_000):
        data = os.urandom(size // 2) + bytes(size - size // 2)
        z = impl.Compressor(15, 8, 6, True).compress(data)
        d = impl.Decompressor(15, True)
        assert d.decompress(z, size) == data
        with pytest.raises(MessageTooBigError) as info:
            d.decompress(z, size - 1)
        assert info.value.close_code == 1009


@pytest.mark.parametrize("impl", IMPLS)
def test_bomb_stops_at_the_limit_quickly_and_holds_little(impl: ModuleType) -> None:
    bomb = impl.Compressor(15, 9, 9, True).compress(bytes(256 << 20))   # 256 MiB of zeros
    assert len(bomb) < 300_000
    limit = 1 << 20
    d = impl.Decompressor(15, True)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(MessageTooBigError):
            d.decompress(bomb, limit)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Python-level allocations while inflating: the compiled module grows one
    # bytes object in place up to limit + 1 (within limit + one step); the
    # twin's bytearray and chunks cost at most twice that. Never the 256 MiB
    # the bomb would inflate to.
    if impl is _compiled:
        assert peak <= limit + impl.STEP_MAX, peak
    else:
        assert peak <= 2 * (limit + impl.STEP_MAX), peak
    assert elapsed < 5.0      # bounded: it stops at the limit, not at 256 MiB


@pytest.mark.parametrize("impl", IMPLS)
def test_invalid_utf8_is_found_while_inflating(impl: ModuleType) -> None:
    # 300 KiB of text with a bad byte early: found in the first steps, before
    # the whole message is inflated (the limit would allow it all).
    text = b"a" * 2000 + b"\xff" + b"b" * 300_000
    z = impl.Compressor(15, 8, 6, True).compress(text)
    with pytest.raises(InvalidUTF8Error) as info:
        impl.Decompressor(15, True).decompress(z, 1 << 20, True)
    assert info.value.close_code == 1007
    # A sequence cut between two steps is fine.
    good = ("é" * 100_000).encode()
    assert impl.Decompressor(15, True).decompress(
        impl.Compressor(15, 8, 6, True).compress(good), 1 << 20, True) == good


@pytest.mark.parametrize("impl", IMPLS)
def test_garbage_is_a_1007_protocol_error(impl: ModuleType) -> None:
    with pytest.raises(ProtocolError) as info:
        impl.Decompressor(15).decompress(b"\xff\xff\xff\xff", 100)
    assert info.value.close_code == 1007


@pytest.mark.parametrize("impl", IMPLS)
def test_state_is_allocated_lazily_and_released(impl: ModuleType) -> None:
    c, d = impl.Compressor(12, 5, 6), impl.Decompressor(12)
    assert not c.allocated and not d.allocated
    d.decompress(c.compress(b"x" * 100), 100)
    assert c.allocated and d.allocated
    c.release()
    d.release()
    assert not c.allocated and not d.allocated


def test_threshold_and_no_takeover_connections_hold_no_state_of_their_own() -> None:
    ext = PerMessageDeflate(local_no_context_takeover=True, remote_no_context_takeover=True,
                            threshold=50)
    assert ext.encode(1, b"x" * 49) == (0, b"x" * 49)            # under the threshold: plain
    rsv, payload = ext.encode(1, b"x" * 50)
    assert rsv == 0x40 and ext.decode(0x40, 1, payload, 50) == b"x" * 50
    assert not ext.memory_held                   # the process's shared state serves it
    own = PerMessageDeflate(threshold=0)
    own.decode(0x40, 2, own.encode(2, b"y" * 100)[1], 100)
    assert own.memory_held
    own.release()
    assert not own.memory_held


@pytest.mark.parametrize("impl", IMPLS)
@given(msgs=st.lists(messages, min_size=1, max_size=8),
       compact_c=st.lists(st.booleans(), min_size=8, max_size=8),
       compact_d=st.lists(st.booleans(), min_size=8, max_size=8),
       wbits=st.integers(9, 15))
@settings(**settings_kw)  # type: ignore[arg-type]
def test_compacted_contexts_carry_on_from_their_history(
        impl: ModuleType, msgs: list[bytes], compact_c: list[bool], compact_d: list[bool],
        wbits: int) -> None:
    # compact() keeps only the window and frees zlib's state; the next
    # message rebuilds it, and the stream stays one valid DEFLATE stream
    # (checked with an independent inflater that was never compacted).
    c, d = impl.Compressor(wbits, 5, 6), impl.Decompressor(wbits)
    ref = zlib.decompressobj(-15)
    for m, cc, dc in zip(msgs, compact_c, compact_d):
        if cc:
            c.compact()
            assert not c.allocated and c.held <= 1 << wbits
        if dc:
            d.compact()
            assert not d.allocated and d.held <= 1 << wbits
        z = c.compress(m)
        assert ref.decompress(z + b"\x00\x00\xff\xff") == m
        assert d.decompress(z, None) == m


@pytest.mark.parametrize("impl", IMPLS)
def test_pool_keeps_the_most_recently_used_contexts_whole(impl: ModuleType) -> None:
    pool = impl.ContextPool(2)
    zs = [impl.Compressor(12, 5, 6) for _ in range(4)]
    for z in zs:
        z.compress(b"some history " * 20)
        pool.use(z)
    assert [z.allocated for z in zs] == [False, False, True, True]
    assert [z.held for z in zs[:2]] == [260, 260]
    pool.use(zs[0])                        # back in use: the oldest whole one is compacted
    assert zs[0].compress(b"more") and zs[0].allocated and not zs[2].allocated
    pool.forget(zs[0])                     # its connection closed
    assert len(pool) == 1


@pytest.mark.parametrize("impl", IMPLS)
@given(messages_=st.lists(st.lists(messages, min_size=1, max_size=4), min_size=1, max_size=4),
       nct=st.booleans())
@settings(**settings_kw)  # type: ignore[arg-type]
def test_a_message_compressed_fragment_by_fragment(impl: ModuleType,
                                                   messages_: list[list[bytes]],
                                                   nct: bool) -> None:
    # compress(part, final=False) for all but the last fragment: the joined
    # fragments (plus the tail) inflate to the whole message, and the
    # context goes on (or resets) after the last one.
    c, d = impl.Compressor(12, 5, 6, nct), impl.Decompressor(15, nct)
    for parts in messages_:
        wire = b"".join(c.compress(p, i == len(parts) - 1) for i, p in enumerate(parts))
        assert d.decompress(wire, None) == b"".join(parts)


@needs_compiled
@given(parts=st.lists(messages, min_size=1, max_size=5))
@settings(**settings_kw)  # type: ignore[arg-type]
def test_fragments_give_the_same_bytes_compiled_and_twin(parts: list[bytes]) -> None:
    assert _compiled is not None
    a, b = _compiled.Compressor(12, 5, 6), _deflate_py.Compressor(12, 5, 6)
    for i, p in enumerate(parts):
        final = i == len(parts) - 1
        assert a.compress(p, final) == b.compress(p, final)


@pytest.mark.parametrize("impl", IMPLS)
def test_pool_compacts_the_least_recently_used_not_the_oldest(impl: ModuleType) -> None:
    # Using a stream again moves it to the front: the one to compact is the
    # one used longest ago, whatever the order streams joined the pool in.
    pool = impl.ContextPool(3)
    zs = [impl.Decompressor(12) for _ in range(5)]
    for z in zs[:3]:
        z.decompress(impl.Compressor(12, 5, 6).compress(b"x" * 40), None)
        pool.use(z)
    pool.use(zs[0])                       # 0 is now the most recent: 1 is the oldest
    pool.use(zs[0])                       # already at the front: nothing moves
    zs[3].decompress(impl.Compressor(12, 5, 6).compress(b"y" * 40), None)
    pool.use(zs[3])
    assert [z.allocated for z in zs[:4]] == [True, False, True, True] and len(pool) == 3
    pool.forget(zs[2])                    # a middle one leaves: its neighbours stay linked
    pool.forget(zs[2])                    # twice is harmless
    pool.forget(zs[4])                    # never in the pool: harmless
    assert len(pool) == 2
    pool.limit = 1
    zs[4].decompress(impl.Compressor(12, 5, 6).compress(b"z" * 40), None)
    pool.use(zs[4])                       # 3 then 0 are compacted, oldest first
    assert [z.allocated for z in (zs[0], zs[3], zs[4])] == [False, False, True]
    assert len(pool) == 1 and pool.limit == 1
    pool.limit = None
    pool.use(zs[0])
    pool.use(zs[1])
    assert len(pool) == 3


codec_ops = st.lists(st.tuples(st.sampled_from([1, 2]), messages), min_size=1, max_size=8)


@needs_compiled
@given(ops=codec_ops, local_nct=st.booleans(), remote_nct=st.booleans(),
       threshold=st.sampled_from([0, 32, 64, 500]), bits=st.integers(9, 15))
@settings(**settings_kw)  # type: ignore[arg-type]
def test_the_compiled_codec_and_its_twin_agree(ops: list[tuple[int, bytes]], local_nct: bool,
                                               remote_nct: bool, threshold: int,
                                               bits: int) -> None:
    # The whole per-message path (threshold, shared no-takeover streams, the
    # pools): a sender of each implementation gives the same (rsv, bytes),
    # and each receiver inflates the other's messages to the input.
    assert _compiled is not None
    args = (local_nct, remote_nct, bits, bits, 5, 6, threshold)
    peer_args = (remote_nct, local_nct, bits, bits, 5, 6, threshold)
    send = [_compiled.DeflateCodec(*args), _deflate_py.DeflateCodec(*args)]
    recv = [_compiled.DeflateCodec(*peer_args), _deflate_py.DeflateCodec(*peer_args)]
    try:
        for opcode, m in ops:
            (ra, za), (rb, zb) = (s.encode(opcode, m) for s in send)
            assert (ra, za) == (rb, zb)
            assert ra == (0x40 if len(m) >= threshold else 0)
            assert recv[0].decode(rb, 2, zb, len(m)) == m == recv[1].decode(ra, 2, za, len(m))
        assert send[0].broadcast_key == send[1].broadcast_key
        assert send[0].memory_held == send[1].memory_held
    finally:
        for x in send + recv:
            x.release()
    assert not any(x.memory_held for x in send + recv)


@pytest.mark.parametrize("impl", IMPLS)
def test_the_codec_enforces_the_limit_and_utf8_itself(impl: ModuleType) -> None:
    # decode(rsv, opcode, payload, max_size) as the core calls it: one byte
    # over the limit is 1009, bad UTF-8 in a text message is 1007 while
    # inflating, and a message without RSV1 passes as it is.
    sender, receiver = impl.DeflateCodec(False, False, 12, 12, 5, 6, 0), \
        impl.DeflateCodec(False, False, 12, 12, 5, 6, 0)
    big = b"a" * 5000
    rsv, wire = sender.encode(2, big)
    with pytest.raises(MessageTooBigError):
        receiver.decode(rsv, 2, wire, len(big) - 1)
    fresh = impl.DeflateCodec(False, False, 12, 12, 5, 6, 0)
    assert fresh.decode(rsv, 2, wire, len(big)) == big
    bad = b"\xff" * 200_000
    other = impl.DeflateCodec(False, False, 12, 12, 5, 6, 0)
    with pytest.raises(InvalidUTF8Error):
        impl.DeflateCodec(False, False, 12, 12, 5, 6, 0).decode(0x40, 1, other.encode(1, bad)[1],
                                                                  None)
    assert receiver.decode(0, 1, b"plain", 10) == b"plain"
    for x in (sender, receiver, fresh, other):
        x.release()
