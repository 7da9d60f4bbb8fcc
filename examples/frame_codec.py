"""The frame codec on its own, no sockets: a client builds masked frames, a
server parses them in odd-sized chunks, and a broken frame is reported after
the good ones.

    python examples/frame_codec.py            # Cython codec if built
    FASTSOCK_PURE=1 python examples/frame_codec.py
"""
from __future__ import annotations

from fastsock import frame
from fastsock.frame import OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT, FrameParser, build_frame


def main() -> None:
    print("codec:", frame.IMPLEMENTATION)
    # What a client sends: a fragmented text message with a ping in between.
    wire = b"".join([
        build_frame(OP_TEXT, "Grüße, ".encode(), fin=False, mask=True),
        build_frame(OP_PING, b"are you there?", mask=True),
        build_frame(OP_CONTINUATION, "κόσμε".encode(), mask=True),
        build_frame(OP_BINARY, bytes(range(200)), mask=True),
    ])

    server = FrameParser(require_mask=True, max_message_size=1 << 20)
    text = bytearray()
    for i in range(0, len(wire), 7):               # the network splits anywhere
        for f in server.feed(wire[i:i + 7]):
            print(f"  frame opcode={f.opcode} fin={f.fin} {len(f.payload)} bytes")
            if f.opcode in (OP_TEXT, OP_CONTINUATION):
                text += f.payload
    print("text message:", text.decode())

    # A good frame, then text with a UTF-8 surrogate: the good frame still
    # comes out, then the error with its close code.
    bad = build_frame(OP_BINARY, b"ok", mask=True) + build_frame(OP_TEXT, b"\xed\xa0\x80", mask=True)
    server = FrameParser(require_mask=True)
    print("before the error:", [f.payload for f in server.feed(bad)])
    error = server.error
    assert error is not None
    print("error:", type(error).__name__, error.close_code, error)


if __name__ == "__main__":
    main()
