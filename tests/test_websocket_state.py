"""The connection's states and transitions (fastsock/websocket/_state.py)."""
from __future__ import annotations

import itertools

import pytest

from fastsock.exceptions import InvalidStateError
from fastsock.websocket import State, WebSocketHandler
from fastsock.websocket._state import TRANSITIONS, Event, next_state
from fastsock.websocket.seam import SansIOSeam


def test_every_listed_transition_and_nothing_else() -> None:
    for state, event in itertools.product(State, Event):
        if (state, event) in TRANSITIONS:
            assert next_state(state, event) is TRANSITIONS[state, event]
        else:
            with pytest.raises(InvalidStateError, match=f"{state.name} on {event.name}"):
                next_state(state, event)


def test_closed_is_final_and_only_loss_reaches_it() -> None:
    assert not [key for key in TRANSITIONS if key[0] is State.CLOSED]
    assert {event for (_, event), target in TRANSITIONS.items()
            if target is State.CLOSED} == {Event.LOST}


def test_the_core_walks_the_table_open_closing_closed() -> None:
    ws = WebSocketHandler()
    assert ws.state is State.CONNECTING and not ws._fast and not ws._rx_fast
    ws.attach(None, None)
    assert ws.state is State.OPEN
    assert ws._rx_fast                       # no extensions, UTF-8 checked by the codec
    assert not ws._fast                      # sans-I/O: no transport to write to at once
    ws.close(1000, "bye")
    assert ws.state is State.CLOSING and not ws._rx_fast
    ws.abort()
    assert ws.state is State.CLOSED


def test_attaching_twice_is_refused() -> None:
    ws = WebSocketHandler()
    ws.attach(None, None, seam=SansIOSeam())
    with pytest.raises(InvalidStateError):
        ws.attach(None, None, seam=SansIOSeam())
