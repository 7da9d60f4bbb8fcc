"""Case definitions equivalent to Autobahn|Testsuite fuzzing-client cases
1-7, 9 and 10, and the judge that grades a run OK / NON-STRICT / FAILED.

Each case is a script (octets to send, pauses, closes) plus the expected
outcome, modelled on the published case descriptions:

* ``ok``: the exact list of events the server must produce (echoed messages,
  pongs, ``("timeout", label)`` markers for "still open after the pause");
* ``non_strict``: alternative event lists that are acceptable but not strict
  (the echo of a valid frame before a bad one missing; invalid UTF-8 noticed
  at the end of the message instead of at the first bad octet);
* the expected close: who starts the closing handshake, which close codes
  the server may send, and whether a clean close handshake is required (for
  "fail fast" cases a TCP drop without a close frame is allowed).

Payloads are built lazily so importing this module stays cheap.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .deflate import Offer
from .fuzzer import (OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, CloseInfo,
                     FuzzingClient, HandshakeFailed, build_frame, close_payload,
                     compressed_frames, fragments)

OK, NON_STRICT, FAILED = "OK", "NON-STRICT", "FAILED"

# How long a step may keep us waiting for the server, in seconds (scaled by
# ``patience``); a correct server answers long before.
KILL_AFTER = 5.0
# Autobahn's pause before deciding "the server did not fail fast".
FAIL_FAST_WINDOW = 1.0
# Pause between chops, so each chop leaves in its own TCP segment.
CHOP_DELAY = 0.001
FRAME_DELAY = 0.005


# --- script steps ------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    data: bytes
    chop: int = 0          # 0: in one go; n: in n-octet pieces
    delay: float = 0.0     # pause between pieces

    def run(self, client: FuzzingClient, patience: float) -> None:
        client.send(self.data, chop=self.chop, delay=self.delay)
        if self.delay and not self.chop:
            time.sleep(self.delay)  # frame-wise "sync": flush before the next frame


@dataclass(frozen=True)
class Pause:
    """Wait; if the server is still open afterwards record ``("timeout", label)``."""
    seconds: float
    label: str

    def run(self, client: FuzzingClient, patience: float) -> None:
        # Autobahn's fixed pause, not scaled by ``patience``: a correct server
        # closes within microseconds, and every pause a correct server sits
        # through costs the whole suite that much time.
        if not client.wait_until(lambda: client.server_closing, self.seconds):
            client.add_event(("timeout", self.label))


@dataclass(frozen=True)
class Sleep:
    """Just wait, whatever the server does (no marker recorded)."""
    seconds: float

    def run(self, client: FuzzingClient, patience: float) -> None:
        time.sleep(self.seconds)


@dataclass(frozen=True)
class HoldReading:
    """Stop reading (``hold=True``) or resume; lets the server's output back up."""
    hold: bool = True

    def run(self, client: FuzzingClient, patience: float) -> None:
        client.hold_reading(self.hold)


@dataclass(frozen=True)
class Close:
    code: int | None = None
    reason: bytes = b""
    raw_payload: bytes | None = None
    counts_as_close: bool = True

    def run(self, client: FuzzingClient, patience: float) -> None:
        client.send_close(self.code, self.reason, raw_payload=self.raw_payload,
                          counts_as_close=self.counts_as_close)


@dataclass(frozen=True)
class RoundTrips:
    """Send ``count`` messages one after another, each after the previous echo."""
    count: int
    opcode: int
    payload: bytes

    def run(self, client: FuzzingClient, patience: float) -> None:
        for i in range(self.count):
            if client.server_closing:
                return
            # a fresh mask per message, like a real client
            frame = build_frame(self.opcode, self.payload)
            client.send(frame)
            want = i + 1
            if not client.wait_until(lambda: client.message_count() >= want or client.server_closing,
                                     KILL_AFTER * patience):
                return


@dataclass(frozen=True)
class CompressedRoundTrips:
    """Autobahn 12/13: send ``count`` messages, each after the previous echo,
    compressed when permessage-deflate was agreed (else plain), the wire
    payload split into frames of ``frag`` octets (0: one frame). The
    messages are ``payload(i)``; the client records their digests."""
    count: int
    opcode: int
    payload: Callable[[int], bytes]
    frag: int = 0

    def run(self, client: FuzzingClient, patience: float) -> None:
        for i in range(self.count):
            if client.server_closing:
                return
            data = self.payload(i)
            if client.deflater is not None:
                wire = compressed_frames(self.opcode, data, client.deflater, self.frag)
            else:
                wire = fragments(self.opcode, data, self.frag)
            client.send(wire)
            want = i + 1
            if not client.wait_until(lambda: client.message_count() >= want or client.server_closing,
                                     KILL_AFTER * patience):
                return


