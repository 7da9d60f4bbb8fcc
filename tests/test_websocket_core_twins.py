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

from fastsock.websocket import _core_py, protocol

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
    """Run the sans-I/O protocol and testing-helper suites again with
    FASTSOCK_PURE=1 (pure codec, pure core) in a fresh interpreter."""
    env = dict(os.environ, FASTSOCK_PURE="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_websocket_protocol.py", "tests/test_testing.py",
         "tests/test_websocket_extensions.py", "tests/test_websocket_core_twins.py::test_the_switch_picks_the_core"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
