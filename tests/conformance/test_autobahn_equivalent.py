"""Autobahn|Testsuite-equivalent conformance run against ``python -m fastsock serve echo``.

Every case of families 1-7, 9 and 10 (see cases.py and docs/conformance.md),
and the permessage-deflate families 12 and 13 (cases_deflate.py; checked
first against the websockets library's server with compression on),
runs on a fresh connection to the echo server and must be graded OK: both a
NON-STRICT and a FAILED verdict fail the test, with the case id and what the
server did. The whole list runs on fastsock's own loop with the Cython codec;
the fast cases also run on asyncio, on uvloop, with the pure-Python codec
(FASTSOCK_PURE=1) and over IPv6, since the same protocol object serves all of
them.

The judge itself is checked against a deliberately flawed server
(lax_server.py): it must grade the known flaws NON-STRICT or FAILED.
"""
from __future__ import annotations

import importlib.util
import socket
from typing import Iterator

import pytest

from .cases import (CASES, FAILED, NON_STRICT, OK, OP_PING, OP_TEXT, Case, Close, HoldReading,
                    Script, Send, Sleep, frame, msg, run_case, select)
from .cases_deflate import DEFLATE_CASES, select_deflate
from .launch import ServerProcess, server_command
from .lax_server import LaxServer


def _fastsock_echo_missing() -> str | None:
    if importlib.util.find_spec("fastsock.server") is None:
        return "fastsock.server is not built yet"
    try:
        from fastsock.apps import APPS
    except ImportError as exc:
        return f"fastsock.apps cannot be imported: {exc}"
    if "echo" not in APPS:
        return "python -m fastsock serve echo is not registered yet"
    return None


# Cases fastsock is known to miss: case id -> pytest.mark.xfail(strict=True,
# reason=diagnosis). Empty: every case is OK.
KNOWN: dict[str, pytest.MarkDecorator] = {}

VARIANTS = {
    "asyncio": dict(loop="asyncio", env={}),
    "uvloop": dict(loop="uvloop", env={}),
    "pure-codec": dict(loop=None, env={"FASTSOCK_PURE": "1"}),
    "ipv6": dict(loop=None, env={}, host="::1"),
}

# The machine is shared: deadlines (and fail-fast pauses, which only ever get
# more lenient for a correct server) are doubled; a wrong server is caught
# all the same.
PATIENCE = 2.0


def _ipv6_missing() -> str | None:
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        return f"cannot bind ::1: {exc}"
    return None


def _start(loop: str | None, env: dict[str, str], host: str = "127.0.0.1") -> Iterator[str]:
    missing = _fastsock_echo_missing()
    if missing:
        pytest.skip(missing)
    server = ServerProcess(server_command("fastsock", host=host, loop=loop), env=env)
    try:
        yield server.url
    finally:
        status = server.stop()
        server.stderr.seek(0)
        log = server.stderr.read()
        server.stderr.close()
    assert status == 0, f"echo server exited with {status} on SIGTERM:\n{log[-3000:]}"
    assert "Traceback" not in log, f"echo server logged a traceback:\n{log[-3000:]}"


@pytest.fixture(scope="module")
def fastsock_url() -> Iterator[str]:
    yield from _start(None, {})


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "uvloop" and importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    if request.param == "ipv6" and _ipv6_missing():
        pytest.skip(_ipv6_missing())
    yield from _start(**VARIANTS[request.param])


def _params(cases) -> list:
    out = []
    for case in cases:
        marks = [pytest.mark.slow] if case.slow else []
        if case.id in KNOWN:
            marks.append(KNOWN[case.id])
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def _check(url: str, case) -> None:
    result = run_case(url, case, patience=PATIENCE)
    assert result.verdict == OK, (
        f"case {case.id} ({case.description}): {result.verdict}\n  {result.detail}")


@pytest.mark.parametrize("case", _params(CASES))
def test_case(fastsock_url: str, case) -> None:
    _check(fastsock_url, case)