@dataclass
class Script:
    steps: list
    ok: list
    non_strict: Sequence[list] = ()
    closed_by_me: bool | None = True      # None: either endpoint may start the close
    codes: tuple = (1000,)
    require_clean: bool = True
    kill_after: float = KILL_AFTER
    rcvbuf: int | None = None             # client SO_RCVBUF; small slows the server's writes
    offers: Sequence[Offer] | None = None  # permessage-deflate offers in the upgrade request
    may_decline: bool = False             # the server may decline every offer (RFC 7692 5)
    digest: bool = False                  # messages are recorded (and expected) as digests


@dataclass(frozen=True)
class Case:
    id: str
    description: str
    script: Callable[[], Script] = field(repr=False, compare=False)
    slow: bool = False

    @property
    def family(self) -> str:
        return self.id.split(".")[0]


@dataclass
class CaseResult:
    id: str
    verdict: str
    behavior: str
    close_behavior: str
    detail: str
    duration: float
    negotiated: str = ""   # the server's permessage-deflate answer ("" none/declined)

    def line(self) -> str:
        return f"{self.id:<8} {self.verdict:<10} {self.duration:6.2f}s  {self.detail}"


# --- the judge -----------------------------------------------------------------

def _fmt_event(e: tuple) -> str:
    if e[0] == "message":
        kind = "binary" if e[2] else "text"
        p = e[1]
        shown = repr(p[:24]) + ("..." if len(p) > 24 else "")
        return f"message({kind}, {len(p)} B, {shown})"
    if e[0] == "timeout":
        return f"still-open-after-pause({e[1]})"
    return f"{e[0]}({len(e[1])} B, {e[1][:24]!r})"


def fmt_events(events: Sequence[tuple], limit: int = 6) -> str:
    if len(events) > limit:
        head = ", ".join(_fmt_event(e) for e in events[:limit])
        return f"[{head}, ... {len(events) - limit} more]"
    return "[" + ", ".join(_fmt_event(e) for e in events) + "]"


def fmt_close(c: CloseInfo) -> str:
    parts = []
    if c.server_sent_close:
        parts.append(f"server close code {c.server_code}"
                     + (f" reason {c.server_reason[:40]!r}" if c.server_reason else ""))
    else:
        parts.append("no close frame from server")
    parts.append({True: "closing started by us", False: "closing started by server",
                  None: "nobody started a closing handshake"}[c.closed_by_me])
    if c.dropped_by_me:
        parts.append("TCP dropped by us after the deadline")
    elif c.tcp_closed_by_server:
        parts.append("TCP reset by server" if c.tcp_reset else "TCP closed by server")
    parts.append("clean" if c.clean else "not clean")
    return ", ".join(parts)


def judge(case_id: str, script: Script, events: list, close: CloseInfo, duration: float) -> CaseResult:
    if events == script.ok:
        behavior = OK
    elif any(events == alt for alt in script.non_strict):
        behavior = NON_STRICT
    else:
        behavior = FAILED

    closed_by_me = close.closed_by_me
    if closed_by_me is None:  # nobody sent a close frame: whoever dropped TCP failed it
        closed_by_me = close.dropped_by_me
    if close.violation:
        close_behavior, why = FAILED, f"server broke the protocol: {close.violation}"
    elif script.closed_by_me is not None and closed_by_me != script.closed_by_me:
        close_behavior = FAILED
        why = ("the connection was failed by the wrong endpoint"
               + (" (server never closed it)" if close.dropped_by_me else ""))
    elif script.require_clean and not close.clean:
        close_behavior, why = FAILED, "UNCLEAN: a clean close handshake was required"
    elif close.server_code is not None and close.server_code not in script.codes:
        close_behavior = FAILED
        why = f"WRONG CODE: expected {' or '.join(map(str, script.codes))} or no code"
    elif close.dropped_by_me:
        close_behavior, why = FAILED, "the server did not close the TCP connection"
    else:
        close_behavior, why = OK, ""

    if behavior == FAILED or close_behavior == FAILED:
        verdict = FAILED
    else:
        verdict = behavior
    detail = ""
    if verdict != OK:
        detail = f"observed {fmt_events(events)}; {fmt_close(close)}"
        if behavior != OK:
            detail += f"; expected events {fmt_events(script.ok)}"
        if why:
            detail += f"; {why}"
    return CaseResult(case_id, verdict, behavior, close_behavior, detail, duration)


