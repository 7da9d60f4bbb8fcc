#!/bin/bash
# User-space instructions the asyncio echo program (benchmarks/servers/aio_echo.py)
# spends per message on one event loop, counted by callgrind: repeatable
# whatever else the machine does (the kernel's share is not counted).
# Usage, from a checkout with its .venv and built load generators:
#   benchmarks/callgrind_aio.sh LOOP [MODE] [MESSAGES] [SIZE] [tls] [TOP]
# LOOP asyncio|uvloop|fastsock, MODE protocol|streams (protocol), MESSAGES
# echoes counted (20000), SIZE bytes (64), "tls" to serve TLS, TOP functions
# to list by self cost in the second load (0). 50 connections, 1 in flight.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
LOOP=${1:?LOOP: asyncio, uvloop or fastsock}; MODE=${2:-protocol}; COUNT=${3:-20000}; SIZE=${4:-64}
TLS=${5:-}; TOP=${6:-0}
PY=$HERE/.venv/bin/python
TCPLOAD=$HERE/benchmarks/loadgen/bin/tcpload
[ -x "$TCPLOAD" ] || make -s -C "$HERE/benchmarks/loadgen"
OUT=$(mktemp -d)
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER_TLS=(); LOAD_TLS=()
if [ "$TLS" = tls ]; then
    "$PY" -c "from benchmarks.aio_loops import make_cert; from pathlib import Path; make_cert(Path('$OUT/tls'))"
    SERVER_TLS=(--tls "$OUT/tls/server.pem" "$OUT/tls/server.key"); LOAD_TLS=(--tls)
fi
cd "$HERE"
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
    "$PY" -m benchmarks.servers.aio_echo --host 127.0.0.1 --port "$PORT" --loop "$LOOP" --mode "$MODE" \
    "${SERVER_TLS[@]}" > "$OUT/server.log" 2>&1 &
VP=$!
trap 'kill -INT $VP 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$OUT"' EXIT
for _ in $(seq 120); do grep -q listening "$OUT/server.log" && break; sleep 0.5; done
grep -q listening "$OUT/server.log" || { echo "server did not start: $(tail -3 "$OUT/server.log")" >&2; exit 1; }
# Two counted loads, MESSAGES and then 2 x MESSAGES echoes, each on 50 new
# connections: the difference is the cost of MESSAGES echoes alone, without
# the accepts and TLS handshakes (callgrind_control -d dumps and zeroes).
callgrind_control -z "$VP" > /dev/null 2>&1
"$TCPLOAD" --port "$PORT" --connections 50 --size "$SIZE" --duration 120 --warmup 0 --max-messages "$COUNT" \
    "${LOAD_TLS[@]}" > "$OUT/load1.json"
callgrind_control -d "$VP" > /dev/null 2>&1
"$TCPLOAD" --port "$PORT" --connections 50 --size "$SIZE" --duration 240 --warmup 0 \
    --max-messages "$((2 * COUNT))" "${LOAD_TLS[@]}" > "$OUT/load2.json"
callgrind_control -d "$VP" > /dev/null 2>&1
kill -INT "$VP"; wait "$VP" || true
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
done_n() { "$PY" -c "import json; print(json.load(open('$1'))['messages_total'])"; }
T1=$(total "$OUT/cg.out.1"); T2=$(total "$OUT/cg.out.2")
N1=$(done_n "$OUT/load1.json"); N2=$(done_n "$OUT/load2.json")
[ -z "${KEEP:-}" ] || echo "callgrind output kept in $OUT/cg.out.2"
echo "$LOOP $MODE${TLS:+ tls} $SIZE B: $(( (T2 - T1) / (N2 - N1) )) user instructions per message" \
     "($T1 for $N1 echoes, $T2 for $N2, each with 50 connections set up)"
if [ "$TOP" -gt 0 ]; then
    # self cost per function, paths shortened; frames that were on the stack
    # when the counters were zeroed show ~100% and are left out
    callgrind_annotate --inclusive=no --threshold=100 "$OUT/cg.out.2" 2>/dev/null | grep -E '^ *[0-9,]+ ' \
        | grep -vE '\((99|100)\.[0-9]%\)' \
        | sed -E 's#/tmp/python-build[^ ]*/Python-[0-9.]+/##; s# \[[^]]*\]$##' | head -n "$TOP"
fi
