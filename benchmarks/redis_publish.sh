#!/bin/bash
# PUBLISH throughput of one redis-server with S subscriber connections (docs/scaling.md).
# Run: flock /tmp/fastsock-bench.lock benchmarks/redis_publish.sh
# Payload: 74 bytes = the 8-byte node id + the frame of a 64-byte message (fastsock.pubsub.redis).
set -u
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
redis-server --port $PORT --bind 127.0.0.1 --save "" --appendonly no --loglevel warning --daemonize no >/dev/null 2>&1 &
RPID=$!
sleep 0.5
PAYLOAD=$(head -c 74 /dev/zero | tr '\0' 'x')
for S in 0 2 8 32; do
  SUBS=()
  for i in $(seq 1 $S); do
    redis-cli -p $PORT SUBSCRIBE fastsock:t:bench > /dev/null 2>&1 &
    SUBS+=($!)
  done
  sleep 0.3
  R=$(redis-benchmark -p $PORT -n 400000 -c 4 -P 64 -q PUBLISH fastsock:t:bench "$PAYLOAD" 2>/dev/null | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1)
  echo "subscribers=$S publish: $R"
  for p in "${SUBS[@]:-}"; do [ -n "$p" ] && kill $p; done
  wait "${SUBS[@]:-}" 2>/dev/null
done
kill $RPID; wait $RPID
