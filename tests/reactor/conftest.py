"""A real redis-server for the loop tests: started on free ports, stopped by PID."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

REDIS_START_TIMEOUT = 10.0   # seconds for redis-server to answer PING
REDIS_STOP_TIMEOUT = 5.0     # seconds between SIGTERM and SIGKILL
REDIS_START_ATTEMPTS = 3     # a free port can be taken between probe and bind


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int        # plain TCP
    tls_port: int    # TLS, with a certificate from the session's trustme CA
    ca_path: Path    # the CA file a TLS client trusts
    pid: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start(binary: str, workdir: Path, cert: Path, key: Path, ca: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, tls_port = _free_port(), _free_port()
    log = open(workdir / "redis.log", "ab")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning",
         "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if _pings(port):
            return proc, port, tls_port
        time.sleep(0.05)
    _stop(proc)
    raise RuntimeError(f"redis-server did not start: {(workdir / 'redis.log').read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()           # SIGTERM to this PID only
        try:
            proc.wait(REDIS_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory, tls: Any) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary: scripts/ensure-system-deps.sh installs Debian's "
                    "redis-server, which needs root and apt-get")
    workdir = tmp_path_factory.mktemp("redis")
    cert, key, ca = workdir / "server.pem", workdir / "server.key", workdir / "ca.pem"
    tls.server_cert.cert_chain_pems[0].write_to_path(str(cert))
    tls.server_cert.private_key_pem.write_to_path(str(key))
    tls.ca.cert_pem.write_to_path(str(ca))
    last: Exception | None = None
    for _ in range(REDIS_START_ATTEMPTS):
        try:
            proc, port, tls_port = _start(binary, workdir, cert, key, ca)
            break
        except RuntimeError as exc:
            last = exc
    else:
        raise RuntimeError(f"redis-server failed {REDIS_START_ATTEMPTS} times") from last
    try:
        yield RedisServer("127.0.0.1", port, tls_port, ca, proc.pid)
    finally:
        _stop(proc)
