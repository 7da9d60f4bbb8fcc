"""Headless Chromium for the browser interop tests: find it, open a page in
it (a fresh profile, its log to a temporary file), and stop it with every
helper process it forked.

Imported by name (``from chromium_launch import ...``): pytest puts tests/
on ``sys.path`` for tests/conftest.py, so tests in subfolders see it too.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from contextlib import asynccontextmanager, contextmanager
from typing import IO, AsyncIterator, Iterator, NoReturn

import pytest

STOP_TIMEOUT = 10.0       # seconds for Chromium to exit after each signal
LOG_TAIL_LINES = 20       # lines of Chromium's log shown when the page sent nothing

_HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--no-default-browser-check", "--disable-extensions")


def find_chromium() -> str:
    """The Chromium executable; skips the test when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium is not installed (Debian package chromium)")


def _command(chromium: str, profile: str, url: str, flags: tuple[str, ...]) -> list[str]:
    return [chromium, *_HEADLESS_FLAGS, f"--user-data-dir={profile}", *flags,
            "--enable-logging=stderr", url]


def _signal_group(pid: int) -> Iterator[None]:
    """SIGTERM, then SIGKILL, the process group ``pid`` leads; yields after
    each signal sent (the caller waits), ends when the group is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        yield


def stop_group(proc: "subprocess.Popen[bytes]") -> None:
    """Stop the process group of a browser this test started."""
    for _ in _signal_group(proc.pid):
        try:
            proc.wait(STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue


async def stop_group_async(proc: "asyncio.subprocess.Process") -> None:
    """:func:`stop_group` for a browser started on an asyncio loop."""
    for _ in _signal_group(proc.pid):
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            return
        except TimeoutError:
            continue


def fail_without_report(log: IO[str]) -> NoReturn:
    """Fail the test with the end of Chromium's log (its dbus noise left out)."""
    log.seek(0)
    lines = [line for line in log.read().splitlines() if "dbus" not in line]
    pytest.fail("the page sent no report; Chromium said:\n" + "\n".join(lines[-LOG_TAIL_LINES:]))


@contextmanager
def headless_chromium(chromium: str, url: str, *flags: str) -> Iterator[IO[str]]:
    """Chromium showing ``url`` while the block runs; yields its log file."""
    # ignore_cleanup_errors: a Chromium helper may still be writing its
    # profile for a moment after the process group is gone
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile, \
            tempfile.TemporaryFile("w+") as log:
        browser = subprocess.Popen(_command(chromium, profile, url, flags),
                                   stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True)   # Chromium forks helpers
        try:
            yield log
        finally:
            stop_group(browser)


@asynccontextmanager
async def headless_chromium_async(chromium: str, url: str, *flags: str) -> AsyncIterator[IO[str]]:
    """:func:`headless_chromium` on the running asyncio loop."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile, \
            tempfile.TemporaryFile("w+") as log:
        browser = await asyncio.create_subprocess_exec(
            *_command(chromium, profile, url, flags),
            stdout=asyncio.subprocess.DEVNULL, stderr=log,
            start_new_session=True)      # Chromium forks helpers: one group to stop
        try:
            yield log
        finally:
            await stop_group_async(browser)
