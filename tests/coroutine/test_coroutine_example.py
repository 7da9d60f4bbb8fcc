"""examples/ws_coroutine_echo.py runs on fastsock's loop, asyncio's and uvloop's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 30.0   # seconds for the example to finish


@pytest.mark.parametrize("loop", ["fastsock", "asyncio", "uvloop"])
def test_coroutine_echo_example(loop: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "ws_coroutine_echo.py"), loop],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == ["text: hello", "binary: b'\\x00\\x01'", "fragments: fragmented",
                         "json: {'n': 1}"]
    assert lines[4].startswith("ping: ") and lines[5] == "closed with 1000"
