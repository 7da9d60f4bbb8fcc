"""The sans-I/O connection core on a fake transport and a fake clock."""
from __future__ import annotations

import errno
from typing import Any

import pytest

from fastsock.exceptions import ConnectionClosedError, ConnectionClosedOK
from fastsock.frame import FrameParser, build_frame
from fastsock.pubsub.fanout import broadcast
from fastsock.websocket import (
    Extension, State, TurnFlush, WebSocketHandler, WebSocketOptions, encode_message,
    is_valid_close_code,
)
from test_websocket_helpers import FakeLoop, FakeTransport, masked


class Recorder(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []

    def on_open(self) -> None:
        self.events.append(("open",))

    def on_message(self, data: Any) -> None:
        self.events.append(("message", data))

    def on_ping(self, payload: bytes) -> None:
        self.events.append(("ping", payload))

    def on_pong(self, payload: bytes) -> None:
        self.events.append(("pong", payload))

    def on_close(self, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))


class Echo(Recorder):
    def on_message(self, data: Any) -> None:
        super().on_message(data)
        self.send(data)


def make(cls: type = Recorder, *, client: bool = False, options: WebSocketOptions | None = None,
         extensions: tuple = ()) -> tuple[Any, FakeTransport, FakeLoop]:
    ws = cls()
    t = FakeTransport()
    t.protocol = ws
    loop = FakeLoop()
    t.loop = loop
    ws.attach(t, loop, client=client, options=options or WebSocketOptions(ping_interval=None),
              extensions=extensions)
    return ws, t, loop


def sent(t: FakeTransport, *, client: bool = False) -> list[tuple[int, bytes]]:
    p = FrameParser(require_mask=client, validate_utf8=False)
    return [(f.opcode, f.payload) for f in p.feed(t.take())]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def test_open_state_and_callback() -> None:
    ws, t, _ = make()
    assert ws.state is State.OPEN and ws.open
    assert ws.events == [("open",)]
    assert t.limits == (1 << 20, 1 << 18)


def test_text_and_binary_messages_keep_their_type() -> None:
    ws, t, _ = make(Echo)
    ws.data_received(masked(1, "héllo".encode()) + masked(2, b"\x00\xff"))
    assert ws.events[1:] == [("message", "héllo"), ("message", b"\x00\xff")]
    assert sent(t) == [(1, "héllo".encode()), (2, b"\x00\xff")]


def test_replies_to_one_chunk_go_out_in_one_write() -> None:
    ws, t, loop = make(Echo)
    writes: list[int] = []
    t.writelines = lambda chunks: writes.append(len(list(chunks)))  # type: ignore[method-assign]
    t.write = lambda data: writes.append(1)  # type: ignore[method-assign]
    ws.data_received(b"".join(masked(1, b"m%d" % i) for i in range(8)))
    assert writes == []             # not before the loop turn ends
    loop.run_soon()
    assert writes == [8]


@pytest.mark.parametrize("size", [0, 125, 126, 4095, 4096, 65535, 65536, 300_000])
def test_sizes_round_trip_through_header_forms(size: int) -> None:
    ws, t, _ = make(Echo)
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    ws.data_received(masked(2, payload))
    assert sent(t) == [(2, payload)]


def test_fragmented_message_with_interleaved_ping() -> None:
    ws, t, _ = make(Echo)
    ws.data_received(masked(1, b"Hel", fin=False) + masked(9, b"p1") + masked(0, b"lo", fin=False))
    assert sent(t) == [(10, b"p1")]           # the pong does not wait for the message
    ws.data_received(masked(0, b"!", fin=True))
    assert ws.events[1:] == [("ping", b"p1"), ("message", "Hello!")]
    assert sent(t) == [(1, b"Hello!")]


def test_message_split_byte_by_byte() -> None:
    ws, t, _ = make(Echo)
    data = masked(1, "ünïcode".encode(), fin=False) + masked(0, b"!")
    for i in range(len(data)):
        ws.data_received(data[i:i + 1])
    assert ws.events[1:] == [("message", "ünïcode!")]


