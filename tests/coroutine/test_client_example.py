"""examples/ws_client_features.py runs (redirect, Basic auth, refusal, reconnecting,
callback client) and passes mypy --strict; ``connect``'s overloads type the
callback form's future with the handler class and reject unknown keywords."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ws_client_features.py"
RUN_TIMEOUT = 30.0      # seconds for the example
MYPY_TIMEOUT = 150.0    # seconds for one mypy run


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_client_example_runs() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "opened: HTTP 101",
        "greeting: hello, fastsock client with lobby",
        "echo: ping",
        "refused: HTTP 401 b'who are you?\\n'",
        "feed connection 1: update 1",
        "feed connection 2: update 2",
        "feed connection 3: update 3",
        "callback client: hello, fastsock client with callbacks",
    ]


TYPED = '''
import asyncio
from typing import assert_type

import fastsock
from fastsock.coroutine import Connect
from fastsock.websocket import WebSocketHandler


class Mine(WebSocketHandler):
    pass


async def main() -> None:
    assert_type(fastsock.connect("ws://h/", Mine), "asyncio.Future[Mine]")
    assert_type(fastsock.connect("ws://h/"), Connect)
    mine = await fastsock.connect("ws://h/", Mine, proxy=None, open_timeout=1.0)
    assert_type(mine, Mine)
    fastsock.connect("ws://h/", Mine, max_queue=4)      # line 19: coroutine-only keyword
    fastsock.connect("ws://h/", tiemout=3)              # line 20: a typo
'''


def test_connect_is_typed_for_mypy_strict(tmp_path: Path) -> None:
    typed = tmp_path / "typed_client.py"
    typed.write_text(TYPED)
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
           "--no-error-summary", str(EXAMPLE), str(typed)]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=MYPY_TIMEOUT)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert sorted({(Path(e.split(":")[0]).name, int(e.split(":")[1])) for e in errors}) == [
        ("typed_client.py", 19), ("typed_client.py", 20)], done.stdout
    assert 'Unexpected keyword argument "tiemout"' in done.stdout