def run_case(url: str, case: Case, *, patience: float = 1.0) -> CaseResult:
    """Run one case on a fresh connection and grade it."""
    script = case.script()
    t0 = time.monotonic()
    client = FuzzingClient(url, rcvbuf=script.rcvbuf,
                           offers=list(script.offers) if script.offers else None,
                           digest_messages=script.digest)
    try:
        client.connect()
    except (OSError, HandshakeFailed) as exc:
        return CaseResult(case.id, FAILED, FAILED, FAILED, f"handshake failed: {exc}",
                          time.monotonic() - t0)
    negotiated = client.agreement.response if client.agreement else ""
    if script.offers and client.agreement is None and not script.may_decline:
        client.drop()
        return CaseResult(case.id, FAILED, FAILED, OK,
                          "server declined permessage-deflate (no Sec-WebSocket-Extensions "
                          "in the 101)", time.monotonic() - t0)
    kill_after = script.kill_after * patience
    with client:
        for step in script.steps:
            if client.server_closing:
                break
            step.run(client, patience)
        if script.closed_by_me and not client.close.we_sent_close:
            want = len(script.ok)
            client.wait_until(lambda: len(client.events) >= want or client.server_closing, kill_after)
            if not client.server_closing:
                client.send_close(script.codes[0])
        client.finish(kill_after)
        events, close = client.snapshot()
    result = judge(case.id, script, events, close, time.monotonic() - t0)
    result.negotiated = negotiated
    return result


# --- helpers to write cases -------------------------------------------------

def frame(opcode: int, payload: bytes = b"", **kw) -> bytes:
    return build_frame(opcode, payload, **kw)


def msg(payload: bytes | str, binary: bool = False) -> tuple:
    if isinstance(payload, str):
        payload = payload.encode()
    return ("message", payload, binary)


def echo_script(opcode: int, payload: bytes, *, chop: int = 0, frag: int = 0,
                kill_after: float = KILL_AFTER) -> Script:
    data = fragments(opcode, payload, frag) if frag else frame(opcode, payload)
    return Script([Send(data, chop=chop)], [msg(payload, opcode == OP_BINARY)],
                  kill_after=kill_after)


def fail(steps: list, code: int = 1002, *, ok: list | None = None,
         non_strict: Sequence[list] = (), closed_by_me: bool | None = False) -> Script:
    """The server must fail the connection with ``code`` (or just drop it)."""
    return Script(steps, ok or [], non_strict, closed_by_me=closed_by_me, codes=(code,),
                  require_clean=False)


def framewise(*frames: bytes) -> list:
    """Each frame in its own write, flushed before the next (Autobahn sync=True)."""
    return [Send(f, delay=FRAME_DELAY) for f in frames]


def octetwise(*frames: bytes) -> list:
    return [Send(b"".join(frames), chop=1, delay=CHOP_DELAY)]


CASES: list[Case] = []


def add(case_id: str, description: str, build: Callable[[], Script], *, slow: bool = False) -> None:
    CASES.append(Case(case_id, description, build, slow))


HELLO = b"Hello, world!"

# --- 1 Framing ------------------------------------------------------------------

_SIZES = [0, 125, 126, 127, 128, 65535, 65536]
for _kind, _op, _fill in ((1, OP_TEXT, b"*"), (2, OP_BINARY, b"\xfe")):
    _name = "text" if _op == OP_TEXT else "binary"
    for _i, _n in enumerate(_SIZES, 1):
        add(f"1.{_kind}.{_i}", f"Send {_name} message with payload length {_n}",
            lambda op=_op, f=_fill, n=_n: echo_script(op, f * n))
    add(f"1.{_kind}.8", f"Send {_name} message with payload length 65536, in chops of 997 octets",
        lambda op=_op, f=_fill: echo_script(op, f * 65536, chop=997))

# --- 2 Pings/Pongs ---------------------------------------------------------------

_BIN8 = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
add("2.1", "Send ping without payload",
    lambda: Script([Send(frame(OP_PING))], [("pong", b"")]))
add("2.2", "Send ping with small text payload",
    lambda: Script([Send(frame(OP_PING, HELLO))], [("pong", HELLO)]))
add("2.3", "Send ping with small binary (non UTF-8) payload",
    lambda: Script([Send(frame(OP_PING, _BIN8))], [("pong", _BIN8)]))
add("2.4", "Send ping with binary payload of 125 octets",
    lambda: Script([Send(frame(OP_PING, b"\xfe" * 125))], [("pong", b"\xfe" * 125)]))
add("2.5", "Send ping with binary payload of 126 octets: control frames are at most 125",
    lambda: fail([Send(frame(OP_PING, b"\xfe" * 126))]))
add("2.6", "Send ping with binary payload of 125 octets, in octet-wise chops",
    lambda: Script(octetwise(frame(OP_PING, b"\xfe" * 125)), [("pong", b"\xfe" * 125)]))
add("2.7", "Send unsolicited pong without payload; nothing comes back",
    lambda: Script([Send(frame(OP_PONG))], []))