def test_pings_are_answered_in_order_with_their_payload() -> None:
    ws, t, _ = make()
    ws.data_received(b"".join(masked(9, b"%d" % i) for i in range(10)))
    assert sent(t) == [(10, b"%d" % i) for i in range(10)]


def test_valid_frames_before_a_bad_one_are_handled_first() -> None:
    ws, t, _ = make(Echo)
    ws.data_received(masked(1, b"ok") + masked(9, b"p") + masked(2, b"x", rsv=0x20) + masked(9, b"q"))
    assert sent(t) == [(1, b"ok"), (10, b"p"), (8, close_payload(1002) + sent_reason(ws))]
    assert t.eof and not t.closed            # half-closed, waiting for the peer
    ws.connection_lost(None)
    assert ws.events[-1][:2] == ("close", 1002)


def sent_reason(ws: Any) -> bytes:
    return ws._fail_reason.encode()[:123]


def test_invalid_utf8_fails_at_the_first_bad_byte() -> None:
    ws, t, _ = make(Echo)
    frame = masked(1, b"abc\xff" + b"x" * 100)
    ws.data_received(frame[:6 + 4])           # header (6) + "abc\xff": not the whole frame
    out = sent(t)
    assert out and out[-1][0] == 8 and out[-1][1][:2] == close_payload(1007)


def test_invalid_utf8_across_fragments() -> None:
    ws, t, _ = make(Echo)
    ws.data_received(masked(1, b"\xce", fin=False))
    assert sent(t) == []
    ws.data_received(masked(0, b"\x41", fin=True))   # \xce\x41 is not UTF-8
    assert sent(t)[-1][1][:2] == close_payload(1007)


def test_max_message_size_closes_with_1009_before_buffering() -> None:
    ws, t, _ = make(Echo, options=WebSocketOptions(max_message_size=1000, ping_interval=None))
    ws.data_received(masked(2, b"x" * 600, fin=False))
    ws.data_received(masked(0, b"x" * 600, fin=True)[:10])   # only the header of the 2nd
    assert sent(t)[-1][1][:2] == close_payload(1009)
    assert ws.events == [("open",)]


def test_unmasked_client_frame_is_a_protocol_error() -> None:
    ws, t, _ = make(Echo)
    ws.data_received(build_frame(1, b"hi"))
    assert sent(t)[-1][1][:2] == close_payload(1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4999])
def test_close_is_echoed_and_server_closes_tcp(code: int) -> None:
    ws, t, _ = make()
    ws.data_received(masked(8, close_payload(code, b"bye")) + masked(9, b"late ping"))
    assert sent(t) == [(8, close_payload(code, b"bye"))]
    # lingering close: FIN now, then wait for the peer's FIN (not close(): a
    # reset would discard anything still unsent)
    assert t.eof and not t.closed and ws.state is State.CLOSING
    ws.data_received(masked(1, b"ignored"))
    assert sent(t) == []
    assert ws.eof_received() is False         # the transport then closes
    ws.connection_lost(None)
    assert ws.events[-1] == ("close", code, "bye") and ws.state is State.CLOSED


def test_half_close_to_a_peer_already_gone_aborts_without_an_error() -> None:
    """asyncio's transport raises ENOTCONN from write_eof() once the peer has
    gone: the lingering close becomes an abort, and nothing is reported."""
    ws, t, _ = make()

    def gone() -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    t.write_eof = gone  # type: ignore[method-assign]
    ws.data_received(masked(8, close_payload(1000, b"bye")))   # raises if the OSError escapes
    assert sent(t) == [(8, close_payload(1000, b"bye"))]
    assert t.aborted and ws.state is State.CLOSED


def test_empty_close_is_answered_with_empty_close() -> None:
    ws, t, _ = make()
    ws.data_received(masked(8, b""))
    assert sent(t) == [(8, b"")]
    ws.connection_lost(None)
    assert ws.events[-1] == ("close", 1005, "")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_codes_are_a_protocol_error(code: int) -> None:
    ws, t, _ = make()
    ws.data_received(masked(8, close_payload(code)))
    assert sent(t)[0][1][:2] == close_payload(1002)


def test_close_with_one_byte_payload_is_a_protocol_error() -> None:
    ws, t, _ = make()
    ws.data_received(masked(8, b"\x03"))
    assert sent(t)[0][1][:2] == close_payload(1002)


