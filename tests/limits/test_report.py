"""fastsock.limits (fastsock/limits/report.py): the report on this machine, with /proc missing or broken,
the derived numbers, raise_nofile and DescriptorWatch."""
from __future__ import annotations

import json
import logging
import os
import re
import resource

import pytest

import fastsock.limits.report as L
from fastsock.limits import (
    RESERVE,
    UNLIMITED,
    DescriptorWatch,
    LimitsReport,
    default_watch,
    format_report,
    limits,
    log_summary,
    raise_nofile,
    summary_lines,
)

SYSCTLS = {
    "file_max": "fs/file-max",
    "nr_open": "fs/nr_open",
    "somaxconn": "net/core/somaxconn",
    "tcp_max_syn_backlog": "net/ipv4/tcp_max_syn_backlog",
    "epoll_max_user_watches": "fs/epoll/max_user_watches",
    "conntrack_max": "net/netfilter/nf_conntrack_max",
}


def make_report(**kw: object) -> LimitsReport:
    """A report with every value unknown except the ones given."""
    base: dict[str, object] = dict(
        nofile_soft=None, nofile_hard=None, file_max=None, file_nr=None, nr_open=None,
        somaxconn=None, tcp_max_syn_backlog=None, port_range=None,
        epoll_max_user_watches=None, conntrack_max=None, conntrack_count=None,
        fds_in_use=None, pid=4242,
    )
    base.update(kw)
    return LimitsReport(**base)  # type: ignore[arg-type]


def write_proc(root, files: dict[str, str | bytes], fds: int | None = None) -> str:
    for rel, content in files.items():
        path = root / "sys" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if fds is not None:
        fd_dir = root / "self" / "fd"
        fd_dir.mkdir(parents=True)
        for i in range(fds):
            (fd_dir / str(i)).write_text("")
    return str(root)


# -- this machine ----------------------------------------------------------------

def test_real_values_match_the_kernel():
    report = limits()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert (report.nofile_soft, report.nofile_hard) == (soft, hard)
    for attr, rel in SYSCTLS.items():
        path = os.path.join("/proc/sys", rel)
        expected = int(open(path).read().split()[0]) if os.access(path, os.R_OK) else None
        assert getattr(report, attr) == expected, attr
    if os.access("/proc/sys/net/ipv4/ip_local_port_range", os.R_OK):
        low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        assert report.port_range == (low, high)
        assert report.ephemeral_ports == high - low + 1
        assert report.client_connections_per_destination == high - low + 1
    assert report.pid == os.getpid()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc/self/fd on this OS")
def test_fds_in_use_counts_exactly_what_is_open():
    before = limits().fds_in_use
    assert before is not None and before >= 3
    pipes = [os.pipe() for _ in range(5)]
    try:
        assert limits().fds_in_use == before + 10
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
    assert limits().fds_in_use == before


def test_real_report_formats_and_serialises():
    report = limits()
    text = format_report(report)
    for name in ("RLIMIT_NOFILE soft", "RLIMIT_NOFILE hard", "descriptors in use", "fs.file-max",
                 "fs.nr_open", "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog",
                 "net.ipv4.ip_local_port_range", "binds first (server)", "binds first (client)"):
        assert name in text
    data = json.loads(json.dumps(report.as_dict()))
    assert data["nofile_soft"] == report.nofile_soft
    assert data["server_connections"] == report.server_connections
    assert data["binding"]["name"] == report.binding.name
    assert data["binding"]["commands"] == list(report.binding.commands)


# -- /proc missing or broken ---------------------------------------------------------

def test_missing_proc_reads_unknown(tmp_path):
    report = limits(proc=str(tmp_path / "nothing-here"))
    for attr in (*SYSCTLS, "file_nr", "port_range", "conntrack_count", "fds_in_use"):
        assert getattr(report, attr) is None, attr
    assert report.ephemeral_ports is None
    assert report.client_connections_per_destination is None
    text = format_report(report)
    assert "unknown" in text
    json.dumps(report.as_dict())
    # the rlimit still counts: the soft limit binds, minus the reserve
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert report.server_connections == soft - RESERVE


