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

from ..exceptions import InvalidStateError

__all__ = ["State", "Event", "TRANSITIONS", "next_state",
           "CONNECTING", "OPEN", "CLOSING", "CLOSED"]


class State(enum.IntEnum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Event(enum.Enum):
    """What happened to the connection (the input of :func:`next_state`)."""

    OPENED = "opened"                  # the handshake succeeded: attach()
    CLOSE_SENT = "close sent"          # we queued a close frame (close())
    CLOSE_RECEIVED = "close received"  # the peer's close frame arrived
    FAILED = "failed"                  # a protocol error or fail(): close frame + half-close
    LOST = "lost"                      # the transport is gone (connection_lost, abort)


CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED

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

#: The states in which the compiled core's fast paths may run (see
#: ``WebSocketHandler._transition``: the flags also need no extensions).
FAST_STATES = frozenset({OPEN})


def next_state(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``; InvalidStateError if none."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise InvalidStateError(f"no transition from {state.name} on {event.value!r}") from None