def test_close_reason_must_be_utf8() -> None:
    ws, t, _ = make()
    ws.data_received(masked(8, close_payload(1000, b"\xce\xba\xff")))
    assert sent(t)[0][1][:2] == close_payload(1007)


def test_is_valid_close_code_table() -> None:
    valid = [c for c in range(0, 5100) if is_valid_close_code(c)]
    assert valid == [1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)]


def test_data_after_close_is_ignored_but_close_completes() -> None:
    ws, t, loop = make(Echo)
    ws.close(1000, "done")
    assert sent(t) == [(8, close_payload(1000, b"done"))]
    ws.data_received(masked(1, b"late") + masked(8, close_payload(1000)))
    assert sent(t) == []                      # no echo, no second close
    assert t.eof
    ws.connection_lost(None)
    assert ws.events == [("open",), ("close", 1000, "")]


def test_messages_sent_before_close_go_out_first() -> None:
    ws, t, _ = make()
    for i in range(5):
        ws.send(f"m{i}")
    ws.close(4000, "app")
    assert [op for op, _ in sent(t)] == [1, 1, 1, 1, 1, 8]


def test_send_after_close_raises() -> None:
    ws, t, _ = make()
    ws.data_received(masked(8, close_payload(1000)))
    with pytest.raises(ConnectionClosedOK):
        ws.send("x")
    ws2, _, _ = make()
    ws2.data_received(masked(8, close_payload(4001)))
    with pytest.raises(ConnectionClosedError) as info:
        ws2.ping()
    assert info.value.code == 4001


def test_close_timeout_aborts_a_silent_peer() -> None:
    ws, t, loop = make(options=WebSocketOptions(close_timeout=2.0, ping_interval=None))
    ws.close()
    loop.advance(1.9)
    assert not t.aborted
    loop.advance(0.2)
    assert t.aborted
    assert ws.events[-1] == ("close", 1006, "")


def test_abrupt_loss_is_1006() -> None:
    ws, t, _ = make()
    ws.connection_lost(ConnectionResetError())
    assert ws.events[-1] == ("close", 1006, "") and ws.close_code == 1006


def test_close_rejects_codes_that_may_not_be_sent() -> None:
    ws, _, _ = make()
    for code in (1005, 1006, 1015, 999, 5000):
        with pytest.raises(ValueError):
            ws.close(code)
    with pytest.raises(ValueError):
        ws.close(1000, "x" * 124)


def test_keepalive_ping_measures_latency_and_times_out() -> None:
    opts = WebSocketOptions(ping_interval=10, ping_timeout=5)
    ws, t, loop = make(options=opts)
    loop.advance(10)
    ((op, payload),) = sent(t)
    assert op == 9 and len(payload) == 4
    loop.advance(0.25)
    ws.data_received(masked(10, payload))
    assert ws.latency == pytest.approx(0.25)
    loop.advance(10)                          # next ping (t=20), never answered
    assert sent(t)[0][0] == 9
    loop.advance(4.5)                         # t=24.75: within ping_timeout
    assert sent(t) == [] and ws.state is State.OPEN
    loop.advance(0.5)                         # t=25.25: ping_timeout after the ping
    assert sent(t)[-1][1][:2] == close_payload(1011)


def test_user_ping_pong() -> None:
    ws, t, loop = make()
    ws.ping(b"abc")
    assert sent(t) == [(9, b"abc")]
    loop.advance(0.5)
    ws.data_received(masked(10, b"abc"))
    assert ws.latency == pytest.approx(0.5) and ws.events[-1] == ("pong", b"abc")
    with pytest.raises(ValueError):
        ws.ping(b"x" * 126)


def test_client_side_masks_and_accepts_unmasked() -> None:
    ws, t, _ = make(Echo, client=True)
    ws.data_received(build_frame(1, b"hi"))
    assert sent(t, client=True) == [(1, b"hi")]
    ws.data_received(build_frame(8, close_payload(1000)))
    assert sent(t, client=True) == [(8, close_payload(1000))]
    assert not t.closed                       # the client waits for the server's FIN


