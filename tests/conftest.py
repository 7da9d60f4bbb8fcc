"""Shared fixtures: a fresh reactor per test, on each backend where asked."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from fastsock.reactor import Reactor


def _make(backend: str | None) -> Reactor:
    reactor = Reactor(backend=backend)
    # Every error a callback raises is kept for assertions (and still logged).
    errors: list[dict[str, Any]] = []

    def handler(loop: Reactor, context: dict[str, Any]) -> None:
        errors.append(context)
        loop.default_exception_handler(context)

    reactor.set_exception_handler(handler)
    reactor.errors = errors  # type: ignore[attr-defined]
    return reactor


def _finish(reactor: Reactor) -> None:
    for transport in list(reactor.transports):
        transport.abort()
    if not reactor.is_closed():
        reactor.run_until(timeout=0.01)  # deliver connection_lost, close sockets
        reactor.close()


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    """A reactor on the default backend (epoll on Linux), closed after the test."""
    r = _make(None)
    yield r
    _finish(r)


@pytest.fixture(params=["epoll", "selectors"])
def any_reactor(request: pytest.FixtureRequest) -> Iterator[Reactor]:
    """The same test on each backend."""
    try:
        r = _make(request.param)
    except ValueError as exc:
        pytest.skip(str(exc))
    yield r
    _finish(r)