@pytest.mark.parametrize("content", ["", "abc\n", "-5\n", "12x\n", b"\xff\xfe\x00", "   \n"])
def test_garbage_files_read_unknown(tmp_path, content):
    files = {rel: content for rel in SYSCTLS.values()}
    files["fs/file-nr"] = content
    files["net/ipv4/ip_local_port_range"] = content
    report = limits(proc=write_proc(tmp_path, files))
    for attr in (*SYSCTLS, "file_nr", "port_range"):
        assert getattr(report, attr) is None, (attr, content)
    assert "unknown" in format_report(report)


def test_unreadable_files_read_unknown(tmp_path):
    # A directory where a file should be: open() fails (even for root).
    for rel in (*SYSCTLS.values(), "fs/file-nr", "net/ipv4/ip_local_port_range"):
        (tmp_path / "sys" / rel).mkdir(parents=True)
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "fd").write_text("not a directory")
    report = limits(proc=str(tmp_path))
    for attr in (*SYSCTLS, "file_nr", "port_range", "fds_in_use"):
        assert getattr(report, attr) is None, attr


def test_port_range_with_one_number_or_reversed_is_unknown(tmp_path):
    one = limits(proc=write_proc(tmp_path / "a", {"net/ipv4/ip_local_port_range": "1024\n"}))
    assert one.port_range is None
    rev = limits(proc=write_proc(tmp_path / "b", {"net/ipv4/ip_local_port_range": "5000 4000\n"}))
    assert rev.port_range == (5000, 4000)
    assert rev.ephemeral_ports is None


def test_values_read_from_a_fake_proc(tmp_path):
    root = write_proc(tmp_path, {
        "fs/file-max": "1000\n", "fs/file-nr": "300\t0\t1000\n", "fs/nr_open": "4096\n",
        "net/core/somaxconn": "128\n", "net/ipv4/tcp_max_syn_backlog": "256\n",
        "net/ipv4/ip_local_port_range": "40000\t40099\n",
    }, fds=7)
    r = limits(proc=root)
    assert (r.file_max, r.file_nr, r.nr_open, r.somaxconn, r.tcp_max_syn_backlog) == (
        1000, 300, 4096, 128, 256)
    assert r.port_range == (40000, 40099) and r.ephemeral_ports == 100
    assert r.fds_in_use == 7
    # absent optional files stay unknown and do not enter the binding choice
    assert r.epoll_max_user_watches is None and r.conntrack_max is None


def test_no_rlimits_reads_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(L, "_getrlimit", lambda: None)
    report = limits(proc=str(tmp_path))
    assert report.nofile_soft is None and report.nofile_hard is None
    assert report.server_connections is None and report.binding is None
    assert "binds first (server): unknown" in format_report(report)


# -- derived numbers -------------------------------------------------------------

def test_server_connections_subtract_in_use_and_reserve():
    r = make_report(nofile_soft=1024, nofile_hard=4096, fds_in_use=10)
    assert r.server_connections == 1024 - 10 - RESERVE
    assert r.server_connections_at_hard == 4096 - 10 - RESERVE
    assert r.binding.name == "RLIMIT_NOFILE (soft)"
    assert r.binding.commands[0].startswith("ulimit -n 4096")
    assert f"prlimit --pid 4242 --nofile=4096:4096" in r.binding.commands


def test_commands_without_a_pid_name_the_server():
    r = make_report(nofile_soft=1024, nofile_hard=4096, fds_in_use=10, pid=None)
    assert "prlimit --pid <server PID> --nofile=4096:4096" in r.binding.commands
    assert any("--raise-nofile" in c for c in r.binding.commands)
    assert r.as_dict()["pid"] is None


def test_headroom_never_negative():
    r = make_report(nofile_soft=20, nofile_hard=20, fds_in_use=10)
    assert r.server_connections == 0


def test_system_wide_limit_binds_when_smaller():
    r = make_report(nofile_soft=100_000, nofile_hard=100_000, fds_in_use=0,
                    file_max=50_000, file_nr=45_000)
    assert r.binding.name == "fs.file-max"
    assert r.server_connections == 5_000
    assert r.binding.commands == ("sysctl -w fs.file-max=100000",)


def test_epoll_and_conntrack_bind_when_smaller():
    r = make_report(nofile_soft=100_000, nofile_hard=100_000, fds_in_use=0,
                    epoll_max_user_watches=8_000, conntrack_max=9_000, conntrack_count=500)
    assert (r.binding.name, r.server_connections) == ("fs.epoll.max_user_watches", 8_000)
    r2 = make_report(nofile_soft=100_000, nofile_hard=100_000, fds_in_use=0,
                     conntrack_max=9_000, conntrack_count=500)
    assert (r2.binding.name, r2.server_connections) == ("net.netfilter.nf_conntrack_max", 8_500)
    assert r2.binding.commands == ("sysctl -w net.netfilter.nf_conntrack_max=18000",)