@pytest.mark.parametrize("case", _params(select(include_slow=False)))
def test_case_on_other_loops(variant_url: str, case) -> None:
    _check(variant_url, case)


# --- 12.* and 13.*: permessage-deflate -----------------------------------------------

@pytest.fixture(scope="module")
def websockets_deflate_url() -> Iterator[str]:
    # the reference: the websockets library's server with its default deflate
    if importlib.util.find_spec("websockets") is None:
        pytest.skip("websockets is not installed")
    with ServerProcess(server_command("websockets-deflate")) as server:
        yield server.url


@pytest.mark.parametrize("case", _params(select_deflate(include_slow=False)))
def test_deflate_case_on_websockets(websockets_deflate_url: str, case) -> None:
    # the cases themselves are right: a mature implementation passes them
    _check(websockets_deflate_url, case)


@pytest.mark.parametrize("case", _params(DEFLATE_CASES))
def test_deflate_case(fastsock_url: str, case) -> None:
    _check(fastsock_url, case)


@pytest.mark.parametrize("case", _params(select_deflate(include_slow=False)))
def test_deflate_case_on_other_loops(variant_url: str, case) -> None:
    _check(variant_url, case)


def _late_pings_script() -> Script:
    # 7.1.6 made deterministic: the client stops reading, sends a 4 MiB message
    # and a close, then a ping every 50 ms for a second, then reads again. The
    # server's echo backs up in its socket buffer, and at least one ping
    # arrives after it has processed the close, however loaded the machine.
    big = b"*" * (4 << 20)
    pings = [step for i in range(20) for step in (Sleep(0.05), Send(frame(OP_PING, b"%d" % i)))]
    return Script([HoldReading(), Send(frame(OP_TEXT, big)), Close(1000), *pings,
                   Sleep(0.1), HoldReading(False)], [msg(big)], kill_after=30.0, rcvbuf=8192)


def test_close_handshake_does_not_lose_a_large_echo(fastsock_url: str) -> None:
    # Regression guard for the lingering close (ae24f6a): a server that
    # close()s right after the handshake gets an RST from the late pings and
    # the kernel discards the echo and close frame still in its send buffer.
    _check(fastsock_url, Case("7.1.6-4MiB", "4 MiB message, close, late pings", _late_pings_script))


def test_lingering_close_check_passes_a_lingering_server() -> None:
    # the same script against a server that reads until EOF after the close
    with LaxServer(linger=True) as server:
        result = run_case(server.url, Case("linger", "", _late_pings_script), patience=PATIENCE)
    assert result.verdict == OK, result.detail


# --- the judge can fail --------------------------------------------------------

def _verdicts(server: LaxServer, ids: list[str]) -> dict[str, str]:
    return {c.id: run_case(server.url, c, patience=PATIENCE).verdict for c in select(ids)}


def test_judge_passes_a_correct_enough_server() -> None:
    # the lax server without flaws handles these cases correctly
    with LaxServer() as server:
        verdicts = _verdicts(server, ["1.1.1", "1.2.6", "2.2", "3.2", "5.6", "5.19", "6.2.3",
                                      "6.4.1", "6.4.2", "6.12.1", "7.7.1"])
    assert verdicts == {k: OK for k in verdicts}


def test_judge_grades_utf8_checked_per_whole_frame_non_strict() -> None:
    # the lax server parses whole frames only: it notices the bad octet of
    # 6.4.3/6.4.4 (inside one frame sent in chops) at the end of the frame
    with LaxServer() as server:
        verdicts = _verdicts(server, ["6.4.3", "6.4.4"])
    assert verdicts == {"6.4.3": NON_STRICT, "6.4.4": NON_STRICT}


def test_judge_grades_late_utf8_validation_non_strict() -> None:
    with LaxServer(late_utf8=True) as server:
        verdicts = _verdicts(server, ["6.4.1", "6.4.2", "6.4.3", "6.4.4", "6.3.1"])
    assert verdicts == {"6.4.1": NON_STRICT, "6.4.2": NON_STRICT, "6.4.3": NON_STRICT,
                        "6.4.4": NON_STRICT, "6.3.1": OK}


