"""Typing of ``fastsock.serve`` (coroutine and callback forms, explicit
keywords) and ``mypy --strict`` on every example in examples/."""
from __future__ import annotations

import importlib.util
import inspect
import json
import pathlib
import re
import subprocess
import sys
from typing import Any, cast

import pytest

import fastsock
from fastsock.coroutine import serve as coroutine_serve
from fastsock.server import ServerState

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed"),
]

ROOT = pathlib.Path(__file__).resolve().parents[2]
MYPY_TIMEOUT = 240   # seconds for one mypy run
CALLBACK_TIMEOUT = 10.0   # seconds for a step on the callback API's reactor


def _mypy(tmp_path: pathlib.Path, *targets: str) -> subprocess.CompletedProcess[str]:
    # follow-imports=silent: fastsock's own errors belong to its own check
    # (tests/test_package.py); here only the targets' are reported.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "cache"), *targets],
        cwd=ROOT, capture_output=True, text=True, timeout=MYPY_TIMEOUT)


def test_mypy_strict_passes_on_every_example(tmp_path: pathlib.Path) -> None:
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.py"))
    assert len(examples) >= 10
    done = _mypy(tmp_path, *examples)
    assert done.returncode == 0, done.stdout + done.stderr


SNIPPET = '''
import fastsock

async def echo(ws: fastsock.Connection) -> None:
    async for message in ws:
        await ws.send(message)

class Echo(fastsock.WebSocketHandler):
    def on_message(self, data: "str | bytes") -> None:
        self.send(data)

async def main(reactor: fastsock.Reactor) -> None:
    server = fastsock.serve(echo, "127.0.0.1", 0, max_queue=4, logger="app")
    reveal_type(server)
    routed = fastsock.serve({"/a": echo, "/b": echo}, subprotocols=["chat"])
    reveal_type(routed)
    callback = fastsock.serve(Echo, "127.0.0.1", 0, reactor=reactor, subprotocols=["chat"])
    reveal_type(callback)
    async with fastsock.serve(echo) as entered:
        reveal_type(entered)
        reveal_type(fastsock.broadcast(entered.connections, "x"))
    client = fastsock.connect("ws://127.0.0.1:1/")
    async with client as ws:
        reveal_type(ws)
        reveal_type(await ws.recv())
    fastsock.serve(echo, "127.0.0.1", 0, no_such_keyword=1)        # error 1
    reveal_type(fastsock.serve(Echo, "127.0.0.1", 0))              # on the running loop
    reveal_type(fastsock.serve({"/a": echo, "/b": Echo}))           # mixed routes
    fastsock.serve(echo, "127.0.0.1", 0, reactor=reactor)           # error 2: coroutine + reactor
    fastsock.serve(echo, "127.0.0.1", 0, max_queue="16")           # error 3
'''


def test_serve_overloads_give_the_real_types_and_reject_unknown_keywords(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET)
    done = _mypy(tmp_path, str(source))
    out = done.stdout
    revealed = [t.replace("builtins.", "") for t in re.findall(r'Revealed type is "([^"]+)"', out)]
    assert revealed == [
        "fastsock.coroutine.server.Server",
        "fastsock.coroutine.server.Server",
        "fastsock.server.WebSocketServer",
        "fastsock.coroutine.server.Server",
        "int",
        "fastsock.coroutine.connection.Connection",
        "str | bytes",
        "fastsock.coroutine.server.Server",
        "fastsock.coroutine.server.Server",
    ], out
    errors = [line for line in out.splitlines() if ": error:" in line]
    lines = SNIPPET.splitlines()
    error_lines = sorted({int(line.split(":")[1]) for line in errors})
    assert error_lines == [i + 1 for i, text in enumerate(lines) if "# error" in text], out


def test_serve_takes_every_server_state_keyword_with_its_default() -> None:
    """Explicit keywords instead of **kwargs: each of ServerState's must be one
    of serve's, with the same default (this fails when one is added there
    and not here)."""
    serve_params = inspect.signature(coroutine_serve).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in serve_params.values())
    for name, param in inspect.signature(ServerState.__init__).parameters.items():
        if name in ("self", "handler", "loop"):
            continue
        assert name in serve_params, f"serve() lacks ServerState's {name}="
        assert serve_params[name].default == param.default, name


def test_callback_form_rejects_coroutine_only_keywords(reactor: Any) -> None:
    class Echo(fastsock.WebSocketHandler):
        pass

    for keyword, value in (("max_queue", 4), ("logger", "x"), ("dumps", lambda o: json.dumps(o))):
        with pytest.raises(TypeError, match=keyword):
            untyped = cast(Any, fastsock.serve)     # the wrong keywords on purpose
            untyped(Echo, "127.0.0.1", 0, reactor=reactor, **{keyword: value})
    server = fastsock.serve(Echo, "127.0.0.1", 0, reactor=reactor, subprotocols=["chat"],
                            handshake_timeout=3.0)
    try:
        assert server.port > 0
    finally:
        server.close()


def test_callback_form_takes_ssl(reactor: Any, tls: Any) -> None:
    class Echo(fastsock.WebSocketHandler):
        def on_message(self, data: Any) -> None:
            self.send(data)

    class Client(fastsock.WebSocketHandler):
        def __init__(self) -> None:
            super().__init__()
            self.received: list[Any] = []

        def on_message(self, data: Any) -> None:
            self.received.append(data)

    server = fastsock.serve(Echo, "127.0.0.1", 0, reactor=reactor, ssl=tls.server_context())
    try:
        future = fastsock.connect(f"wss://localhost:{server.port}/", Client, reactor=reactor,
                                  ssl=tls.client_context())
        client = reactor.run_until_complete(future, timeout=CALLBACK_TIMEOUT)
        assert client.transport.get_extra_info("ssl_object") is not None
        client.send("over tls")
        assert reactor.run_until(lambda: client.received, timeout=CALLBACK_TIMEOUT)
        assert client.received == ["over tls"]
        client.close()
        assert reactor.run_until(lambda: client.close_code is not None, timeout=CALLBACK_TIMEOUT)
    finally:
        server.close()