def test_soft_at_hard_needs_hard_raise_and_nr_open():
    r = make_report(nofile_soft=50_000, nofile_hard=50_000, nr_open=65_536, fds_in_use=0)
    cmds = r.binding.commands
    assert cmds[0] == "sysctl -w fs.nr_open=100000"
    assert "prlimit --pid 4242 --nofile=100000:100000   # as root" in cmds
    assert any(c.startswith("LimitNOFILE=100000") for c in cmds)
    assert any("limits.conf" in c for c in cmds)
    # target under nr_open: no sysctl needed
    small = make_report(nofile_soft=1024, nofile_hard=1024, nr_open=1_048_576, fds_in_use=0)
    assert not any("fs.nr_open" in c for c in small.binding.commands)
    assert "prlimit --pid 4242 --nofile=65536:65536   # as root" in small.binding.commands


def test_unlimited_hard_limit():
    r = make_report(nofile_soft=4096, nofile_hard=UNLIMITED, fds_in_use=0)
    assert r.server_connections_at_hard is None or r.server_connections_at_hard > 0
    assert r.binding.commands[0].startswith("ulimit -n 65536")
    assert r.as_dict()["nofile_hard"] == "unlimited"
    assert "unlimited" in format_report(r)


def test_client_connections_port_range_vs_descriptors():
    ports_bind = make_report(nofile_soft=100_000, nofile_hard=100_000, fds_in_use=0,
                             port_range=(32768, 60999))
    assert ports_bind.client_connections_per_destination == 28232
    assert ports_bind.client_connections == 28232
    assert ports_bind.client_binding.name == "net.ipv4.ip_local_port_range"
    assert ports_bind.client_binding.commands[0] == (
        'sysctl -w net.ipv4.ip_local_port_range="1024 65535"')
    fds_bind = make_report(nofile_soft=1024, nofile_hard=1024, fds_in_use=0,
                           port_range=(32768, 60999))
    assert fds_bind.client_connections_per_destination == 28232
    assert fds_bind.client_connections == 1024 - RESERVE
    assert fds_bind.client_binding.name == "RLIMIT_NOFILE (soft)"


def test_summary_lines_name_the_binding_limit():
    r = make_report(nofile_soft=1024, nofile_hard=4096, fds_in_use=10, port_range=(1000, 1999))
    lines = summary_lines(r)
    assert 2 <= len(lines) <= 4
    text = "\n".join(lines)
    assert f"up to {1024 - 10 - RESERVE} server connections" in text
    assert f"({4096 - 10 - RESERVE} at the hard limit)" in text
    assert "1000 client connections per destination" in text
    assert "RLIMIT_NOFILE (soft) binds first; raise it with: ulimit -n 4096" in text


def test_log_summary_once(monkeypatch, caplog):
    monkeypatch.setattr(L, "_summary_logged", False)
    log = logging.getLogger("test.limits.summary")
    r = make_report(nofile_soft=1024, nofile_hard=4096, fds_in_use=10)
    with caplog.at_level(logging.INFO, logger="test.limits.summary"):
        assert log_summary(log, report=r) is True
        assert log_summary(log, report=r) is False          # once per process by default
        assert log_summary(log, report=r, once=True) is False
        assert log_summary(log, report=r, once=False) is True
    assert len(caplog.records) == 2 * len(summary_lines(r))


# -- raise_nofile ----------------------------------------------------------------

