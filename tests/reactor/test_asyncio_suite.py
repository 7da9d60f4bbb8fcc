"""CPython's own asyncio test-suite on fastsock's loop, compared with asyncio and uvloop.

For each test_asyncio module (see ``asyncio_suite_runner.MODULES``) the same
tests run on asyncio's SelectorEventLoop, on uvloop and on
``fastsock.new_event_loop()`` (compiled, and pure with FASTSOCK_PURE=1),
each loop in its own watched subprocess. A
test that passes on the reference loops must pass on fastsock's loop, unless
``asyncio_suite_runner.EXCLUDED`` says why not. The reference results are
computed in this run (once per session), never stored.

Run alone: ``.venv/bin/python -m pytest tests/reactor/test_asyncio_suite.py``.
Update the docs table: ``.venv/bin/python tests/reactor/asyncio_suite_runner.py report``.
"""
from __future__ import annotations

import warnings

import asyncio_suite_runner as runner
import pytest

# Room beyond the runner's own limits for starting interpreters and the
# slowest machine in CI (pytest-timeout's default of 120 s is too short for
# a module that runs on three loops).
TIMEOUT_MARGIN = 60.0
# The loop that the self-test breaks on purpose and the module it runs.
BROKEN_LOOP = "broken"
BROKEN_MODULE = "test_sock_lowlevel"
# Tests of BROKEN_MODULE that send with sock_sendall and then check the reply.
BROKEN_CAUGHT = {"SockTests.test_sock_client_ops", "SockTests.test_huge_content"}

_results: dict[tuple[str, str], runner.ModuleResult] = {}


def result(module: str, loop: str) -> runner.ModuleResult:
    """One module on one loop, run once per session."""
    key = (module, loop)
    if key not in _results:
        _results[key] = runner.run_module(module, loop)
    return _results[key]


def references(module: str) -> list[runner.ModuleResult]:
    refs = [result(module, loop) for loop in runner.MODULES[module].references]
    for ref in refs:
        assert not ref.fatal, f"reference loop {ref.loop} did not run {module}:\n{ref.fatal}"
    return refs


def _module_timeout(module: str) -> float:
    # the references (run by whichever case comes first), the loop under
    # test, and the re-run of its failures
    loops = len(runner.MODULES[module].references) + 2
    return loops * runner.MODULES[module].budget + TIMEOUT_MARGIN


def _describe(found: dict[str, runner.Outcome]) -> str:
    parts = []
    for test, outcome in found.items():
        tail = "\n".join(outcome.detail.strip().splitlines()[-6:])
        parts.append(f"--- {test}: {outcome.outcome}\n{tail}")
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("loop", runner.LOOPS_UNDER_TEST)
@pytest.mark.parametrize("module", [
    pytest.param(m, marks=pytest.mark.timeout(_module_timeout(m))) for m in runner.MODULES])
def test_fastsock_passes_what_the_reference_loops_pass(module: str, loop: str) -> None:
    refs = references(module)
    expected = runner.expected_passes(refs)
    # Otherwise this test could not fail.
    assert expected, f"no test of {module} passes on {'+'.join(r.loop for r in refs)}"
    tested = result(module, loop)
    assert not tested.fatal or tested.passed(), f"{loop} could not run {module}:\n{tested.fatal}"
    found = runner.regressions(refs, tested)
    if found:
        # Once more, alone and in a fresh process, as regrtest re-runs its
        # failures: a test that passes then is reported as flaky, not failed.
        again = runner.run_module(module, loop, only=set(found))
        flaky = sorted(i for i in found if i in again.passed())
        if flaky:
            warnings.warn(f"{module}: failed on {loop}, then passed alone: {flaky}")
        found = {i: o for i, o in found.items() if i not in flaky}
    assert not found, (
        f"{len(found)} of {len(expected)} tests of {module} that pass on "
        f"{'+'.join(r.loop for r in refs)} do not pass on {loop}:\n{_describe(found)}")


@pytest.mark.slow
def test_exclusions_name_tests_that_exist() -> None:
    # A renamed or removed test must not leave a stale exclusion behind.
    for key, why in runner.EXCLUDED.items():
        module, _, test = key.partition("::")
        assert module in runner.MODULES, key
        assert why.strip(), f"{key} has no reason"
        assert test in result(module, "asyncio").outcomes, f"{key} is not a test of {module}"


@pytest.mark.slow
@pytest.mark.timeout(2 * runner.MODULES[BROKEN_MODULE].budget + TIMEOUT_MARGIN)
def test_comparison_catches_a_broken_loop() -> None:
    # asyncio's loop with sock_sendall sending its bytes reversed: the
    # comparison must report the tests that depend on it, and only fail
    # where the reference passed.
    refs = [result(BROKEN_MODULE, "asyncio")]
    broken = result(BROKEN_MODULE, BROKEN_LOOP)
    found = runner.regressions(refs, broken)
    assert BROKEN_CAUGHT <= set(found), _describe(found)
    assert set(found) <= runner.expected_passes(refs)
    assert all(o.outcome != runner.PASS for o in found.values())