add("2.8", "Send unsolicited pong with payload; nothing comes back",
    lambda: Script([Send(frame(OP_PONG, b"unsolicited pong payload"))], []))
add("2.9", "Send unsolicited pong with payload, then ping with payload; only the ping is answered",
    lambda: Script([Send(frame(OP_PONG, b"unsolicited pong payload")),
                    Send(frame(OP_PING, b"ping payload"))], [("pong", b"ping payload")]))


def _ten_pings(chopped: bool) -> Script:
    payloads = [f"payload-{i}".encode() for i in range(10)]
    frames = [frame(OP_PING, p) for p in payloads]
    steps = octetwise(*frames) if chopped else [Send(b"".join(frames))]
    return Script(steps, [("pong", p) for p in payloads])


add("2.10", "Send 10 pings with payload", lambda: _ten_pings(False))
add("2.11", "Send 10 pings with payload, in octet-wise chops", lambda: _ten_pings(True))

# --- 3 Reserved bits ---------------------------------------------------------------
# With no extension negotiated every RSV bit must be 0. Where a valid message
# precedes the bad frame, its echo must arrive before the close (strict); a
# server that fails the connection first is NON-STRICT.

add("3.1", "Send small text message with RSV = 1",
    lambda: fail([Send(frame(OP_TEXT, HELLO, rsv=1))]))


def _rsv_after_valid(rsv: int, how: str) -> Script:
    frames = (frame(OP_TEXT, HELLO), frame(OP_TEXT, HELLO, rsv=rsv), frame(OP_PING))
    steps = {"one": [Send(b"".join(frames))], "frame": framewise(*frames),
             "octet": octetwise(*frames)}[how]
    return fail(steps, ok=[msg(HELLO)], non_strict=[[]])


add("3.2", "Send small text message, then again with RSV = 2, then ping; echo, then fail (no pong)",
    lambda: _rsv_after_valid(2, "one"))
add("3.3", "Same as 3.2 with RSV = 3, frames sent in frame-wise chops",
    lambda: _rsv_after_valid(3, "frame"))
add("3.4", "Same as 3.2 with RSV = 4, octets sent in octet-wise chops",
    lambda: _rsv_after_valid(4, "octet"))
add("3.5", "Send small binary message with RSV = 5",
    lambda: fail([Send(frame(OP_BINARY, b"\xff" * 8, rsv=5))]))
add("3.6", "Send ping with RSV = 6",
    lambda: fail([Send(frame(OP_PING, HELLO, rsv=6))]))
add("3.7", "Send close with RSV = 7",
    lambda: fail([Send(frame(8, close_payload(1000), rsv=7))], closed_by_me=None))

# --- 4 Opcodes ---------------------------------------------------------------------


def _reserved_opcode(op: int, payload: bytes, after_valid: bool) -> Script:
    if not after_valid:
        return fail([Send(frame(op, payload))])
    data = frame(OP_TEXT, HELLO) + frame(op, payload) + frame(OP_PING)
    return fail([Send(data)], ok=[msg(HELLO)], non_strict=[[]])


_RESERVED = [("4.1.1", 3, False, False), ("4.1.2", 4, True, False), ("4.1.3", 5, False, True),
             ("4.1.4", 6, True, True), ("4.1.5", 7, True, True),
             ("4.2.1", 11, False, False), ("4.2.2", 12, True, False), ("4.2.3", 13, False, True),
             ("4.2.4", 14, True, True), ("4.2.5", 15, True, True)]
for _cid, _op, _with_payload, _after in _RESERVED:
    _kind = "non-control" if _op < 8 else "control"
    _desc = (("Send small text message, then " if _after else "Send ")
             + f"frame with reserved {_kind} opcode {_op}"
             + (" and non-empty payload" if _with_payload else "")
             + (", then ping; echo, then fail with 1002" if _after else "; fail with 1002"))
    add(_cid, _desc, lambda op=_op, p=_with_payload, a=_after:
        _reserved_opcode(op, b"reserved opcode payload" if p else b"", a))

# --- 5 Fragmentation -----------------------------------------------------------------

F1, F2 = b"fragment1", b"fragment2"
add("5.1", "Send ping fragmented into 2 fragments",
    lambda: fail([Send(frame(OP_PING, F1, fin=False) + frame(OP_CONT, F2))]))
add("5.2", "Send pong fragmented into 2 fragments",
    lambda: fail([Send(frame(OP_PONG, F1, fin=False) + frame(OP_CONT, F2))]))