@pytest.fixture
def nofile():
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield saved
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_raise_nofile_lifts_soft_to_hard(nofile, caplog):
    soft, hard = nofile
    if hard == UNLIMITED or hard < 256:
        pytest.skip(f"hard limit {hard} does not leave room to lower and raise the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    with caplog.at_level(logging.INFO, logger="fastsock.limits"):
        assert raise_nofile() == (hard, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    assert f"raised RLIMIT_NOFILE soft limit from 128 to {hard}" in caplog.text


def test_raise_nofile_to_target_and_never_lowers(nofile, caplog):
    _, hard = nofile
    if hard == UNLIMITED or hard < 512:
        pytest.skip(f"hard limit {hard} does not leave room")
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    assert raise_nofile(300) == (300, hard)
    with caplog.at_level(logging.INFO, logger="fastsock.limits"):
        assert raise_nofile(200) == (300, hard)
    assert "nothing to raise" in caplog.text


def test_raise_nofile_above_hard(nofile, caplog):
    _, hard = nofile
    if hard == UNLIMITED:
        pytest.skip("no hard limit to go above")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(128, hard), hard))
    with caplog.at_level(logging.INFO, logger="fastsock.limits"):
        result = raise_nofile(hard + 1)
    if result == (hard + 1, hard + 1):  # privileged (CAP_SYS_RESOURCE)
        assert "raised RLIMIT_NOFILE" in caplog.text
    else:  # not allowed: stops at the hard limit and says how to go further
        assert result == (hard, hard)
        assert "cannot raise the RLIMIT_NOFILE hard limit" in caplog.text
        assert f"--nofile={hard + 1}:{hard + 1}" in caplog.text


def test_raise_nofile_updates_the_default_watch(nofile, monkeypatch):
    _, hard = nofile
    if hard == UNLIMITED or hard < 256:
        pytest.skip(f"hard limit {hard} does not leave room")
    monkeypatch.setattr(L, "_default_watch", None)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    watch = default_watch()
    assert watch.soft_limit == 128
    raise_nofile()
    assert watch.soft_limit == hard


# -- DescriptorWatch ---------------------------------------------------------------

def warnings_in(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING]


def test_watch_warns_exactly_once_at_threshold(caplog):
    log = logging.getLogger("test.limits.watch")
    watch = DescriptorWatch(soft_limit=100, logger=log, baseline=0)
    with caplog.at_level(logging.WARNING, logger="test.limits.watch"):
        watch.opened(79)
        assert not watch.warned and warnings_in(caplog) == []
        watch.opened()
        assert watch.warned and watch.in_use == 80
        for _ in range(15):
            watch.opened()
        watch.closed(5)
        watch.opened(5)
    records = warnings_in(caplog)
    assert len(records) == 1 and watch.warnings == 1
    message = records[0].getMessage()
    assert "descriptor use 80" in message and "RLIMIT_NOFILE 100" in message
    assert "raise it with:" in message


def test_watch_rearms_well_below_threshold(caplog):
    log = logging.getLogger("test.limits.rearm")
    watch = DescriptorWatch(soft_limit=100, logger=log, baseline=0)
    with caplog.at_level(logging.WARNING, logger="test.limits.rearm"):
        watch.opened(85)
        watch.closed(14)          # 71: still above the re-arm mark
        assert watch.warned
        watch.opened(9)           # back at 80: no second warning
        assert len(warnings_in(caplog)) == 1
        watch.closed(10)          # 70: re-armed
        assert not watch.warned
        watch.opened(10)          # 80 again: warns again
    assert len(warnings_in(caplog)) == 2 and watch.warnings == 2


def test_watch_custom_threshold_and_rearm():
    watch = DescriptorWatch(soft_limit=1000, threshold=0.5, rearm=0.25, baseline=0,
                            logger=logging.getLogger("test.limits.custom"))
    watch.opened(499)
    assert not watch.warned
    watch.opened()
    assert watch.warned
    watch.closed(249)   # 251
    assert watch.warned
    watch.closed()      # 250
    assert not watch.warned


@pytest.mark.parametrize("kw", [dict(threshold=0), dict(threshold=1.5),
                                dict(threshold=0.8, rearm=0.8), dict(threshold=0.5, rearm=-1)])
def test_watch_rejects_bad_thresholds(kw):
    with pytest.raises(ValueError):
        DescriptorWatch(soft_limit=100, baseline=0, **kw)


def test_watch_baseline_is_what_is_open_now():
    expected = L._count_fds(L.PROC)
    if expected is None:
        pytest.skip("no /proc/self/fd on this OS")
    watch = DescriptorWatch(soft_limit=10_000)
    assert watch.in_use == expected
    watch.opened(3)
    watch.closed(1)
    assert watch.in_use == expected + 2


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc/self/fd on this OS")
def test_watch_resync_counts_what_it_was_not_told(caplog):
    watch = DescriptorWatch(soft_limit=10_000, logger=logging.getLogger("test.limits.resync"))
    start = watch.in_use
    pipes = [os.pipe() for _ in range(4)]
    try:
        assert watch.in_use == start
        assert watch.resync() == start + 8 == watch.in_use
        small = DescriptorWatch(soft_limit=start + 8, baseline=0,
                                logger=logging.getLogger("test.limits.resync"))
        with caplog.at_level(logging.WARNING, logger="test.limits.resync"):
            small.resync()   # 100% of its limit: warns once
        assert small.warned and small.warnings == 1
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
    assert watch.resync() == start


