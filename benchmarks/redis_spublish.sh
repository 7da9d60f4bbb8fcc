#!/bin/bash
# Sharded pub/sub against plain pub/sub (docs/scaling.md, the Redis topology):
# SPUBLISH to the primary that owns the channel's slot in a 3-primary Redis
# Cluster, PUBLISH on that cluster (copied to every node over the cluster bus),
# and PUBLISH on a standalone redis-server, each with S subscriber connections
# on the node redis-benchmark talks to. Same payload as benchmarks/redis_publish.sh
# (74 bytes: fastsock's 64-byte message with its node id). Every process started
# here is ended by its PID.
# Run: flock /tmp/fastsock-bench.lock benchmarks/redis_spublish.sh [ROUNDS]
set -u
ROUNDS=${1:-3}
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
free_pair() {   # a port P with P + 10000 (the cluster bus) free too
    python3 - <<'EOF'
import socket
for _ in range(100):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p + 10000 > 65535:
        continue
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 10000))
    except OSError:
        continue
    finally:
        t.close()
    print(p); break
EOF
}
start() {   # start PORT [cluster]
    mkdir -p "$DIR/$1"
    if [ "${2:-}" = cluster ]; then
        (cd "$DIR/$1" && exec redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no \
            --loglevel warning --daemonize no --cluster-enabled yes --cluster-config-file nodes.conf) \
            > /dev/null 2>&1 &
    else
        redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning \
            --daemonize no --dir "$DIR/$1" > /dev/null 2>&1 &
    fi
    PIDS+=($!)
    for _ in $(seq 100); do redis-cli -p "$1" PING 2>/dev/null | grep -q PONG && return; sleep 0.05; done
    echo "redis-server on $1 did not start" >&2; exit 1
}
ALONE=$(free_pair); start "$ALONE"
NODES=()
for _ in 1 2 3; do P=$(free_pair); start "$P" cluster; NODES+=("$P"); done
redis-cli --cluster create $(for p in "${NODES[@]}"; do echo "127.0.0.1:$p"; done) --cluster-yes > /dev/null 2>&1
for _ in $(seq 200); do redis-cli -p "${NODES[0]}" CLUSTER INFO | grep -q cluster_state:ok && break; sleep 0.1; done
CH=fastsock:t:bench
SLOT=$(redis-cli -p "${NODES[0]}" CLUSTER KEYSLOT "$CH")
OWNER=""
for p in "${NODES[@]}"; do
    redis-cli -p "$p" CLUSTER NODES | grep myself | grep -qE "[^0-9]$SLOT(-| |$)" && OWNER=$p
done
if [ -z "$OWNER" ]; then   # slot ranges: find the owner by asking for a MOVED
    for p in "${NODES[@]}"; do
        redis-cli -p "$p" SPUBLISH "$CH" x 2>&1 | grep -q MOVED || { OWNER=$p; break; }
    done
fi
PAYLOAD=$(head -c 74 /dev/zero | tr '\0' 'x')
rate() {   # rate PORT COMMAND
    redis-benchmark -p "$1" -n 400000 -c 4 -P 64 -q "$2" "$CH" "$PAYLOAD" 2>/dev/null \
        | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1
}
echo "owner of $CH (slot $SLOT): 127.0.0.1:$OWNER; standalone: 127.0.0.1:$ALONE"
for R in $(seq "$ROUNDS"); do
    for S in 0 2 8; do
        SUBS=()
        for i in $(seq 1 "$S"); do
            redis-cli -p "$ALONE" SUBSCRIBE "$CH" > /dev/null 2>&1 & SUBS+=($!)
            redis-cli -p "$OWNER" SSUBSCRIBE "$CH" > /dev/null 2>&1 & SUBS+=($!)
            redis-cli -p "$OWNER" SUBSCRIBE "$CH" > /dev/null 2>&1 & SUBS+=($!)
        done
        sleep 0.3
        A=$(rate "$ALONE" PUBLISH); B=$(rate "$OWNER" SPUBLISH); C=$(rate "$OWNER" PUBLISH)
        echo "round $R subscribers=$S  standalone PUBLISH/s $A  cluster SPUBLISH/s $B  cluster PUBLISH/s $C"
        for p in "${SUBS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
        wait "${SUBS[@]:-}" 2>/dev/null
    done
done