def _two_fragments(how: str, ping: bool) -> Script:
    frames = [frame(OP_TEXT, F1, fin=False)]
    if ping:
        frames.append(frame(OP_PING, b"ping payload"))
    frames.append(frame(OP_CONT, F2))
    steps = {"one": [Send(b"".join(frames))], "frame": framewise(*frames),
             "octet": octetwise(*frames)}[how]
    ok = ([("pong", b"ping payload")] if ping else []) + [msg(F1 + F2)]
    return Script(steps, ok)


add("5.3", "Send text message fragmented into 2 fragments", lambda: _two_fragments("one", False))
add("5.4", "Same as 5.3, frame-wise chops", lambda: _two_fragments("frame", False))
add("5.5", "Same as 5.3, octet-wise chops", lambda: _two_fragments("octet", False))
add("5.6", "Send text message in 2 fragments with a ping in between",
    lambda: _two_fragments("one", True))
add("5.7", "Same as 5.6, frame-wise chops", lambda: _two_fragments("frame", True))
add("5.8", "Same as 5.6, octet-wise chops", lambda: _two_fragments("octet", True))


def _orphan_continuation(fin: bool, how: str) -> Script:
    frames = (frame(OP_CONT, b"non-continuation payload", fin=fin), frame(OP_TEXT, HELLO))
    steps = {"one": [Send(b"".join(frames))], "frame": framewise(*frames),
             "octet": octetwise(*frames)}[how]
    return fail(steps)


for _i, (_fin, _how) in enumerate([(True, "one"), (True, "frame"), (True, "octet"),
                                    (False, "one"), (False, "frame"), (False, "octet")]):
    add(f"5.{9 + _i}", f"Send text message after a continuation frame with FIN = {_fin} "
        f"where there is nothing to continue ({_how} chop)",
        lambda fin=_fin, how=_how: _orphan_continuation(fin, how))

add("5.15", "Send text message in 2 fragments, then a continuation frame with FIN = false where "
    "there is nothing to continue, then a text message; echo of the first, then fail",
    lambda: fail([Send(frame(OP_TEXT, F1, fin=False) + frame(OP_CONT, F2)
                       + frame(OP_CONT, b"fragment3", fin=False) + frame(OP_TEXT, b"fragment4"))],
                 ok=[msg(F1 + F2)], non_strict=[[]]))


def _repeated_orphan(fin: bool) -> Script:
    group = (frame(OP_CONT, F1, fin=fin) + frame(OP_TEXT, F2, fin=False)
             + frame(OP_CONT, b"fragment3"))
    return fail([Send(group * 2)])


add("5.16", "Repeated 2x: continuation frame with FIN = false (nothing to continue), "
    "then text message in 2 fragments", lambda: _repeated_orphan(False))
add("5.17", "Repeated 2x: continuation frame with FIN = true (nothing to continue), "
    "then text message in 2 fragments", lambda: _repeated_orphan(True))
add("5.18", "Send text message in 2 fragments with both opcodes set to text",
    lambda: fail([Send(frame(OP_TEXT, F1, fin=False) + frame(OP_TEXT, F2))]))


def _interleaved(sync: bool) -> Script:
    def send(*frames: bytes) -> list:
        return framewise(*frames) if sync else [Send(b"".join(frames))]
    steps = (send(frame(OP_TEXT, F1, fin=False), frame(OP_CONT, F2, fin=False),
                  frame(OP_PING, b"pongme 1!"))
             + [Pause(FAIL_FAST_WINDOW, "A")]
             + send(frame(OP_CONT, b"fragment3", fin=False), frame(OP_CONT, b"fragment4", fin=False),
                    frame(OP_PING, b"pongme 2!"), frame(OP_CONT, b"fragment5")))
    return Script(steps, [("pong", b"pongme 1!"), ("timeout", "A"), ("pong", b"pongme 2!"),
                          msg(b"fragment1fragment2fragment3fragment4fragment5")])


add("5.19", "Fragmented text message: 2 fragments, ping, wait 1 s, 2 fragments, ping, "
    "last fragment; everything is legal", lambda: _interleaved(False))
add("5.20", "Same as 5.19, every frame flushed on its own", lambda: _interleaved(True))

# --- 6 UTF-8 handling ------------------------------------------------------------------

# "κόσμε" with U+1F79 (omicron with oxia) as in Kuhn's test file: 11 octets
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
HELLO_UTF8 = "Hello-µ@ßöäüàá-UTF-8!!".encode()


def _text_fragments(parts: Sequence[bytes]) -> bytes:
    last = len(parts) - 1
    return b"".join(frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == last))
                    for i, p in enumerate(parts))


def _octet_frames(payload: bytes) -> bytes:
    return _text_fragments([payload[i:i + 1] for i in range(len(payload))])


add("6.1.1", "Send text message of length 0", lambda: echo_script(OP_TEXT, b""))
add("6.1.2", "Send fragmented text message, 3 fragments each of length 0",
    lambda: Script([Send(_text_fragments([b"", b"", b""]))], [msg(b"")]))
