"""``python -m fastsock``: the limits command and bad input, each through a
subprocess (one line on stderr, the right exit code, no traceback)."""
from __future__ import annotations

import ctypes
import json
import os
import resource
import socket
import subprocess
import sys

import pytest

import fastsock.apps as apps
from fastsock.apps._common import EXIT_RUNTIME, EXIT_USAGE
from fastsock.cli import main

PYTHON = sys.executable
TIMEOUT = 60.0
# Run the checkout's package even when it is not installed and pytest runs elsewhere.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))


def run(*args: str, preexec_fn=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "fastsock", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, preexec_fn=preexec_fn, env=ENV)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fastsock: error: "), lines[0]
    return lines[0]


# -- limits --------------------------------------------------------------------

def test_limits_table():
    result = run("limits")
    assert result.returncode == 0, result.stderr
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    row = next(line for line in result.stdout.splitlines() if line.startswith("RLIMIT_NOFILE soft"))
    assert row.split()[2] == str(soft)
    assert "binds first (server):" in result.stdout
    assert result.stderr == ""


def test_limits_json_parses():
    result = run("limits", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert (data["nofile_soft"], data["nofile_hard"]) == (soft, hard)
    in_use = data["fds_in_use"]
    assert data["server_connections"] <= soft - in_use - data["reserve"]
    assert data["binding"]["commands"]


def test_limits_raise_lifts_soft_to_hard():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 256:
        pytest.skip(f"hard limit {hard} leaves no room to lower the soft one")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))

    plain = run("limits", "--json", preexec_fn=lower)
    assert json.loads(plain.stdout)["nofile_soft"] == 200
    raised = run("limits", "--json", "--raise", preexec_fn=lower)
    assert raised.returncode == 0, raised.stderr
    assert json.loads(raised.stdout)["nofile_soft"] == hard  # stdout stays pure JSON
    assert f"raised RLIMIT_NOFILE soft limit from 200 to {hard}" in raised.stderr


@pytest.mark.parametrize("name", sorted(apps.APPS))
def test_every_registered_app_has_the_app_interface(name):
    module = apps.load_app(name)
    assert isinstance(module.DESCRIPTION, str) and module.DESCRIPTION
    assert callable(module.add_arguments) and callable(module.run)


def test_load_app_unknown_name():
    with pytest.raises(KeyError):
        apps.load_app("no-such-app")


def test_version_and_help():
    assert run("--version").stdout.startswith("fastsock ")
    result = run("serve", "--help")
    assert result.returncode == 0
    for name in apps.APPS:
        assert name in result.stdout
    result = run("serve", "tcp-echo", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--loop", "--quiet", "--backlog", "--raise-nofile"):
        assert option in result.stdout


# -- bad input: usage errors (exit 2) -----------------------------------------------

@pytest.mark.parametrize("args, needle", [
    ((), "required: COMMAND"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
    (("serve",), "required: APP"),
    (("serve", "no-such-app"), "unknown app 'no-such-app'"),
    (("serve", "--port", "5", "tcp-echo"), "options go after the app name: serve APP --port"),
    (("serve", "tcp-echo", "--bogus"), "unrecognized arguments: --bogus"),
    (("limits", "--bogus"), "unrecognized arguments: --bogus"),
    (("serve", "tcp-echo", "--port", "abc"), "port must be a number 0..65535, got 'abc'"),
    (("serve", "tcp-echo", "--port", "65536"), "port must be in 0..65535, got 65536"),
    (("serve", "tcp-echo", "--port=-1"), "port must be in 0..65535, got -1"),
    (("serve", "tcp-echo", "--host", ""), "host must not be empty"),
    (("serve", "tcp-echo", "--loop", "twisted"), "invalid choice: 'twisted'"),
    (("serve", "tcp-echo", "--backlog", "0"), "backlog must be a positive integer"),
    (("serve", "tcp-echo", "--shutdown-timeout", "nan"), "must be >= 0"),
    (("serve", "tcp-echo", "--host", "no-such-host.invalid", "--port", "0"),
     "bad host 'no-such-host.invalid'"),
])
def test_usage_errors(args, needle):
    result = run(*args)
    assert result.returncode == EXIT_USAGE, (result.returncode, result.stderr)
    assert needle in one_error_line(result)
    assert result.stdout == ""


# -- bad input: runtime errors (exit 1) ---------------------------------------------

@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "fastsock"])
def test_port_in_use(loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "tcp-echo", "--port", str(port), "--loop", loop, "--quiet")
    assert result.returncode == EXIT_RUNTIME, result.stderr
    line = one_error_line(result)
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in line
    assert result.stdout == ""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "fastsock"])
def test_address_not_on_this_machine(loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address.
    result = run("serve", "tcp-echo", "--host", "192.0.2.1", "--port", "0",
                 "--loop", loop, "--quiet")
    assert result.returncode == EXIT_RUNTIME, result.stderr
    assert "192.0.2.1 is not an address of this machine" in one_error_line(result)


def _unprivileged_port_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024


def _drop_net_bind_service() -> None:
    """In the child, as root: remove CAP_NET_BIND_SERVICE from the bounding set,
    so that after exec even root may not bind a port below the limit."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_NET_BIND_SERVICE = 24, 10
    if libc.prctl(PR_CAPBSET_DROP, CAP_NET_BIND_SERVICE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "fastsock"])
def test_permission_denied_on_a_low_port(loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    low_port_limit = _unprivileged_port_start()
    if low_port_limit <= 1:
        pytest.skip("net.ipv4.ip_unprivileged_port_start lets everyone bind low ports")
    preexec = _drop_net_bind_service if os.geteuid() == 0 else None
    port = low_port_limit - 1
    try:
        result = run("serve", "tcp-echo", "--port", str(port), "--loop", loop, "--quiet",
                     preexec_fn=preexec)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop CAP_NET_BIND_SERVICE for the child: {exc}")
    assert result.returncode == EXIT_RUNTIME, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: permission denied" in one_error_line(result)


def test_uvloop_missing_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    code = main(["serve", "tcp-echo", "--port", "0", "--loop", "uvloop", "--quiet"])
    assert code == EXIT_RUNTIME
    err = capsys.readouterr().err
    assert err == "fastsock: error: --loop uvloop: uvloop is not installed (pip install uvloop)\n"


def test_broken_app_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(apps.APPS, "broken", "fastsock.apps.no_such_module")
    assert main(["serve", "broken"]) == EXIT_RUNTIME
    err = capsys.readouterr().err
    assert err.startswith("fastsock: error: cannot load app 'broken': ModuleNotFoundError")
    assert err.count("\n") == 1
    # --help still lists the other apps and marks the broken one
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "tcp-echo" in out and "cannot load" in out


def test_unexpected_oserror_is_one_line(monkeypatch, capsys):
    import fastsock.apps.tcp_echo as tcp_echo

    def fail(args):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(tcp_echo, "run", fail)
    assert main(["serve", "tcp-echo"]) == EXIT_RUNTIME
    assert capsys.readouterr().err == "fastsock: error: Too many open files\n"


def test_limits_into_a_closed_pipe_exits_quietly():
    proc = subprocess.Popen([PYTHON, "-m", "fastsock", "limits"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    proc.stdout.close()  # the reader went away before the report was written
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    assert b"Traceback" not in err
