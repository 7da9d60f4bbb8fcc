"""Run CPython's own asyncio tests (``test.test_asyncio``) on a chosen event loop.

The interpreter ships asyncio's test-suite. Its mixins take their loop from
``create_event_loop()``, ``new_loop()`` or the event-loop policy, so a loop
is tested by subclassing the stock concrete classes and overriding those.

Three roles live in this file:

* the child (``python asyncio_suite_runner.py child ...``): builds the test
  classes of one module on one loop, runs them with unittest and appends
  one JSON line per event (plan, start, outcome) to a file, flushed at once,
  so a hang or crash loses nothing already run;
* the parent (``run_module``): starts the child in its own process group,
  watches the file and kills the group when one test runs longer than
  ``PER_TEST_TIMEOUT`` or the module longer than its budget, records that
  test as ``timeout`` and resumes with the tests not run yet;
* the report (``python asyncio_suite_runner.py report``): runs every module
  on every loop and writes the results table and the exclusion list into
  docs/asyncio-conformance.md.

The rule checked by tests/reactor/test_asyncio_suite.py: every test that
passes on asyncio's own loop and on uvloop passes on fastsock's loop, except
the ids in ``EXCLUDED`` (the one place they are listed, each with a reason);
"fastsock-pure" is the same loop with FASTSOCK_PURE=1, held to the same rule.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "asyncio-conformance.md"

# loop name -> "module:callable" returning a new event loop (resolved in the child)
LOOP_FACTORIES: dict[str, str] = {
    "asyncio": "asyncio:SelectorEventLoop",
    "uvloop": "uvloop:new_event_loop",
    "fastsock": "fastsock:new_event_loop",
    "fastsock-pure": "fastsock:new_event_loop",   # with FASTSOCK_PURE=1 (LOOP_ENV)
    # Not a real loop: asyncio's with a broken sock_sendall. The self-test
    # runs it to prove that the comparison catches a regression.
    "broken": "asyncio_suite_runner:broken_loop",
}
# Environment a loop's child runs with: the pure-Python twin of fastsock's
# loop and transports is the same loop with every compiled part switched off.
LOOP_ENV: dict[str, dict[str, str]] = {"fastsock-pure": {"FASTSOCK_PURE": "1"}}
REFERENCE_LOOPS = ("asyncio", "uvloop")
LOOPS_UNDER_TEST = ("fastsock", "fastsock-pure")

# One test may run this long before the parent kills it (seconds). The
# slowest test on asyncio's loop takes ~1.5 s on this 2-core machine.
PER_TEST_TIMEOUT = 15.0
# Cap on test.support.LONG_TIMEOUT/SHORT_TIMEOUT inside the child, as
# regrtest's --timeout does, so a test waiting on a hung peer gives up
# (and reports an error) before the parent's watchdog has to kill it.
SUPPORT_TIMEOUT_CAP = 10.0
# After the child says it is done, how long it may take to exit.
EXIT_GRACE = 5.0
# How often the parent reads the child's result file.
POLL_INTERVAL = 0.1
# Traceback characters kept per failed test.
DETAIL_CHARS = 3000

# Outcomes a test can have.
PASS, FAIL, ERROR, SKIP = "pass", "fail", "error", "skip"
XFAIL, XPASS = "xfail", "xpass"           # expectedFailure decorators
TIMEOUT, NOT_RUN = "timeout", "not-run"   # decided by the parent
OUTCOMES = (PASS, FAIL, ERROR, SKIP, XFAIL, XPASS, TIMEOUT, NOT_RUN)


# --------------------------------------------------------------------------
# Which tests run: module name -> (wall-clock budget per loop in seconds,
# builder of the concrete classes). Each builder subclasses the class that
# CPython itself runs on Linux (the epoll / selector one) and only swaps
# where its loop comes from.

def _events(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_events as m
    # EventLoopTestsMixin + SubprocessTestsMixin with a SafeChildWatcher,
    # exactly as EPollEventLoopTests runs them.
    return [_subclass("EventLoopTests", m.EPollEventLoopTests,
                      create_event_loop=_loop_method(factory))]


def _sock_lowlevel(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_sock_lowlevel as m
    return [_subclass("SockTests", m.EPollEventLoopTests,
                      create_event_loop=_loop_method(factory))]


def _sendfile(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_sendfile as m
    # SendfileMixin + SockSendfileMixin
    return [_subclass("SendfileTests", m.EPollEventLoopTests,
                      create_event_loop=_loop_method(factory))]


def _streams(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_streams as m
    # setUp calls asyncio.new_event_loop(): the policy gives our loop.
    return [_subclass("StreamTests", m.StreamTests)]


def _ssl(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_ssl as m
    # setUp uses the policy; new_loop() is used by a few tests directly.
    return [_subclass("SSLTests", m.TestSSL, new_loop=_loop_method(factory))]


def _sslproto(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_sslproto as m
    # Only the start_tls tests: SslProtoHandshakeTests drive asyncio's
    # SSLProtocol class with mocks and never touch the loop's transports.
    return [_subclass("StartTLSTests", m.SelectorStartTLSTests,
                      new_loop=_loop_method(factory))]


def _buffered_proto(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_buffered_proto as m
    return [_subclass("BufferedProtocolTests", m.BufferedProtocolSelectorTests,
                      new_loop=_loop_method(factory))]


def _server(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_server as m
    # SelectorStartServerTests adds the Unix-socket tests to BaseStartServer.
    return [_subclass("StartServerTests", m.SelectorStartServerTests,
                      new_loop=_loop_method(factory))]


def _subprocess(factory: Callable[[], asyncio.AbstractEventLoop]) -> list[type]:
    from test.test_asyncio import test_subprocess as m
    # Beyond the listed mixins: asyncio.create_subprocess_* end to end. setUp
    # takes the loop from the policy; the ThreadedChildWatcher is asyncio's
    # default (the other watchers test asyncio's watcher classes, not a loop).
    return [_subclass("SubprocessTests", m.SubprocessThreadedWatcherTests)]


@dataclasses.dataclass(frozen=True)
class Module:
    budget: float   # seconds one loop may spend on the whole module
    build: Callable[[Callable[[], asyncio.AbstractEventLoop]], list[type]]
    # The loops whose passing tests fastsock's loop must pass too.
    references: tuple[str, ...] = REFERENCE_LOOPS


MODULES: dict[str, Module] = {
    "test_events": Module(60.0, _events),
    "test_sock_lowlevel": Module(25.0, _sock_lowlevel),
    # uvloop implements neither loop.sendfile() nor loop.sock_sendfile()
    # (NotImplementedError), so "passes on both" would hold for no test and
    # the module would check nothing: asyncio's loop alone is the reference.
    "test_sendfile": Module(25.0, _sendfile, references=("asyncio",)),
    "test_streams": Module(25.0, _streams),
    "test_ssl": Module(60.0, _ssl),
    "test_sslproto": Module(40.0, _sslproto),
    "test_buffered_proto": Module(15.0, _buffered_proto),
    # uvloop's Server.sockets is a list, so both tests fail on uvloop at
    # their last check (srv.sockets == () after close) and "passes on both"
    # would check nothing: asyncio's loop alone is the reference.
    "test_server": Module(15.0, _server, references=("asyncio",)),
    "test_subprocess": Module(40.0, _subprocess),
}

# Tests that pass on asyncio's loop and on uvloop but check a private detail
# of asyncio's implementation, so fastsock's loop need not pass them.
# "module::Class.test" -> why. The one list; the docs are generated from it.
EXCLUDED: dict[str, str] = {
}


def _loop_method(factory: Callable[[], asyncio.AbstractEventLoop]) -> Callable[[Any], Any]:
    def make_loop(self: Any) -> asyncio.AbstractEventLoop:
        return factory()
    return make_loop


def _subclass(name: str, base: type, **methods: Any) -> type:
    # __module__ is this module, so unittest runs our setUpModule and
    # tearDownModule rather than test_asyncio's (which reset the policy).
    from test.test_asyncio import utils as test_utils
    if issubclass(base, test_utils.TestCase):
        methods.setdefault("close_loop", staticmethod(_close_loop))
    return type(name, (base,), {"__module__": __name__, "__qualname__": name, **methods})


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """test_utils.TestCase.close_loop, through public API where it must.

    The stock one reads ``loop._default_executor``, which uvloop's loop does
    not have; without this every uvloop test would error in its cleanup and
    nothing would count as passing on both reference loops.
    """
    from test import support
    from test.test_asyncio import utils as test_utils
    if hasattr(loop, "_default_executor"):
        test_utils.TestCase.close_loop(loop)
        return
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    # As the stock one: wait (not forever) for subprocesses' watcher threads.
    policy = support.maybe_get_event_loop_policy()
    watcher = policy.get_child_watcher() if policy is not None else None
    if isinstance(watcher, asyncio.ThreadedChildWatcher):
        for thread in list(watcher._threads.values()):  # type: ignore[attr-defined]
            thread.join(timeout=support.SHORT_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError(f"thread {thread} still alive: subprocess still running")


# --------------------------------------------------------------------------
# The child.

class _FactoryPolicy(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc,valid-type]
    """The default Unix policy (child watchers included) with our loop.

    Used for every loop alike: uvloop's own policy has no child watcher API,
    which test_events' UnixEventLoopTestsMixin calls.
    """

    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        super().__init__()
        self._factory = factory

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return self._factory()


_policy: _FactoryPolicy | None = None


def setUpModule() -> None:
    asyncio.set_event_loop_policy(_policy)


def tearDownModule() -> None:
    asyncio.set_event_loop_policy(None)


def _ensure_policy(test: unittest.TestCase) -> None:
    # A test may reset the policy (set_event_loop_policy(None)); put ours
    # back before each test so the next one still gets the loop under test.
    if asyncio.get_event_loop_policy() is not _policy:
        asyncio.set_event_loop_policy(_policy)


class _BrokenLoop(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """asyncio's loop with a regression: sock_sendall sends the bytes reversed.

    Same length, so a peer waiting for all of it does not hang the test.
    """

    async def sock_sendall(self, sock: Any, data: Any) -> None:
        await super().sock_sendall(sock, bytes(data)[::-1])


def broken_loop() -> asyncio.AbstractEventLoop:
    return _BrokenLoop()


def test_id(test: unittest.TestCase) -> str:
    """Class.method for a test; the description for setUpClass errors etc."""
    name = getattr(test, "_testMethodName", None)
    if name is None:
        return str(test)
    return f"{type(test).__name__}.{name}"


class _JsonResult(unittest.TestResult):
    """Appends start and outcome of each test to a file, one JSON per line."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self._out = out
        self._subtest_failed: set[str] = set()

    def _emit(self, **record: Any) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def _outcome(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        self._emit(event="outcome", id=test_id(test), outcome=outcome,
                   detail=detail[-DETAIL_CHARS:], t=time.time())

    def _format(self, err: Any, test: unittest.TestCase) -> str:
        return self._exc_info_to_string(err, test)  # type: ignore[attr-defined,no-any-return]

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        _ensure_policy(test)
        self._emit(event="start", id=test_id(test), t=time.time())

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        if test_id(test) not in self._subtest_failed:
            self._outcome(test, PASS)

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._outcome(test, FAIL, self._format(err, test))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._outcome(test, ERROR, self._format(err, test))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._outcome(test, SKIP, reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._outcome(test, XFAIL)

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._outcome(test, XPASS)

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            # Reported against the test itself: one failed subtest fails it.
            self._subtest_failed.add(test_id(test))
            kind = FAIL if issubclass(err[0], test.failureException) else ERROR
            self._outcome(test, kind, f"{subtest}\n" + self._format(err, test))


def _iter_tests(suite: unittest.TestSuite) -> Iterable[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def _resolve(spec: str) -> Callable[[], asyncio.AbstractEventLoop]:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def _cap_support_timeouts() -> None:
    from test import support
    for name in ("LONG_TIMEOUT", "SHORT_TIMEOUT"):
        setattr(support, name, min(getattr(support, name), SUPPORT_TIMEOUT_CAP))


def child_main(loop: str, module: str, out_path: str, done: set[str],
               only: set[str] | None = None) -> int:
    global _policy
    with open(out_path, "a", encoding="utf-8") as out:
        def emit(**record: Any) -> None:
            out.write(json.dumps(record) + "\n")
            out.flush()
        try:
            _cap_support_timeouts()  # before test modules read them
            factory = _resolve(LOOP_FACTORIES[loop])
            _policy = _FactoryPolicy(factory)
            classes = MODULES[module].build(factory)
        except BaseException:
            emit(event="fatal", detail=traceback.format_exc()[-DETAIL_CHARS:])
            return 1
        loader = unittest.TestLoader()
        suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in classes)
        tests = [t for t in _iter_tests(suite)
                 if test_id(t) not in done and (only is None or test_id(t) in only)]
        emit(event="plan", ids=[test_id(t) for t in tests])
        result = _JsonResult(out)
        unittest.TestSuite(tests).run(result)
        emit(event="done")
    return 0


# --------------------------------------------------------------------------
# The parent.

@dataclasses.dataclass
class Outcome:
    outcome: str
    detail: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class ModuleResult:
    module: str
    loop: str
    outcomes: dict[str, Outcome]
    fatal: str = ""          # the loop could not even be created / imported
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        counts = {o: 0 for o in OUTCOMES}
        for outcome in self.outcomes.values():
            counts[outcome.outcome] += 1
        return counts

    def passed(self) -> set[str]:
        return {i for i, o in self.outcomes.items() if o.outcome == PASS}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The child leads its own process group: this ends it and whatever
    # subprocesses its tests started, and nothing else.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _end_leftovers(proc: subprocess.Popen[bytes]) -> None:
    # The child has exited, but a test may have left a subprocess of its own
    # behind (asyncio's subprocess tests start `python -c "time.sleep(3600)"`):
    # its process group still has the child's number (Linux does not reuse a
    # pid while a group of that id lives), so this ends exactly those.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_child(loop: str, module: str, done: set[str], deadline: float,
               results: dict[str, Outcome], plan: list[str],
               only: set[str] | None) -> tuple[str, str | None, str]:
    """One child process. Returns (how it ended, test running at a kill, text).

    How it ended: "done", "exited" (crashed), "test-timeout", "idle-timeout"
    (hung outside a test), "budget". The text is the child's fatal error or
    the tail of its stderr.
    """
    with tempfile.TemporaryDirectory(prefix="asyncio-suite-") as tmp:
        out_path = os.path.join(tmp, "results.jsonl")
        done_path = os.path.join(tmp, "done.json")
        err_path = os.path.join(tmp, "stderr.txt")
        Path(done_path).write_text(json.dumps(sorted(done)))
        Path(out_path).touch()
        cmd = [sys.executable, __file__, "child", "--loop", loop, "--module", module,
               "--out", out_path, "--done", done_path]
        if only is not None:
            only_path = os.path.join(tmp, "only.json")
            Path(only_path).write_text(json.dumps(sorted(only)))
            cmd += ["--only", only_path]
        # cwd: the tests make temporary files (os_helper.TESTFN) in it.
        with open(err_path, "wb") as err:
            env = {**os.environ, **LOOP_ENV.get(loop, {})}
            proc = subprocess.Popen(cmd, cwd=tmp, start_new_session=True, env=env,
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err)

        def stderr_tail() -> str:
            with open(err_path, "rb") as f:
                f.seek(max(0, os.path.getsize(err_path) - DETAIL_CHARS))
                return f.read().decode("utf-8", "replace")

        current: str | None = None
        current_t = 0.0
        last_event = time.monotonic()
        done_at: float | None = None
        fatal = ""
        offset = 0
        try:
            while True:
                with open(out_path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                # Only whole lines: the child may be mid-write.
                whole = data[: data.rfind(b"\n") + 1]
                offset += len(whole)
                for line in whole.splitlines():
                    record = json.loads(line)
                    last_event = time.monotonic()
                    event = record["event"]
                    if event == "plan":
                        plan.extend(i for i in record["ids"] if i not in plan)
                    elif event == "start":
                        current = record["id"]
                        current_t = record["t"]
                    elif event == "outcome":
                        previous = results.get(record["id"])
                        # The first failure sticks (a failed subtest, then a
                        # failing cleanup, say); pass or skip can be overruled.
                        if previous is None or previous.outcome in (PASS, SKIP):
                            took = record["t"] - current_t if current == record["id"] else 0.0
                            results[record["id"]] = Outcome(record["outcome"], record["detail"], took)
                        done.add(record["id"])
                        current = None
                    elif event == "done":
                        done_at = time.monotonic()
                    elif event == "fatal":
                        fatal = record["detail"]
                now = time.monotonic()
                if proc.poll() is not None:
                    if done_at is not None or fatal:
                        return "done", None, fatal
                    return "exited", current, f"child exited {proc.returncode}: {stderr_tail()}"
                if done_at is not None and now - done_at > EXIT_GRACE:
                    _kill_group(proc)
                    return "done", None, fatal
                if now > deadline:
                    _kill_group(proc)
                    return "budget", current, f"module budget {MODULES[module].budget:.0f} s spent"
                if done_at is None and now - last_event > PER_TEST_TIMEOUT:
                    _kill_group(proc)
                    how = "test-timeout" if current else "idle-timeout"
                    return how, current, f"{how}: no progress for {PER_TEST_TIMEOUT:.0f} s"
                time.sleep(POLL_INTERVAL)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            else:
                _end_leftovers(proc)


def run_module(module: str, loop: str, only: set[str] | None = None) -> ModuleResult:
    """Run one module's tests (or the ``only`` ones) on one loop, each test
    under the watchdog."""
    started = time.monotonic()
    deadline = started + MODULES[module].budget
    results: dict[str, Outcome] = {}
    done: set[str] = set()
    plan: list[str] = []
    fatal = ""
    stalls = 0
    while True:
        how, current, text = _run_child(loop, module, done, deadline, results, plan, only)
        if current is not None and current not in results:
            kind = TIMEOUT if how in ("test-timeout", "budget") else ERROR
            results[current] = Outcome(kind, text)
            done.add(current)
        if how in ("done", "budget"):
            fatal = text if how == "done" else ""
            break
        # Resume after a crash or a hang, unless twice in a row it happened
        # outside any test (a hung setUpClass would hang every retry).
        stalls = stalls + 1 if current is None else 0
        if stalls >= 2:
            fatal = text
            break
    for test in plan:
        results.setdefault(test, Outcome(NOT_RUN, fatal))
    return ModuleResult(module, loop, results, fatal, time.monotonic() - started)


def excluded_for(module: str) -> dict[str, str]:
    prefix = f"{module}::"
    return {k[len(prefix):]: v for k, v in EXCLUDED.items() if k.startswith(prefix)}


def expected_passes(refs: Iterable[ModuleResult]) -> set[str]:
    """Tests that pass on every reference loop and are not excluded."""
    expected: set[str] | None = None
    for ref in refs:
        expected = ref.passed() if expected is None else expected & ref.passed()
        module = ref.module
    if expected is None:
        raise ValueError("no reference loop")
    return expected - set(excluded_for(module))


def regressions(refs: Iterable[ModuleResult], tested: ModuleResult) -> dict[str, Outcome]:
    """The expected passes that do not pass on the loop under test."""
    return {i: tested.outcomes.get(i, Outcome(NOT_RUN))
            for i in sorted(expected_passes(refs)) if i not in tested.passed()}


# --------------------------------------------------------------------------
# The report (docs/asyncio-conformance.md).

RESULTS_BEGIN = "<!-- results:begin (generated by tests/reactor/asyncio_suite_runner.py report) -->"
RESULTS_END = "<!-- results:end -->"
EXCLUDED_BEGIN = "<!-- excluded:begin (generated from EXCLUDED in tests/reactor/asyncio_suite_runner.py) -->"
EXCLUDED_END = "<!-- excluded:end -->"
LOOPS_IN_REPORT = (*REFERENCE_LOOPS, *LOOPS_UNDER_TEST)
# What fastsock's loop is made of: uncommitted changes here make a measurement
# not reproducible from its commit, so the report says so.
LOOP_SOURCES = ("fastsock/reactor", "fastsock/transports", "fastsock/__init__.py",
                "fastsock/_switch.py")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def render_results(results: dict[tuple[str, str], ModuleResult]) -> str:
    import platform
    import uvloop
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = f" plus uncommitted changes to {', '.join(LOOP_SOURCES)}" \
        if _git("status", "--porcelain", "--", *LOOP_SOURCES) else ""
    lines = [
        f"Measured at commit `{commit}`{dirty} on {time.strftime('%Y-%m-%d')}, "
        f"CPython {platform.python_version()}, uvloop {uvloop.__version__}. "
        "*must pass*: tests that pass on every reference loop, less the exclusions; "
        "*regressions*: those of them that do not pass on the loop in that row.",
        "",
        "| module | references | loop | pass | fail | error | skip | timeout | not run "
        "| must pass | regressions | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    details: list[str] = []
    ungated: list[str] = []
    for module, spec in MODULES.items():
        refs = [results[(module, r)] for r in spec.references if (module, r) in results]
        complete = len(refs) == len(spec.references)
        for loop in LOOPS_IN_REPORT:
            r = results.get((module, loop))
            if r is None:
                continue
            c = r.counts()
            must = reg = "—"
            if loop in LOOPS_UNDER_TEST and complete:
                found = regressions(refs, r)
                must, reg = str(len(expected_passes(refs))), str(len(found))
                for test, o in found.items():
                    details.append(f"| `{module}::{test}` | {loop} | {o.outcome} | {_last_line(o)} |")
                aio = results.get((module, "asyncio"))
                if aio is not None:
                    for test in sorted(aio.passed() - r.passed() - set(found)):
                        o = r.outcomes.get(test, Outcome(NOT_RUN))
                        why = excluded_for(module).get(test, "uvloop does not pass it either")
                        ungated.append(f"| `{module}::{test}` | {loop} | {o.outcome} | {why} "
                                       f"| {_last_line(o)} |")
            name = f"{loop} (loop unavailable)" if r.fatal and not c[PASS] else loop
            lines.append(
                f"| {module} | {'+'.join(spec.references)} | {name} | {c[PASS]} | {c[FAIL]} "
                f"| {c[ERROR]} | {c[SKIP]} | {c[TIMEOUT]} | {c[NOT_RUN]} | {must} | {reg} "
                f"| {r.seconds:.1f} |")
    if details:
        lines += ["", "Regressions in this run (tests that must pass and did not):", "",
                  "| test | loop | outcome | last line of its report |", "|---|---|---|---|",
                  *details]
    if ungated:
        lines += ["", "Not gated, for information: tests that pass on asyncio's loop and not "
                  "on fastsock's, and why they are not required:", "",
                  "| test | loop | outcome | not required because | last line of its report |",
                  "|---|---|---|---|---|", *ungated]
    return "\n".join(lines)


def _last_line(o: Outcome) -> str:
    last = (o.detail.strip().splitlines() or [""])[-1][:160]
    return last.replace("|", "/")


def render_excluded() -> str:
    if not EXCLUDED:
        return "None: every test that passes on asyncio's loop and on uvloop must pass."
    lines = ["| test | why it is excluded |", "|---|---|"]
    lines += [f"| `{test}` | {why} |" for test, why in sorted(EXCLUDED.items())]
    return "\n".join(lines)


def _replace_between(text: str, begin: str, end: str, body: str) -> str:
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def write_doc(results: dict[tuple[str, str], ModuleResult] | None) -> None:
    text = DOC.read_text(encoding="utf-8")
    if results is not None:
        text = _replace_between(text, RESULTS_BEGIN, RESULTS_END, render_results(results))
    text = _replace_between(text, EXCLUDED_BEGIN, EXCLUDED_END, render_excluded())
    DOC.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    child = sub.add_parser("child", help="run one module on one loop (internal)")
    child.add_argument("--loop", required=True, choices=sorted(LOOP_FACTORIES))
    child.add_argument("--module", required=True, choices=list(MODULES))
    child.add_argument("--out", required=True)
    child.add_argument("--done", help="JSON list of test ids already run")
    child.add_argument("--only", help="JSON list of the test ids to run")
    report = sub.add_parser("report", help="run the suite and update the docs page")
    report.add_argument("--loops", nargs="+", default=list(LOOPS_IN_REPORT))
    report.add_argument("--modules", nargs="+", default=list(MODULES))
    report.add_argument("--no-write", action="store_true", help="print, do not edit the docs")
    report.add_argument("--details", action="store_true",
                        help="also print each test that did not pass, with its traceback's tail")
    args = parser.parse_args(argv)
    if args.cmd == "child":
        done = set(json.loads(Path(args.done).read_text())) if args.done else set()
        only = set(json.loads(Path(args.only).read_text())) if args.only else None
        return child_main(args.loop, args.module, args.out, done, only)
    results: dict[tuple[str, str], ModuleResult] = {}
    for module in args.modules:
        for loop in args.loops:
            r = results[(module, loop)] = run_module(module, loop)
            print(f"{module:20} {loop:13} {r.seconds:6.1f}s {r.counts()}", file=sys.stderr)
            if args.details:
                for test, o in sorted(r.outcomes.items()):
                    if o.outcome != PASS:
                        tail = "\n    ".join(o.detail.strip().splitlines()[-6:])
                        print(f"  {test}: {o.outcome}\n    {tail}", file=sys.stderr)
    print(render_results(results))
    if not args.no_write:
        write_doc(results)
    return 0


if __name__ == "__main__":
    # Run as a script this module is __main__; the test classes name this
    # module by its file name, so register it under that too.
    sys.modules.setdefault("asyncio_suite_runner", sys.modules[__name__])
    sys.exit(main())
