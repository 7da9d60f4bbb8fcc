#!/bin/bash
# User-space instructions per echoed message and per loop turn: `serve echo` as
# one process against `serve echo --workers 2` (each worker counted), under
# callgrind (repeatable whatever else the machine does; the kernel's share is
# not counted). The loop's turns come from the metrics port (the supervisor's
# totals with workers). Usage, from a checkout with its .venv:
#   benchmarks/callgrind_workers.sh [MESSAGES] [INFLIGHT] [CONNECTIONS]
# Run it under the benchmark lock: flock /tmp/fastsock-bench.lock benchmarks/callgrind_workers.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${1:-40000}; INFLIGHT=${2:-8}; CONNS=${3:-100}
PY=$HERE/.venv/bin/python
WSLOAD=$HERE/benchmarks/loadgen/bin/wsload
[ -x "$WSLOAD" ] || make -s -C "$HERE/benchmarks/loadgen"
OUT=$(mktemp -d)
VP=
trap '[ -z "$VP" ] || kill -INT "$VP" 2>/dev/null || true; rm -rf "$OUT"' EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
iterations() {   # the loop's turns so far (fastsock_loop_iterations_total)
    curl -s "http://127.0.0.1:$1/metrics" | awk '/^fastsock_loop_iterations_total/ {print $2}'
}
cd "$HERE"
for WORKERS in 1 2; do
    PORT=$(free_port); MPORT=$(free_port)
    EXTRA=(); [ "$WORKERS" = 1 ] || EXTRA=(--workers "$WORKERS")
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg.$WORKERS.%p" \
        "$PY" -m fastsock serve echo --host 127.0.0.1 --port "$PORT" --metrics-port "$MPORT" \
        "${EXTRA[@]}" > "$OUT/server.$WORKERS.log" 2>&1 &
    VP=$!
    for _ in $(seq 240); do grep -q "listening on" "$OUT/server.$WORKERS.log" && break; sleep 0.5; done
    grep -q "listening on" "$OUT/server.$WORKERS.log" || { echo "server did not start" >&2; exit 1; }
    if [ "$WORKERS" = 1 ]; then PIDS=$VP; else PIDS=$(pgrep -P "$VP" | tr '\n' ' '); fi
    # The scrapes stay outside the counted window (a scrape costs millions of
    # instructions, once per process): count the load only.
    T0=$(iterations "$MPORT")
    for P in $PIDS; do callgrind_control -z "$P" > /dev/null 2>&1; done
    "$WSLOAD" --port "$PORT" --connections "$CONNS" --size 64 --inflight "$INFLIGHT" --binary \
        --duration 600 --warmup 0 --max-messages "$COUNT" > "$OUT/load.$WORKERS.json"
    for P in $PIDS; do callgrind_control -d "$P" > /dev/null 2>&1; done
    T1=$(iterations "$MPORT")
    TOTAL=0
    for P in $PIDS; do
        N=$(callgrind_annotate "$OUT/cg.$WORKERS.$P.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        echo "  workers=$WORKERS pid $P: $N instructions"
        TOTAL=$((TOTAL + N))
    done
    TURNS=$(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%d", b - a}')
    echo "workers=$WORKERS: $TOTAL user instructions for $COUNT echoes of 64 B ($CONNS connections, $INFLIGHT in flight): $((TOTAL / COUNT)) per message; $TURNS loop turns ($(awk -v t="$TURNS" -v c="$COUNT" 'BEGIN {printf "%.1f", c / t}') messages per turn)"
    kill -INT "$VP"; wait "$VP" || true; VP=
done