def test_callback_error_fails_with_1011() -> None:
    class Broken(Recorder):
        def on_message(self, data: Any) -> None:
            raise RuntimeError("boom")

    ws, t, _ = make(Broken)
    ws.data_received(masked(1, b"x"))
    assert sent(t)[-1][1][:2] == close_payload(1011)


def test_broadcast_encodes_once_and_respects_slow_peer_policy() -> None:
    conns = [make(options=WebSocketOptions(ping_interval=None, slow_peer=p))
             for p in ("pause", "drop", "disconnect")]
    for ws, t, _ in conns:
        ws.pause_writing()
    assert broadcast([c[0] for c in conns], "hello") == 1
    for _, _, loop in conns:
        loop.run_soon()
    (pause, tp, _), (drop, td, _), (disc, tdisc, _) = conns
    assert sent(tp) == [(1, b"hello")] and not tp.reading
    assert sent(td) == [] and drop.messages_dropped == 1
    assert tdisc.aborted
    drop.resume_writing()
    assert broadcast([drop], b"again") == 1
    conns[1][2].run_soon()
    assert sent(td) == [(2, b"again")]


def test_broadcast_of_an_encoded_frame_writes_it_as_is() -> None:
    conns = [make() for _ in range(3)] + [make(client=True)]   # a client masks its own frame
    big = "é" * 70_000                           # a 64-bit length header
    for message in ("hi", b"\x00\x01", "x" * 300, big):
        frame = encode_message(message)
        assert broadcast([c[0] for c in conns], frame=frame) == 4
        for ws, t, loop in conns:
            loop.run_soon()
            assert sent(t, client=ws._client)[-1] == (
                1 if isinstance(message, str) else 2,
                message.encode() if isinstance(message, str) else message)
    with pytest.raises(TypeError):
        broadcast([conns[0][0]])


def test_broadcast_frames_to_one_peer_are_coalesced_per_turn() -> None:
    ws, t, loop = make()
    writes: list[int] = []
    t.writelines = lambda chunks: writes.append(len(list(chunks)))  # type: ignore[method-assign]
    for i in range(5):
        broadcast([ws], f"m{i}")
    assert writes == []
    loop.run_soon()
    assert writes == [5]


def test_replies_of_many_connections_are_written_together_at_the_end_of_the_turn() -> None:
    """A server's connections share one TurnFlush: replies produced while
    handling input wait until every connection read in the turn was handled,
    then each connection gets exactly one write, in the order they were read."""
    loop = FakeLoop()
    flusher = TurnFlush(loop)
    order: list[int] = []
    conns = []
    for i in range(3):
        ws = Echo()
        t = FakeTransport()
        t.write = lambda data, i=i: order.append(i)  # type: ignore[method-assign]
        t.writelines = lambda chunks, i=i: order.append(i)  # type: ignore[method-assign]
        ws.attach(t, loop, options=WebSocketOptions(ping_interval=None), flusher=flusher)
        conns.append(ws)
    for ws in reversed(conns):
        ws.data_received(masked(1, b"a") + masked(1, b"b"))
    assert order == [] and len(loop.timers) == 1      # one callback for the whole turn
    loop.run_soon()
    assert order == [2, 1, 0]
    assert flusher.pending == [] and not any(ws._queued for ws in conns)


def test_a_send_outside_the_turn_keeps_queued_replies_in_order() -> None:
    ws, t, loop = make(Echo)
    ws.data_received(masked(1, b"first"))
    ws.send("second")                   # from a timer, say: flushes what is queued first
    assert sent(t) == [(1, b"first"), (1, b"second")]
    loop.run_soon()                     # the turn's flush finds nothing left
    assert t.take() == b""


def test_one_failing_transport_does_not_hold_back_the_others() -> None:
    loop = FakeLoop()
    flusher = TurnFlush(loop)
    (bad, tb, _), (good, tg, _) = make(Echo), make(Echo)
    for ws in (bad, good):
        ws._flusher = flusher

    def broken(data: bytes) -> None:
        raise OSError("broken transport")
    tb.write = broken  # type: ignore[method-assign]
    bad.data_received(masked(1, b"x"))
    good.data_received(masked(1, b"y"))
    loop.run_soon()
    assert sent(tg) == [(1, b"y")]
    assert not bad._queued and bad._out    # it stays queued for the next flush