add("6.1.3", "Send fragmented text message, 3 fragments, first and last of length 0",
    lambda: Script([Send(_text_fragments([b"", b"middle frame payload", b""]))],
                   [msg(b"middle frame payload")]))
add("6.2.1", "Send a valid UTF-8 text message in one fragment",
    lambda: echo_script(OP_TEXT, HELLO_UTF8))
add("6.2.2", "Send a valid UTF-8 text message in two fragments, split at a code point boundary",
    lambda: Script([Send(_text_fragments([HELLO_UTF8[:11], HELLO_UTF8[11:]]))], [msg(HELLO_UTF8)]))
add("6.2.3", "Send a valid UTF-8 text message in fragments of 1 octet (split inside code points)",
    lambda: Script([Send(_octet_frames(HELLO_UTF8))], [msg(HELLO_UTF8)]))
add("6.2.4", "Send a valid UTF-8 text message (κόσμε) in fragments of 1 octet",
    lambda: Script([Send(_octet_frames(KOSME))], [msg(KOSME)]))

_INVALID = KOSME + b"\xed\xa0\x80" + b"edited"   # a UTF-16 surrogate in the middle
add("6.3.1", "Send invalid UTF-8 text message unfragmented",
    lambda: fail([Send(frame(OP_TEXT, _INVALID))], 1007))
add("6.3.2", "Send invalid UTF-8 text message in fragments of 1 octet",
    lambda: fail([Send(_octet_frames(_INVALID))], 1007))

# 6.4.x: fail fast. Part 1 is valid, part 2 makes the text invalid (U+110000
# at octet 12), part 3 is valid again; a pause follows parts 1 and 2. A strict
# server fails the connection right after part 2, before the pause ends.
_P1, _P2, _P3 = KOSME, b"\xf4\x90\x80\x80", b"edited"
_WHOLE = _P1 + _P2 + _P3
assert _WHOLE[12:13] == b"\x90"  # the first octet that cannot be valid


def _fail_fast(parts: Sequence[bytes], one_frame: bool) -> Script:
    if one_frame:
        # one frame header announcing the whole length, its payload in chops
        header_and_mask = frame(OP_TEXT, _WHOLE)
        head = len(header_and_mask) - len(_WHOLE)
        pieces, pos = [], head
        for p in parts:
            pieces.append(header_and_mask[pos:pos + len(p)])
            pos += len(p)
        pieces[0] = header_and_mask[:head] + pieces[0]
    else:
        last = len(parts) - 1
        pieces = [frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == last))
                  for i, p in enumerate(parts)]
    steps = [Send(pieces[0]), Pause(FAIL_FAST_WINDOW, "A"), Send(pieces[1]),
             Pause(FAIL_FAST_WINDOW, "B"), Send(pieces[2])]
    return fail(steps, 1007, ok=[("timeout", "A")],
                non_strict=[[("timeout", "A"), ("timeout", "B")]])


add("6.4.1", "Invalid UTF-8 text in 3 frames (valid, U+110000, valid) with pauses: fail fast "
    "after the 2nd frame", lambda: _fail_fast([_P1, _P2, _P3], False))
add("6.4.2", "Same as 6.4.1, but the 2nd frame ends at the octet that makes the text invalid",
    lambda: _fail_fast([_WHOLE[:12], _WHOLE[12:13], _WHOLE[13:]], False))
add("6.4.3", "Same as 6.4.1, but as 3 chops of one frame",
    lambda: _fail_fast([_P1, _P2, _P3], True))
add("6.4.4", "Same as 6.4.2, but as 3 chops of one frame",
    lambda: _fail_fast([_WHOLE[:12], _WHOLE[12:13], _WHOLE[13:]], True))


