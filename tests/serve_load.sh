#!/usr/bin/env bash
# compress serve on the demo model under bench/load.py: concurrent streaming clients with random
# disconnects, on a KV cache too small for all of them (so the engine preempts). Fails unless
# every request that was not dropped succeeds, the KV blocks in use return to 0, the engine
# preempted, and SIGTERM then stops the server with exit status 0.
# Usage: bash tests/serve_load.sh COMPRESS_BINARY [CLIENTS] [REQUESTS] [KV_BLOCKS] [OUT_JSON]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin=$1
clients=${2:-64}
requests=${3:-500}
blocks=${4:-96}
out=${5:-$root/target/serve-load.json}
log=$(mktemp)
"$bin" serve --model "$root/examples/models/demo" --port 0 --kv-blocks "$blocks" --max-seqs 64 2> "$log" &
pid=$!
trap 'kill $pid 2> /dev/null || true; rm -f "$log"' EXIT
port=""
for _ in $(seq 100); do
    port=$(grep -o '127.0.0.1:[0-9]*' "$log" | head -n 1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$log"; echo "serve_load: the server did not start"; exit 1; }
python3 "$root/bench/load.py" --url "http://127.0.0.1:$port" --clients "$clients" \
    --requests "$requests" --metrics --expect-preemption --json "$out"
kill -TERM $pid
status=0
wait $pid || status=$?
[ "$status" = 0 ] || { cat "$log"; echo "serve_load: exit status $status after SIGTERM"; exit 1; }
echo "serve_load: ok (SIGTERM: exit 0)"