def test_judge_grades_failing_before_echo_non_strict() -> None:
    with LaxServer(error_first=True) as server:
        verdicts = _verdicts(server, ["3.2", "4.1.3", "4.2.4", "5.15", "3.1"])
    assert verdicts == {"3.2": NON_STRICT, "4.1.3": NON_STRICT, "4.2.4": NON_STRICT,
                        "5.15": NON_STRICT, "3.1": OK}


def test_judge_fails_a_server_that_keeps_tcp_open() -> None:
    with LaxServer(keep_tcp=True) as server:
        verdicts = _verdicts(server, ["1.1.1", "7.3.3"])
    assert verdicts == {"1.1.1": FAILED, "7.3.3": FAILED}


def test_case_list_covers_every_family() -> None:
    families = {c.family for c in CASES}
    assert families == {"1", "2", "3", "4", "5", "6", "7", "9", "10"}
    # 6.5-6.23: every class of Markus Kuhn's UTF-8 test file
    assert {c.id.rsplit(".", 1)[0] for c in CASES if c.family == "6"} >= {f"6.{i}" for i in range(1, 24)}


# --- the permessage-deflate judge can fail (cases 12/13) ---------------------------

def _deflate_verdicts(server: LaxServer, ids: list[str]) -> dict[str, str]:
    return {c.id: run_case(server.url, c, patience=PATIENCE).verdict for c in select_deflate(ids)}


_DEFLATE_PROBES = ["12.1.1", "12.2.4", "13.2.4", "13.3.4", "13.5.4", "13.6.4", "13.7.4"]


def test_deflate_judge_passes_a_correct_deflate_server() -> None:
    with LaxServer(deflate="ok") as server:
        verdicts = _deflate_verdicts(server, _DEFLATE_PROBES)
    assert verdicts == {k: OK for k in _DEFLATE_PROBES}


def test_deflate_judge_fails_context_takeover_after_agreeing_not_to() -> None:
    with LaxServer(deflate="takeover") as server:
        verdicts = _deflate_verdicts(server, ["13.1.4", "13.2.4", "13.6.4"])
    # 13.1 never asked for server_no_context_takeover: keeping context is right there
    assert verdicts == {"13.1.4": OK, "13.2.4": FAILED, "13.6.4": FAILED}


def test_deflate_judge_fails_a_window_larger_than_agreed() -> None:
    with LaxServer(deflate="window") as server:
        verdicts = _deflate_verdicts(server, ["13.3.5", "13.4.5", "13.5.5"])
    # 13.4 asked for 15: a 32 KiB window is within it
    assert verdicts == {"13.3.5": FAILED, "13.4.5": OK, "13.5.5": FAILED}


def test_deflate_judge_fails_rsv1_on_a_continuation_frame() -> None:
    with LaxServer(deflate="rsv1_cont") as server:
        assert _deflate_verdicts(server, ["12.1.4"]) == {"12.1.4": FAILED}


def test_deflate_judge_fails_a_malformed_answer() -> None:
    with LaxServer(deflate="answer") as server:
        result = run_case(server.url, select_deflate(["12.1.1"])[0], patience=PATIENCE)
    assert result.verdict == FAILED and "client_max_window_bits must be 8..15" in result.detail


def test_deflate_judge_fails_a_server_that_declines() -> None:
    # the plain lax server offers no extension: only 13.3/13.5 (window 8 only) may be declined
    with LaxServer() as server:
        verdicts = _deflate_verdicts(server, ["12.1.1", "13.3.1", "13.5.1", "13.7.1"])
    assert verdicts == {"12.1.1": FAILED, "13.3.1": OK, "13.5.1": OK, "13.7.1": FAILED}


def test_deflate_case_list_is_autobahns() -> None:
    ids = [c.id for c in DEFLATE_CASES]
    assert ids == [f"12.{j}.{i}" for j in range(1, 6) for i in range(1, 19)] + \
        [f"13.{j}.{i}" for j in range(1, 8) for i in range(1, 19)]