def test_a_closed_connection_drops_its_unsent_replies() -> None:
    ws, t, loop = make(Echo)
    ws.data_received(masked(1, b"x"))
    ws.connection_lost(None)
    loop.run_soon()
    assert t.take() == b"" and ws._out == []


# The compiled core takes whole small data frames straight from the chunk
# (FrameParser.next_message) and hands everything else to feed(); these
# chunks cross that border in every way. The pure core runs them too
# (tests/test_websocket_core_twins.py).

def test_a_chunk_mixing_whole_frames_control_frames_and_fragments_keeps_order() -> None:
    ws, t, _ = make(Recorder)
    chunk = (masked(1, b"a") + masked(2, b"\x00") + masked(9, b"p") + masked(1, b"b")
             + masked(1, b"frag", fin=False) + masked(0, b"ment") + masked(1, b"x" * 126)
             + masked(2, b"y" * 70000) + masked(1, "é".encode()))
    ws.data_received(chunk)
    assert ws.events[1:] == [("message", "a"), ("message", b"\x00"), ("ping", b"p"),
                             ("message", "b"), ("message", "fragment"), ("message", "x" * 126),
                             ("message", b"y" * 70000), ("message", "é")]
    assert sent(t) == [(10, b"p")]


def test_whole_frames_then_a_frame_split_across_chunks() -> None:
    ws, t, _ = make(Echo)
    second = masked(1, b"second")
    ws.data_received(masked(1, b"first") + second[:3])
    ws.data_received(second[3:] + masked(2, b"third"))
    assert ws.events[1:] == [("message", "first"), ("message", "second"), ("message", b"third")]
    assert sent(t) == [(1, b"first"), (1, b"second"), (2, b"third")]


def test_invalid_utf8_in_a_whole_frame_fails_1007_after_the_valid_ones() -> None:
    ws, t, _ = make(Echo)
    ws.data_received(masked(1, b"ok") + masked(1, b"\xed\xa0\x80") + masked(1, b"never"))
    assert ws.events[1:] == [("message", "ok")]
    frames = sent(t)
    assert frames[0] == (1, b"ok") and frames[-1][0] == 8
    assert frames[-1][1][:2] == close_payload(1007)


def test_a_whole_frame_over_the_limit_fails_1009_after_the_earlier_ones() -> None:
    ws, t, _ = make(Echo, options=WebSocketOptions(ping_interval=None, max_message_size=100))
    ws.data_received(masked(2, b"z" * 100) + masked(2, b"z" * 101) + masked(2, b"never"))
    assert ws.events[1:] == [("message", b"z" * 100)]
    assert sent(t)[-1][1][:2] == close_payload(1009)


def test_an_unmasked_frame_to_a_server_fails_1002_after_the_earlier_ones() -> None:
    ws, t, _ = make(Echo)
    ws.data_received(masked(1, b"ok") + build_frame(1, b"bare"))
    assert ws.events[1:] == [("message", "ok")]
    assert sent(t)[-1][1][:2] == close_payload(1002)


def test_a_client_takes_whole_unmasked_frames_and_refuses_masked_ones() -> None:
    ws, t, _ = make(Recorder, client=True)
    ws.data_received(build_frame(1, b"hi") + build_frame(2, b"\x01") + masked(1, b"no"))
    assert ws.events[1:] == [("message", "hi"), ("message", b"\x01")]
    assert sent(t, client=True)[-1][1][:2] == close_payload(1002)


def test_encode_message() -> None:
    assert encode_message("hé") == b"\x81\x03h\xc3\xa9"
    assert encode_message(bytearray(b"ab")) == b"\x82\x02ab"


def test_sans_io_without_transport() -> None:
    ws = Echo()
    ws.attach(None, None)
    ws.receive_data(masked(1, b"hi"))
    assert ws.data_to_send() == b"\x81\x02hi"