def test_watch_reads_the_soft_limit_and_counts_never_go_negative():
    watch = DescriptorWatch(baseline=0)
    assert watch.soft_limit == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    watch.closed(5)
    assert watch.in_use == 0


def test_watch_without_a_known_limit_never_warns(caplog):
    watch = DescriptorWatch(soft_limit=None, baseline=0)
    watch.set_soft_limit(None)
    with caplog.at_level(logging.WARNING, logger="fastsock.limits"):
        watch.opened(10**9)
    assert not watch.warned and warnings_in(caplog) == []


def test_watch_follows_a_raised_limit(caplog):
    watch = DescriptorWatch(soft_limit=100, baseline=0,
                            logger=logging.getLogger("test.limits.follow"))
    watch.opened(85)
    assert watch.warned
    watch.set_soft_limit(1000)   # raised: 85 is far below 70% of 1000
    assert not watch.warned
    watch.opened(714)            # 799
    assert not watch.warned
    watch.opened()               # 800
    assert watch.warned
    assert watch.warnings == 2


def test_watch_warns_when_the_limit_drops_under_current_use():
    watch = DescriptorWatch(soft_limit=1000, baseline=0,
                            logger=logging.getLogger("test.limits.lowered"))
    watch.opened(600)
    assert not watch.warned
    watch.set_soft_limit(700)    # 600 >= 80% of 700
    assert watch.warned and watch.warnings == 1


def test_default_watch_is_process_wide(monkeypatch):
    monkeypatch.setattr(L, "_default_watch", None)
    assert default_watch() is default_watch()


@pytest.mark.parametrize("first", ["package attribute", "submodule import"])
def test_fastsock_limits_is_callable_in_any_import_order(first):
    """`import fastsock; fastsock.limits()` must work even after something
    (a TCP server) imported the fastsock.limits submodule, which rebinds it."""
    import subprocess
    import sys

    order = ("import fastsock; f = fastsock.limits; from fastsock.limits import DescriptorWatch"
             if first == "package attribute" else
             "import fastsock; from fastsock.limits import DescriptorWatch")
    code = (f"{order}; r = fastsock.limits(); "
            "print(type(r).__name__, r.nofile_soft == __import__('resource').getrlimit("
            "__import__('resource').RLIMIT_NOFILE)[0])")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["LimitsReport", "True"]


# Every name `from fastsock.limits import X` gave when limits was one module.
NAMES_BEFORE_THE_PACKAGE = (
    "Bound", "DescriptorWatch", "LimitsReport", "RESERVE", "default_watch", "format_report",
    "limits", "log_summary", "raise_nofile", "summary_lines", "PROC", "UNLIMITED",
)


def test_the_package_still_exports_what_the_module_did():
    import fastsock.limits as package

    assert sorted(package.__all__) == sorted(NAMES_BEFORE_THE_PACKAGE[:-2])
    for name in NAMES_BEFORE_THE_PACKAGE:
        assert getattr(package, name) is getattr(L, name), name
    # the table is a submodule imported on demand, not by the package
    code = "import sys, fastsock.limits; print('fastsock.limits.table' in sys.modules)"
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    assert out.stdout.split() == ["False"], out.stderr


def test_tcp_migrate_req_is_reported(tmp_path):
    # fastsock.workers' rolling reload does not depend on it, but it decides
    # whether a closing SO_REUSEPORT listener resets its accept queue
    path = "/proc/sys/net/ipv4/tcp_migrate_req"
    real = L.limits()
    if os.path.exists(path):
        assert real.tcp_migrate_req == int(open(path).read())
    else:
        assert real.tcp_migrate_req is None
    ipv4 = tmp_path / "sys" / "net" / "ipv4"
    ipv4.mkdir(parents=True)
    (ipv4 / "tcp_migrate_req").write_text("1\n")
    fake = L.limits(proc=str(tmp_path))
    assert fake.tcp_migrate_req == 1
    assert fake.as_dict()["tcp_migrate_req"] == 1
    assert re.search(r"net\.ipv4\.tcp_migrate_req +1 ", format_report(fake))
