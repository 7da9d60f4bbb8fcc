"""Differential test of the WebSocket core: the same client octets, cut into
the same chunks, and the same application calls (send, ping, pong, close,
broadcast) give the same server octets and the same callbacks on the
compiled core (fastsock/websocket/_core.pyx) and on its twin
(_core_py.py, FASTSOCK_PURE=1).

Each batch of random scenarios (hypothesis) runs in two fresh interpreters
(tests/core_diff_driver.py), each scenario both sans-I/O (``data_received``
with bytes) and over a real loopback connection on fastsock's reactor,
where the compiled core is fed through the pointer path (the transport
lends its receive buffer to ``chunk_received``), which has no twin. All
four outputs of a scenario must be equal.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conformance.fuzzer import build_frame

ROOT = pathlib.Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "core_diff_driver.py"

try:
    from fastsock.websocket import _core  # noqa: F401
    HAVE_CORE = True
except ImportError:
    HAVE_CORE = False

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
_payload = st.one_of(_text, st.binary(max_size=300),
                     st.sampled_from(["x" * 125, "é" * 70, b"y" * 126, b"z" * 65536]))
_message = st.tuples(_payload, st.integers(min_value=0, max_value=4),   # fragments
                     st.booleans())                                     # ping before it
_action = st.one_of(
    st.just(["echo"]),
    st.builds(lambda s: ["send_text", s], _text),
    st.builds(lambda b: ["send_binary", b.hex()], st.binary(max_size=200)),
    st.builds(lambda b: ["ping", b.hex()], st.binary(max_size=20)),
    st.builds(lambda b: ["pong", b.hex()], st.binary(max_size=20)),
    st.just(["broadcast"]),
)
_ending = st.one_of(
    st.builds(lambda c: ("client_close", c), st.sampled_from([1000, 1001, 4000, None])),
    st.just(("bad_utf8", None)),          # the server fails with 1007
    st.just(("reserved_opcode", None)),   # 1002
    st.just(("unmasked", None)),          # 1002
    st.builds(lambda c: ("server_close", c), st.sampled_from([1000, 4001])),
)


def _frames(payload: Any, parts: int) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    op = OP_TEXT if isinstance(payload, str) else OP_BINARY
    if parts <= 1 or len(data) < parts:
        return build_frame(op, data)
    step = len(data) // parts
    cuts = [data[i * step:(i + 1) * step] for i in range(parts - 1)] + [data[(parts - 1) * step:]]
    return b"".join(build_frame(op if i == 0 else OP_CONT, c, fin=(i == parts - 1))
                    for i, c in enumerate(cuts))


@st.composite
def scenario(draw: Any) -> dict[str, Any]:
    messages = draw(st.lists(_message, min_size=1, max_size=6))
    actions = draw(st.dictionaries(st.integers(min_value=0, max_value=len(messages) - 1),
                                   st.lists(_action, min_size=1, max_size=3), max_size=3))
    kind, code = draw(_ending)
    stream = b""
    for payload, parts, ping in messages:
        if ping:
            stream += build_frame(OP_PING, b"hi")
        stream += _frames(payload, parts)
    if kind == "client_close":
        stream += build_frame(OP_CLOSE, b"" if code is None else code.to_bytes(2, "big") + b"bye",
                              mask=True)
    elif kind == "bad_utf8":
        stream += build_frame(OP_TEXT, b"ok \xed\xa0\x80")
    elif kind == "reserved_opcode":
        stream += build_frame(3, b"?")
    elif kind == "unmasked":
        stream += build_frame(OP_BINARY, b"no mask", mask=False)
    else:   # the application closes on the last message; the client answers
        actions = dict(actions)
        actions[len(messages) - 1] = [["echo"], ["close", code, "app"]]
        stream += build_frame(OP_CLOSE, code.to_bytes(2, "big") + b"app")
    cuts = draw(st.lists(st.integers(min_value=1, max_value=len(stream) - 1), max_size=8)) \
        if len(stream) > 1 else []
    borders = sorted(set(cuts) | {0, len(stream)})
    chunks = [stream[a:b].hex() for a, b in zip(borders, borders[1:])]
    return {"chunks": chunks, "actions": {str(k): v for k, v in actions.items()}}


def _run(scenarios: list[dict[str, Any]], pure: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("FASTSOCK_PURE", None)
    if pure:
        env["FASTSOCK_PURE"] = "1"
    done = subprocess.run([sys.executable, str(DRIVER)], input=json.dumps(scenarios), cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.skipif(not HAVE_CORE, reason="fastsock.websocket._core is not built")
@settings(max_examples=8, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(batch=st.lists(scenario(), min_size=8, max_size=8))
def test_compiled_core_and_twin_send_the_same_octets(batch: list[dict[str, Any]]) -> None:
    compiled = _run(batch, pure=False)
    twin = _run(batch, pure=True)
    assert compiled["core"] == "cython" and twin["core"] == "python"
    # the compiled core was fed through the pointer path, the twin with bytes
    assert all(r["socket"]["pointer_path"] is True for r in compiled["results"])
    assert all(r["socket"]["pointer_path"] is False for r in twin["results"])
    for i, (c, p) in enumerate(zip(compiled["results"], twin["results"])):
        for mode in ("sansio", "socket"):
            assert "error" not in c[mode] and "error" not in p[mode], (i, mode, c[mode], p[mode])
        # the four runs of a scenario: compiled/twin x bytes/pointer path
        assert c["sansio"] == p["sansio"], (i, batch[i])
        assert c["socket"]["out"] == p["socket"]["out"], (i, batch[i])
        assert c["socket"]["log"] == p["socket"]["log"], (i, batch[i])
        assert c["socket"]["out"] == c["sansio"]["out"], (i, batch[i])
        # sans-I/O there is no connection_lost, so no on_close at the end
        assert _without_close(c["socket"]["log"]) == _without_close(c["sansio"]["log"]), (i, batch[i])
        # and the run went to its end: the server closed after a close frame
        assert c["socket"]["log"] and c["socket"]["log"][-1][0] == "close", c["socket"]["log"]
        assert _last_opcode(c["socket"]["out"]) == OP_CLOSE


def _without_close(log: list[Any]) -> list[Any]:
    return log[:-1] if log and log[-1][0] == "close" else log


def _last_opcode(out_hex: str) -> int:
    """The opcode of the last frame in a server's (unmasked) output."""
    data, pos, last = bytes.fromhex(out_hex), 0, -1
    while pos + 2 <= len(data):
        n = data[pos + 1] & 0x7F
        h = 2 + (2 if n == 126 else 8 if n == 127 else 0)
        if n >= 126:
            n = int.from_bytes(data[pos + 2:pos + h], "big")
        last = data[pos] & 0x0F
        pos += h + n
    assert pos == len(data), "the output ends inside a frame"
    return last
