#!/bin/bash
# User-space instructions a WebSocket echo server spends on a fixed load,
# counted by callgrind (repeatable whatever else the machine does; the
# kernel's share is not counted). Usage, from a checkout with its .venv:
#   benchmarks/callgrind_echo.sh [TREE] [SIZE] [MESSAGES] [INFLIGHT] [SERVER ARGS...]
# TREE is the fastsock checkout to run (default: this one), SIZE the message
# size (1024), MESSAGES how many echoes (40000), INFLIGHT messages in flight
# per connection (1); SERVER ARGS go to `serve echo` (e.g. --metrics /metrics).
# SCRAPE=PATH also GETs http://127.0.0.1:PORT/PATH once a second during the
# load (a Prometheus scraper; docs/metrics.md). TLS=1 serves wss with a
# certificate made for the run (trustme) and drives it with wsload --tls;
# WSLOAD_ARGS adds load-generator options (e.g. "--deflate --payload json").
# Prints the total.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TREE=${1:-$HERE}; SIZE=${2:-1024}; COUNT=${3:-40000}; INFLIGHT=${4:-1}
shift $(( $# < 4 ? $# : 4 ))
PY=$HERE/.venv/bin/python
WSLOAD=$HERE/benchmarks/loadgen/bin/wsload
[ -x "$WSLOAD" ] || make -s -C "$HERE/benchmarks/loadgen"
OUT=$(mktemp -d)
TLS_SERVER=() TLS_LOAD=()
if [ "${TLS:-0}" = 1 ]; then
    (cd "$HERE" && "$PY" -c "import sys; from pathlib import Path; from benchmarks.aio_loops import make_cert; make_cert(Path(sys.argv[1]))" "$OUT/cert")
    TLS_SERVER=(--certfile "$OUT/cert/server.pem" --keyfile "$OUT/cert/server.key"); TLS_LOAD=(--tls)
fi
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$TREE"
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
    "$PY" -m fastsock serve echo --host 127.0.0.1 --port "$PORT" "${TLS_SERVER[@]}" "$@" > "$OUT/server.log" 2>&1 &
VP=$!
trap 'kill -INT $VP 2>/dev/null || true; [ -z "${SP:-}" ] || kill "$SP" 2>/dev/null || true; rm -rf "$OUT"' EXIT
for _ in $(seq 120); do grep -q listening "$OUT/server.log" && break; sleep 0.5; done
grep -q listening "$OUT/server.log" || { echo "server did not start" >&2; exit 1; }
callgrind_control -z "$VP" > /dev/null 2>&1         # count the load only
SP=
if [ -n "${SCRAPE:-}" ]; then
    ( while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$PORT$SCRAPE" || true; done ) &
    SP=$!
fi
"$WSLOAD" --port "$PORT" --connections 100 --size "$SIZE" --inflight "$INFLIGHT" --duration 120 \
    --warmup 0 --max-messages "$COUNT" --text "${TLS_LOAD[@]}" ${WSLOAD_ARGS:-} > "$OUT/load.json"
[ -z "$SP" ] || kill "$SP"; SP=
callgrind_control -d "$VP" > /dev/null 2>&1
kill -INT "$VP"; wait "$VP" || true
TOTAL=$(callgrind_annotate "$OUT/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
[ -z "${KEEP:-}" ] || cp "$OUT/cg.out.1" "$KEEP"
echo "$TREE${*:+ $*}${SCRAPE:+ (scraped)}${TLS_LOAD:+ (wss)}${WSLOAD_ARGS:+ ($WSLOAD_ARGS)}: $TOTAL user instructions for $COUNT echoes of $SIZE B, $INFLIGHT in flight ($((TOTAL / COUNT)) per message)"
