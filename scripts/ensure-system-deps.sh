#!/usr/bin/env bash
# Installs the Debian packages that tests use as real peers, when missing.
# Tests that need a package that could not be installed skip with that reason.
set -u
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
[ -d /usr/share/nodejs/ws ] || need+=(node-ws)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v ss >/dev/null 2>&1 || need+=(iproute2)   # ss: checks fastsock stat
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx)   # load balancer in front (tests/pubsub)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)   # the _tls extension (OpenSSL record layer); tcpload/wsload --tls, wsecho_c --certfile (benchmarks/loadgen)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)   # wsload --deflate (benchmarks/loadgen)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: cannot install ${need[*]} (not root or no apt-get); tests that need them will skip" >&2
  exit 0
fi
echo "installing system packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "note: apt-get install ${need[*]} failed; tests that need them will skip" >&2
exit 0
