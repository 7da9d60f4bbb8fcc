"""Start an echo server in a subprocess and learn its ws:// URL.

Every server used here (``python -m fastsock serve echo`` and the reference
servers in ref_server.py) prints one line ``... listening on ws://H:P`` on
stdout when it is ready.
"""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on (ws://\S+)")


def server_command(name: str, host: str = "127.0.0.1", port: int | None = None,
                   loop: str | None = None) -> list[str]:
    """The command line of echo server ``name``; ``loop`` picks fastsock's
    event loop (fastsock, asyncio or uvloop)."""
    # port 0: the server binds any free port and announces it (no probe race)
    port = 0 if port is None else port
    if name == "fastsock":
        return [sys.executable, "-m", "fastsock", "serve", "echo", "--host", host, "--port", str(port),
                "--quiet"] + (["--loop", loop] if loop else [])
    return [sys.executable, str(ROOT / "tests" / "conformance" / "ref_server.py"), name,
            "--host", host, "--port", str(port)]


class ServerProcess:
    """A running echo server; ``url`` once ready. Use as a context manager."""

    def __init__(self, argv: list[str], *, ready_timeout: float = 30.0,
                 env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.argv = argv
        # stderr goes to a file, not a pipe: a server that logs every failed
        # connection would otherwise block once nobody drains the pipe.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.url = self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    break
                match = _LISTENING.search(line)
                if match:
                    return match.group(1)
        finally:
            sel.close()
        self.stop()
        raise RuntimeError(f"{' '.join(self.argv)} did not announce a ws:// URL: {self.stderr_text()[-2000:]}")

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.stderr.close()
