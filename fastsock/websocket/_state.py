"""The states of a WebSocket connection and every transition, in one table.

As in h11's ``_state.py``: the connection core does not assign states; it
reports what happened (an :class:`Event`) and :func:`next_state` looks the
pair up in :data:`TRANSITIONS`. A pair that is not in the table is a bug in
the caller and raises :class:`~fastsock.exceptions.InvalidStateError`, so an
impossible sequence (opening twice, a close after the connection is gone)
fails loudly instead of leaving the core in a state nobody designed.

The states are RFC 6455's (section 4 and 7): ``CONNECTING`` until the
handshake is done and the core is attached, ``OPEN`` while messages flow,
``CLOSING`` once a close frame went either way (or the connection was
failed), ``CLOSED`` when the transport is gone.
"""
from __future__ import annotations

import enum
from typing import Optional

from ..exceptions import InvalidStateError

__all__ = ["State", "Event", "TRANSITIONS", "NEXT", "FAST", "next_state",
           "CONNECTING", "OPEN", "CLOSING", "CLOSED",
           "OPENED", "CLOSE_SENT", "CLOSE_RECEIVED", "FAILED", "LOST"]


class State(enum.IntEnum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Event(enum.IntEnum):
    """What happened to the connection (the input of :func:`next_state`)."""

    OPENED = 0          # the handshake succeeded: attach()
    CLOSE_SENT = 1      # we queued a close frame (close())
    CLOSE_RECEIVED = 2  # the peer's close frame arrived
    FAILED = 3          # a protocol error or fail(): close frame + half-close
    LOST = 4            # the transport is gone (connection_lost, abort)


CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED
OPENED, CLOSE_SENT, CLOSE_RECEIVED, FAILED, LOST = (
    Event.OPENED, Event.CLOSE_SENT, Event.CLOSE_RECEIVED, Event.FAILED, Event.LOST)

#: (state, event) -> the next state. Everything not listed is an error.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (CONNECTING, Event.OPENED): OPEN,
    # A handler whose on_open raised is failed before it ever ran.
    (CONNECTING, Event.FAILED): CLOSING,
    (CONNECTING, Event.LOST): CLOSED,
    (OPEN, Event.CLOSE_SENT): CLOSING,
    (OPEN, Event.CLOSE_RECEIVED): CLOSING,
    (OPEN, Event.FAILED): CLOSING,
    (OPEN, Event.LOST): CLOSED,
    # Our close crossed the peer's, or a late error after our close frame.
    (CLOSING, Event.CLOSE_SENT): CLOSING,
    (CLOSING, Event.CLOSE_RECEIVED): CLOSING,
    (CLOSING, Event.FAILED): CLOSING,
    (CLOSING, Event.LOST): CLOSED,
}

#: The same table indexed ``NEXT[state][event]`` (None: no transition).
#: Enum members hash in Python; a connection changes state on every open
#: and close, so the core indexes tuples with them instead (C10k connect).
NEXT: tuple[tuple[Optional[State], ...], ...] = tuple(
    tuple(TRANSITIONS.get((state, event)) for event in Event) for state in State)

#: ``FAST[state]``: may the compiled core's fast paths run in this state?
#: (``WebSocketHandler._transition``: the flags also need no extensions.)
FAST: tuple[bool, ...] = tuple(state is OPEN for state in State)


def next_state(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``; InvalidStateError if none."""
    target = NEXT[state][event]
    if target is None:
        raise InvalidStateError(f"no transition from {state.name} on {event.name}")
    return target
