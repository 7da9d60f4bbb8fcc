"""The names a user needs come from ``fastsock`` itself (issue 14), at run
time (the lazy ``__getattr__``) and for type checkers (the TYPE_CHECKING
imports), and the two lists agree."""
from __future__ import annotations

import ast
import inspect
import pathlib

import pytest

import fastsock
import fastsock.exceptions

ROOT = pathlib.Path(__file__).resolve().parents[1]

# What issue 14 asks to be importable from fastsock.
NEEDED = ["run", "serve", "connect", "broadcast", "Request", "Response", "CloseCode",
          "Connection", "Server", "WebSocketHandler", "WebSocketOptions",
          "ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError",
          "InvalidHandshakeError", "InvalidResponseError", "ConnectTimeoutError",
          "HandshakeError", "ProtocolError", "FastsockError"]


@pytest.mark.parametrize("name", NEEDED)
def test_needed_name_is_exported(name: str) -> None:
    assert name in fastsock.__all__
    assert getattr(fastsock, name) is not None


def test_every_exception_class_is_exported() -> None:
    classes = {name for name, value in vars(fastsock.exceptions).items()
               if inspect.isclass(value) and issubclass(value, BaseException)
               and value.__module__ == "fastsock.exceptions"}
    assert classes, "no exception classes found"
    assert classes <= set(fastsock.__all__), sorted(classes - set(fastsock.__all__))
    for name in classes:
        assert getattr(fastsock, name) is getattr(fastsock.exceptions, name)
    # the tree: the closing errors under ConnectionClosed, everything under FastsockError
    assert issubclass(fastsock.ConnectionClosedOK, fastsock.ConnectionClosed)
    assert issubclass(fastsock.ConnectionClosedError, fastsock.ConnectionClosed)
    assert issubclass(fastsock.InvalidHandshakeError, fastsock.HandshakeError)
    assert all(issubclass(getattr(fastsock, n), fastsock.FastsockError) for n in classes)


def test_close_code_and_request_response_are_the_real_ones() -> None:
    from fastsock.frame import CloseCode
    from fastsock.websocket.handshake import Request, Response

    assert fastsock.CloseCode is CloseCode and int(fastsock.CloseCode.NORMAL_CLOSURE) == 1000
    assert fastsock.Request is Request and fastsock.Response is Response
    from fastsock.pubsub.fanout import broadcast
    assert fastsock.broadcast is broadcast


def test_type_checking_imports_match_the_lazy_exports() -> None:
    tree = ast.parse((ROOT / "fastsock" / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    seen: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        for alias in node.names:
            # "X as X": re-exported for mypy --strict
            assert alias.asname == alias.name, alias.name
            seen[alias.name] = f"fastsock.{node.module}"
    assert seen == fastsock._EXPORTS
    assert sorted(fastsock.__all__) == sorted(["__version__", *fastsock._EXPORTS])
