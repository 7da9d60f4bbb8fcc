"""The WebSocket per-message core has two twins: fastsock/websocket/_core.pyx
(compiled) and _core_py.py. Both must behave the same: the sans-I/O protocol
tests run on each, and the stub matches both."""
from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsock.frame import build_frame
from fastsock.websocket import WebSocketHandler, WebSocketOptions, _core_py, protocol

try:
    from fastsock.websocket import _core as _core_c
except ImportError:
    _core_c = None

ROOT = pathlib.Path(__file__).resolve().parent.parent
STUB = ROOT / "fastsock" / "websocket" / "_core.pyi"


def test_the_switch_picks_the_core() -> None:
    if os.environ.get("FASTSOCK_PURE") == "1" or _core_c is None:
        assert protocol.CORE_IMPLEMENTATION == "python"
        assert protocol.HandlerCore is _core_py.HandlerCore
    else:
        assert protocol.CORE_IMPLEMENTATION == "cython"
        assert protocol.HandlerCore is _core_c.HandlerCore
        assert protocol.TurnFlush is _core_c.TurnFlush


def _stub_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            names[node.name] = members
    return names


@pytest.mark.parametrize("module", [
    _core_py,
    pytest.param(_core_c, marks=pytest.mark.skipif(_core_c is None, reason="_core.pyx not built")),
], ids=["python", "cython"])
def test_the_stub_matches_each_twin(module: object) -> None:
    stub = _stub_names()
    assert set(stub) == {"HandlerCore", "TurnFlush"}
    for cls_name, members in stub.items():
        cls = getattr(module, cls_name)
        for name in members:
            if name == "__init__":
                continue
            assert hasattr(cls, name), f"{module.__name__}.{cls_name} has no {name}"


def test_the_protocol_tests_pass_on_the_pure_core() -> None:
    """Run the sans-I/O protocol, testing-helper and chunking tests again with
    FASTSOCK_PURE=1 (pure codec, pure core) in a fresh interpreter."""
    env = dict(os.environ, FASTSOCK_PURE="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_websocket_protocol.py", "tests/test_testing.py",
         "tests/test_websocket_extensions.py",
         "tests/test_websocket_core_twins.py::test_the_switch_picks_the_core",
         "tests/test_websocket_core_twins.py::test_any_chunking_delivers_every_message_in_order"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout

_messages = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=300),
              st.sampled_from(["x" * 125, "y" * 126, b"z" * 65535, b"w" * 65536])),
    min_size=1, max_size=12)


class _Collect(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[object] = []

    def on_message(self, data: object) -> None:
        self.got.append(data)


@settings(max_examples=150, deadline=None)
@given(messages=_messages, cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=6),
       pings=st.lists(st.booleans(), max_size=12))
def test_any_chunking_delivers_every_message_in_order(
        messages: list[object], cuts: list[int], pings: list[bool]) -> None:
    """Whatever the chunk borders, and with pings between messages, the
    handler sees exactly the messages sent, in order, with their types."""
    stream = b""
    for i, m in enumerate(messages):
        if i < len(pings) and pings[i]:
            stream += build_frame(9, b"p", mask=True)
        payload = m.encode() if isinstance(m, str) else m
        stream += build_frame(1 if isinstance(m, str) else 2, payload, mask=True)
    borders = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    ws = _Collect()
    ws.attach(None, None, options=WebSocketOptions(ping_interval=None, max_message_size=None))
    for a, b in zip(borders, borders[1:]):
        ws.data_received(stream[a:b])
    assert ws.got == messages
    assert ws.close_code is None