def _utf8_groups() -> list[tuple[str, list[tuple[bool, bytes]]]]:
    """Markus Kuhn's UTF-8 decoder stress test, grouped as Autobahn 6.5-6.23."""
    groups: list[tuple[str, list[tuple[bool, bytes]]]] = []
    groups.append(("Some valid UTF-8 sequences", [
        (True, b"hello\x24world"), (True, b"hello\xc2\xa2world"),
        (True, b"hello\xe2\x82\xacworld"), (True, b"hello\xf0\xa4\xad\xa2world"), (True, KOSME)]))

    def valid(b: bytes) -> bool:
        try:
            b.decode("utf-8")   # CPython's decoder is strict: no surrogates, overlongs, > U+10FFFF
            return True
        except UnicodeDecodeError:
            return False
    groups.append(("All prefixes of a valid UTF-8 string with multi-octet code points",
                   [(valid(KOSME[:i]), KOSME[:i]) for i in range(1, len(KOSME) + 1)]))
    groups.append(("First possible sequence of a certain length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"), (True, b"\xf0\x90\x80\x80")]))
    groups.append(("First possible sequence of length 5/6 (invalid code points)", [
        (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    groups.append(("Last possible sequence of a certain length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"), (True, b"\xf4\x8f\xbf\xbf")]))
    groups.append(("Last possible sequence of length 4/5/6 (invalid code points)", [
        (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
        (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    groups.append(("Other boundary conditions", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
        (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]))
    groups.append(("Unexpected continuation octets", [
        (False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"), (False, b"\x80\xbf\x80"),
        (False, b"\x80\xbf\x80\xbf"), (False, b"\x80\xbf\x80\xbf\x80"),
        (False, b"\x80\xbf\x80\xbf\x80\xbf"), (False, bytes(range(0x80, 0xbf)))]))
    groups.append(("Lonely start characters", [
        (False, b"".join(bytes([c, 0x20]) for c in range(lo, hi)))
        for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd))]))
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    groups.append(("Sequences with the last continuation octet missing",
                   [(False, m) for m in missing]))
    groups.append(("Concatenation of incomplete sequences", [(False, b"".join(missing))]))
    groups.append(("Impossible octets", [
        (False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]))
    groups.append(("Overlong ASCII character", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
        (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    groups.append(("Maximum overlong sequences", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
        (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    groups.append(("Overlong NUL", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
        (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")]))
    singles = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
               b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]
    groups.append(("Single UTF-16 surrogates", [(False, s) for s in singles]))
    groups.append(("Paired UTF-16 surrogates", [
        (False, hi + lo) for hi in singles[:4] for lo in (b"\xed\xb0\x80", b"\xed\xbf\xbf")]))
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for lead in b"\xf0\xf1\xf2\xf3\xf4":
        for second in b"\x8f\x9f\xaf\xbf":
            if lead == 0xf4 and second != 0x8f:
                continue  # beyond U+10FFFF
            for last in b"\xbe\xbf":
                seq = bytes([lead, second, 0xbf, last])
                if seq not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                    nonchars.append(seq)
    groups.append(("Non-character code points (valid UTF-8)", [(True, s) for s in nonchars]))
    groups.append(("Unicode specials", [(True, bytes([0xef, 0xbf, c])) for c in range(0xb9, 0xc0)]))
    return groups


def _utf8_case(is_valid: bool, payload: bytes) -> Script:
    if is_valid:
        return echo_script(OP_TEXT, payload)
    return fail([Send(frame(OP_TEXT, payload))], 1007)


for _g, (_title, _seqs) in enumerate(_utf8_groups(), 5):
    for _j, (_valid, _payload) in enumerate(_seqs, 1):
        add(f"6.{_g}.{_j}", f"{_title}: {'valid' if _valid else 'invalid'} text 0x{_payload.hex()}"
            + ("" if _valid else "; fail with 1007"),
            lambda v=_valid, p=_payload: _utf8_case(v, p))

# --- 7 Close handling ---------------------------------------------------------------

add("7.1.1", "Send a message; after its echo, close with 1000: clean close with normal code",
    lambda: Script([Send(frame(OP_TEXT, b"Hello World!"))], [msg(b"Hello World!")]))
add("7.1.2", "Send two close frames; the second is ignored",
    lambda: Script([Close(1000), Send(frame(8, close_payload(1000)))], []))
add("7.1.3", "Send a ping after the close frame; no pong",
    lambda: Script([Close(1000), Send(frame(OP_PING, b"Hello World!"))], []))
add("7.1.4", "Send a text message after the close frame; no echo",
    lambda: Script([Close(1000), Send(frame(OP_TEXT, b"Hello World!"))], []))
add("7.1.5", "Send fragment 1, then close, then fragment 2; no echo",
    lambda: Script([Send(frame(OP_TEXT, F1, fin=False)), Close(1000), Send(frame(OP_CONT, F2))], []))


def _big_then_close() -> Script:
    big = (b"BAsd7&jh23" * 26215 + b"BAsd7&")[:256 * 1024]
    return Script([Send(frame(OP_TEXT, big) + frame(OP_TEXT, b"Hello World!")), Close(1000),
                   Send(frame(OP_PING))],
                  [msg(big), msg(b"Hello World!")],
                  non_strict=[[], [msg(big)]])


add("7.1.6", "Send a 256 KiB message, a small message, close, then a ping: both echoes "
    "before the close reply (Autobahn: informational; judged strictly here)", _big_then_close)

add("7.3.1", "Send a close frame with payload length 0 (no code, no reason)",
    lambda: Script([Close(None)], []))
add("7.3.2", "Send a close frame with payload length 1",
    lambda: fail([Close(raw_payload=b"\x03", counts_as_close=False)], closed_by_me=None))
add("7.3.3", "Send a close frame with payload length 2 (code 1000)",
    lambda: Script([Close(1000)], []))
add("7.3.4", "Send a close frame with code and reason",
    lambda: Script([Close(1000, b"Hello World!")], []))
add("7.3.5", "Send a close frame with code and a reason of maximum length (123)",
    lambda: Script([Close(1000, b"*" * 123)], []))
add("7.3.6", "Send a close frame with code and a reason of 124 octets (payload 126): too long",
    lambda: fail([Close(raw_payload=close_payload(1000, b"*" * 124), counts_as_close=False)],
                 closed_by_me=None))
add("7.5.1", "Send a close frame whose reason is not UTF-8; fail with 1007",
    lambda: fail([Close(1000, _INVALID)], 1007, closed_by_me=True))

for _i, _code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                            3000, 3999, 4000, 4999], 1):
    add(f"7.7.{_i}", f"Send close with valid close code {_code}; clean close with 1000 or {_code}",
        lambda c=_code: Script([Close(c)], [], codes=(1000, c)))
for _i, _code in enumerate([0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999], 1):
    add(f"7.9.{_i}", f"Send close with invalid close code {_code}; fail with 1002",
        lambda c=_code: fail([Close(c)], closed_by_me=True))
add("7.13.1", "Send close with close code 5000 (outside every range); fail with 1002",
    lambda: fail([Close(5000)], closed_by_me=True))
add("7.13.2", "Send close with close code 65535; fail with 1002",
    lambda: fail([Close(65535)], closed_by_me=True))

# --- 9 Limits / performance ------------------------------------------------------------

_MB = 2 ** 20
_LARGE = [64 * 1024, 256 * 1024, _MB, 4 * _MB, 8 * _MB, 16 * _MB]


def _deadline(size: int) -> float:
    # generous: a correct server is bounded by memory bandwidth, not by this
    return KILL_AFTER + 4.0 * size / _MB


for _kind, _op, _fill in ((1, OP_TEXT, b"*"), (2, OP_BINARY, b"\xfe")):
    _name = "text" if _op == OP_TEXT else "binary"
    for _i, _n in enumerate(_LARGE, 1):
        add(f"9.{_kind}.{_i}", f"Send {_name} message of {_n // 1024} KiB",
            lambda op=_op, f=_fill, n=_n: echo_script(op, f * n, kill_after=_deadline(n)),
            slow=True)
    for _i, _frag in enumerate([64, 256, 1024, 4096, 16384, 65536, 262144, _MB, 4 * _MB], 1):
        add(f"9.{_kind + 2}.{_i}", f"Send fragmented {_name} message of 4 MiB in fragments of "
            f"{_frag} octets",
            lambda op=_op, f=_fill, s=_frag: echo_script(op, f * (4 * _MB), frag=s,
                                                         kill_after=_deadline(4 * _MB)),
            slow=True)
    for _i, _chop in enumerate([64, 128, 256, 512, 1024, 2048], 1):
        add(f"9.{_kind + 4}.{_i}", f"Send {_name} message of 1 MiB in chops of {_chop} octets",
            lambda op=_op, f=_fill, c=_chop: echo_script(op, f * _MB, chop=c,
                                                         kill_after=_deadline(_MB)),
            slow=True)
    for _i, _size in enumerate([0, 16, 64, 256, 1024, 4096], 1):
        add(f"9.{_kind + 6}.{_i}", f"Send 1000 {_name} messages of {_size} octets, each after "
            "the previous echo",
            lambda op=_op, f=_fill, s=_size: Script(
                [RoundTrips(1000, op, f * s)], [msg(f * s, op == OP_BINARY)] * 1000,
                kill_after=KILL_AFTER * 4),
            slow=True)

# --- 10 Misc -------------------------------------------------------------------------

add("10.1.1", "Send a 65536-octet text message auto-fragmented into 1300-octet frames",
    lambda: echo_script(OP_TEXT, b"*" * 65536, frag=1300))

assert HELLO_UTF8[:11].decode() and HELLO_UTF8[11:].decode()  # 6.2.2 splits at a boundary
CASES.sort(key=lambda c: tuple(int(x) for x in c.id.split(".")))
CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "duplicate case id"


def select(patterns: Sequence[str] | None = None, *, include_slow: bool = True) -> list[Case]:
    """Cases whose id equals a pattern or starts with ``pattern + '.'``."""
    chosen = []
    for c in CASES:
        if not include_slow and c.slow:
            continue
        if patterns and not any(c.id == p or c.id.startswith(p.rstrip(".") + ".")
                                for p in patterns):
            continue
        chosen.append(c)
    return chosen
