"""Processes for the harness: a server started pinned to one core and watched
(ready line, CPU, RSS, descriptors), the compiled load generators, free
ports, and the machine description every result carries."""
from __future__ import annotations

import json
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
LOADGEN_DIR = ROOT / "benchmarks" / "loadgen"
BIN_DIR = LOADGEN_DIR / "bin"
RESULTS_DIR = ROOT / "benchmarks" / "results"
PYTHON = sys.executable

# "fastsock tcp-echo listening on tcp://127.0.0.1:9000" and the like
READY_RE = re.compile(r"listening on (\w+)://(\[[^\]]+\]|[^\s:/]+):(\d+)")


class HarnessError(RuntimeError):
    """A server or load generator did not do what the harness needs."""


def build_loadgen(quiet: bool = True) -> None:
    """Builds every C tool (make is incremental, so this is cheap when fresh)."""
    if shutil.which("make") is None or shutil.which("cc") is None and shutil.which("gcc") is None:
        raise HarnessError("building the load generators needs make and a C compiler (gcc)")
    proc = subprocess.run(["make", "-s", "-C", str(LOADGEN_DIR)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"make -C {LOADGEN_DIR} failed:\n{proc.stderr.strip()}")
    if not quiet and proc.stdout.strip():
        print(proc.stdout.strip())


def tool(name: str) -> Path:
    return BIN_DIR / name


def free_port(kind: str = "tcp") -> int:
    """A port the OS says is free now on 127.0.0.1 (servers bind it next)."""
    stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, stype) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: int | None, argv: list[str]) -> list[str]:
    if core is None or core < 0 or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(core), *argv]


def cpu_seconds(p: psutil.Process) -> float:
    """On-CPU time of every thread of the process.  /proc/PID/task/*/schedstat
    counts nanoseconds; psutil's cpu_times counts 10 ms ticks, too coarse for
    a broadcast phase of a few hundred milliseconds."""
    total, seen = 0, False
    try:
        for tid in os.listdir(f"/proc/{p.pid}/task"):
            try:
                with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                    seen = True
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        pass
    if seen:
        return total / 1e9
    t = p.cpu_times()
    return float(t.user + t.system)


def peak_rss(pid: int) -> int | None:
    """VmHWM: the peak resident set of the process so far, in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def kernel_slab_bytes() -> int | None:
    """Slab memory of the whole kernel (/proc/meminfo "Slab"): where socket,
    file and epoll structures live.  System-wide, so only a rough estimate
    per connection on a shared machine."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Slab:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Sample:
    t: float
    cpu_s: float
    rss: int
    fds: int | None


class ServerProcess:
    """One server under test: started pinned, ready when it prints its
    ``listening on`` line, stopped by PID with SIGINT (SIGKILL if it hangs)."""

    def __init__(self, name: str, argv: list[str], *, core: int | None, env: dict[str, str] | None = None,
                 ready_timeout: float = 30.0) -> None:
        self.name = name
        self.argv = pinned(core, argv)
        self.log: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
                                     cwd=ROOT, env=env, start_new_session=True)
        self.ready_line = self._wait_ready(ready_timeout)
        self.ps = psutil.Process(self.proc.pid)

    def _wait_ready(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    if READY_RE.search(line):
                        return line
        finally:
            sel.close()
        self.stop()
        raise HarnessError(f"{self.name} did not print its ready line within {timeout:.0f}s "
                           f"(exit code {self.proc.returncode}); stdout {buf[-300:]!r}; "
                           f"stderr tail: {self.stderr_tail()}")

    def sample(self) -> Sample:
        try:
            fds: int | None = self.ps.num_fds()
        except psutil.Error:
            fds = None
        return Sample(time.monotonic(), cpu_seconds(self.ps), int(self.ps.memory_info().rss), fds)

    def peak_rss(self) -> int | None:
        return peak_rss(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, n: int = 600) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:].strip()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT, wait, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()


def run_loadgen(argv: list[str], *, core: int | None, timeout: float) -> dict[str, Any]:
    """Runs a load generator to completion; returns its last JSON line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(pinned(core, argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s") from exc
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = parse_result(proc.stdout, proc.stderr, proc.returncode, argv[0])
    # the load generator's own CPU: near 100% means it, not the server, set the pace
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["loadgen_cpu_pct"] = round(100 * cpu / wall, 1) if wall > 0 else 0.0
    return out


def parse_result(stdout: str, stderr: str, code: int, name: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                out: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{Path(name).name} printed bad JSON: {line[:200]!r}") from exc
            out["exit_code"] = code
            return out
    raise HarnessError(f"{Path(name).name} printed no result (exit {code}): {stderr.strip()[-400:]}")


def command_line(module: str, argv: list[str]) -> str:
    """How a result records the command that made it: ``python -m MODULE``
    and the arguments, quoted so the line can be pasted into a shell
    (``--add-server`` commands hold spaces and quotes)."""
    return shlex.join(["python", "-m", module, *argv])


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "fastsock"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        return rev + ("+dirty(fastsock)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("fastsock", "uvloop", "websockets", "aiohttp", "picows", "psutil"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = psutil.virtual_memory().total
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "compiler": _cc_version(),
        "versions": _versions(),
        "commit": git_commit(),
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def _cc_version() -> str:
    try:
        out = subprocess.run(["cc", "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
