"""fastsock.CloseCode: the IANA names, ints on the wire, used by the exceptions."""
from __future__ import annotations

import struct

import pytest

import fastsock
from fastsock import exceptions
from fastsock.frame import CloseCode

IANA = {
    "NORMAL_CLOSURE": 1000, "GOING_AWAY": 1001, "PROTOCOL_ERROR": 1002,
    "UNSUPPORTED_DATA": 1003, "NO_STATUS_RCVD": 1005, "ABNORMAL_CLOSURE": 1006,
    "INVALID_DATA": 1007, "POLICY_VIOLATION": 1008, "MESSAGE_TOO_BIG": 1009,
    "MANDATORY_EXTENSION": 1010, "INTERNAL_ERROR": 1011, "SERVICE_RESTART": 1012,
    "TRY_AGAIN_LATER": 1013, "BAD_GATEWAY": 1014, "TLS_HANDSHAKE": 1015,
}


def test_names_and_values_are_the_registry() -> None:
    assert {m.name: m.value for m in CloseCode} == IANA


def test_public_from_the_package() -> None:
    assert fastsock.CloseCode is CloseCode
    assert "CloseCode" in fastsock.__all__


def test_same_names_as_websockets() -> None:
    websockets_frames = pytest.importorskip("websockets.frames")
    theirs = {m.name: m.value for m in websockets_frames.CloseCode}
    assert {k: v for k, v in theirs.items() if k in IANA} == IANA


def test_members_are_ints_on_the_wire() -> None:
    assert CloseCode.MESSAGE_TOO_BIG == 1009
    assert struct.pack("!H", CloseCode.INVALID_DATA) == b"\x03\xef"
    assert f"{CloseCode.GOING_AWAY}" == "1001" and str(CloseCode.GOING_AWAY) == "1001"
    assert CloseCode(1002) is CloseCode.PROTOCOL_ERROR
    with pytest.raises(ValueError):
        CloseCode(4000)


@pytest.mark.parametrize("cls, code", [
    (exceptions.ProtocolError, CloseCode.PROTOCOL_ERROR),
    (exceptions.FrameError, CloseCode.PROTOCOL_ERROR),
    (exceptions.InvalidUTF8Error, CloseCode.INVALID_DATA),
    (exceptions.PolicyViolationError, CloseCode.POLICY_VIOLATION),
    (exceptions.MessageTooBigError, CloseCode.MESSAGE_TOO_BIG),
    (exceptions.UnsupportedDataError, CloseCode.UNSUPPORTED_DATA),
])
def test_exceptions_carry_close_codes(cls: type, code: CloseCode) -> None:
    assert cls("x").close_code is code


def test_connection_closed_defaults_to_abnormal_closure() -> None:
    exc = exceptions.ConnectionClosed()
    assert exc.code == CloseCode.ABNORMAL_CLOSURE and str(exc) == "connection closed: 1006"