class Reverse(Extension):
    """A toy extension: reverses payloads and marks them with RSV1."""

    name = "x-reverse"
    rsv = 0x40

    def decode(self, rsv: int, opcode: int, payload: bytes, max_size: Any = None) -> bytes:
        return payload[::-1] if rsv & 0x40 else payload

    def encode(self, opcode: int, payload: bytes) -> tuple[int, bytes]:
        return 0x40, payload[::-1]


def test_extension_hook_sets_rsv_and_transforms_payloads() -> None:
    ws, t, _ = make(Echo, extensions=(Reverse(),))
    ws.data_received(masked(1, "olleh".encode(), rsv=0x40))
    assert ws.events[-1] == ("message", "hello")
    raw = t.take()
    assert raw[0] == 0x81 | 0x40 and raw[2:] == b"olleh"
    ws.data_received(masked(1, b"x", rsv=0x20))     # RSV2 was not negotiated
    assert sent(t)[-1][1][:2] == close_payload(1002)


def test_close_or_abort_inside_a_callback_stops_later_frames() -> None:
    class CloseOnFirst(Recorder):
        def on_message(self, data: Any) -> None:
            super().on_message(data)
            self.close(4000)

    ws, t, _ = make(CloseOnFirst)
    ws.data_received(masked(1, b"a") + masked(1, b"b") + masked(9, b"p"))
    assert [e for e in ws.events if e[0] == "message"] == [("message", "a")]
    assert sent(t) == [(8, close_payload(4000))]          # no pong after our close

    class AbortOnFirst(Recorder):
        def on_message(self, data: Any) -> None:
            super().on_message(data)
            self.abort()

    ws, t, _ = make(AbortOnFirst)
    ws.data_received(masked(1, b"a") + masked(9, b"p") + masked(1, b"b"))
    assert ws.events == [("open",), ("message", "a"), ("close", 1006, "")]
    assert t.aborted and sent(t) == []


def test_without_codec_utf8_check_the_core_still_fails_with_1007() -> None:
    ws, t, _ = make(Echo, options=WebSocketOptions(ping_interval=None, validate_utf8=False))
    ws.data_received(masked(1, b"ok") + masked(1, b"\xff"))
    assert sent(t) == [(1, b"ok"), (8, close_payload(1007) + b"invalid UTF-8 in text message")]


def test_drained_future_follows_back_pressure() -> None:
    ws, t, _ = make()
    assert ws.drained().done()
    ws.pause_writing()
    waiting = ws.drained()
    assert not waiting.done() and ws.writing_paused and not t.reading
    ws.resume_writing()
    assert waiting.done() and t.reading
    ws.pause_writing()
    lost = ws.drained()
    ws.connection_lost(None)
    assert lost.done()


def test_lingering_close_gives_up_after_close_timeout() -> None:
    ws, t, loop = make(options=WebSocketOptions(close_timeout=3.0, ping_interval=None))
    ws.data_received(masked(8, close_payload(1000)))
    assert t.eof and not t.aborted
    loop.advance(3.1)                          # the peer never sends its FIN
    assert t.aborted and ws.events[-1] == ("close", 1000, "")


@pytest.mark.parametrize("length", [1, 7, 8, 31, 33, 255, 256, 257, 300, 1024, 1031, 4000])
def test_text_is_ascii_checked_at_every_position(length: int) -> None:
    """The compiled fast lane learns "all ASCII" from the unmasking kernel
    itself (its aligned head, its vector body, its tail): one non-ASCII
    character anywhere must still be decoded, and one bad byte anywhere
    must still fail with 1007."""
    for pos in sorted({p for p in (0, 1, length // 2, length - 8, length - 1) if 0 <= p < length}):
        for offset in (0, 3):                         # shifts the payload's alignment
            good = bytearray(b"a" * length)
            good[pos:pos + 1] = "é".encode()
            ws, t, _ = make()
            ws.receive_data(masked(1, b"x" * offset) + masked(1, bytes(good)))
            assert ws.events[1:] == [("message", "x" * offset), ("message", good.decode())]

            bad = bytearray(b"a" * length)
            bad[pos] = 0xFF
            ws, t, _ = make()
            ws.receive_data(masked(1, bytes(bad)))
            assert [e for e in ws.events if e[0] == "message"] == []
            assert sent(t)[-1][0] == 8
            assert ws._sent_code == 1007
