"""examples/workers_echo.py and examples/chat_across_processes.py, run as users run them."""
from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
RECV = 5.0


@contextlib.contextmanager
def example(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline().strip() if sel.select(30) else ""
        sel.close()
        yield proc, line
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.timeout(60)
def test_workers_echo_example_serves_from_two_processes_and_drains() -> None:
    with example("examples/workers_echo.py", "0", "2") as (proc, line):
        m = re.fullmatch(r"supervisor (\d+): 2 workers on ws://127\.0\.0\.1:(\d+) \(pids \[(\d+), (\d+)\]\)", line)
        assert m, line
        port, pids = int(m.group(2)), {int(m.group(3)), int(m.group(4))}
        seen = set()
        with contextlib.ExitStack() as stack:
            for i in range(40):
                ws = stack.enter_context(connect(f"ws://127.0.0.1:{port}/"))
                ws.send(f"m{i}")
                reply = ws.recv(timeout=RECV)
                r = re.fullmatch(rf"worker (\d+): 'm{i}'", reply)
                assert r, reply
                seen.add(int(r.group(1)))
            assert seen == pids
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
def test_chat_across_processes_example(redis_process: Any) -> None:
    with example("examples/chat_across_processes.py", "0", redis_process.url) as (_, line_a), \
            example("examples/chat_across_processes.py", "0", redis_process.url) as (_, line_b), \
            contextlib.ExitStack() as stack:
        port_a = int(re.fullmatch(r"listening on ws://127\.0\.0\.1:(\d+)/ROOM", line_a).group(1))  # type: ignore[union-attr]
        port_b = int(re.fullmatch(r"listening on ws://127\.0\.0\.1:(\d+)/ROOM", line_b).group(1))  # type: ignore[union-attr]
        a = stack.enter_context(connect(f"ws://127.0.0.1:{port_a}/kitchen"))
        b = stack.enter_context(connect(f"ws://127.0.0.1:{port_b}/kitchen"))
        a_id = a.recv(timeout=RECV).split()[2]
        assert b.recv(timeout=RECV).endswith("in room:kitchen")
        import time
        deadline = time.monotonic() + RECV
        while True:          # until both processes' subscriptions and presence are in Redis
            b.send("/who")
            if b.recv(timeout=RECV) == "2 in room:kitchen":
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        b.send("hello")
        assert b.recv(timeout=RECV) == "hello" and a.recv(timeout=RECV) == "hello"
        b.send(f"/to {a_id} psst")
        assert a.recv(timeout=RECV) == "(private) psst"
