#!/usr/bin/env bash
# compress serve against llama-server on the same weights (bench/prepare_1b_q4.sh: int4 g32 on
# random TinyLlama-1.1B shapes; llama.cpp reads the same codes and scales as GGUF Q4_0), side by
# side in one run, same thread count. Each server gets the same bench/load.py runs: non-streaming
# /v1/completions with random token-id prompts of PROMPT tokens and GEN tokens (ignore_eos), from
# 1 client and from CONC concurrent clients. Aggregate generated tokens/s (prefill included) and
# p50 latency are printed for both, with ratios compress / llama-server (> 1: compress is faster).
#   llama-server -np CONC -c CONC·(PROMPT+GEN+16) -t THREADS -tb THREADS (continuous batching on)
#   compress serve --max-seqs CONC (KV blocks for CONC full sequences)
# Usage: bash bench/serve_vs_llama_server.sh [THREADS] [PROMPT] [GEN] [CONC] [REQUESTS_PER_CLIENT]
#        (defaults: nproc 128 64 16 2)
# Results: target/bench-serve/{compress,llama}_{1,CONC}.json and summary.json
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads=${1:-$(nproc)}
prompt=${2:-128}
gen=${3:-64}
conc=${4:-16}
per=${5:-2}
out=target/bench-serve
mkdir -p "$out"
models=$(bash bench/prepare_1b_q4.sh | tail -n 1)
bin=$(bash tests/interop/build_llama_cpp.sh server | tail -n 1)
port_c=18431
port_l=18432
load() { # URL NAME CLIENTS REQUESTS
    python3 bench/load.py --url "$1" --clients "$3" --requests "$4" --prompt-len "$prompt" \
        --max-tokens "$gen" --disconnect 0 --no-stream --timeout 1200 --json "$out/$2.json" > /dev/null
}
wait_health() { # URL PID
    for _ in $(seq 600); do
        curl -sf "$1/health" > /dev/null 2>&1 && return 0
        kill -0 "$2" 2> /dev/null || return 1
        sleep 0.5
    done
    return 1
}

echo "== compress serve (threads $threads)"
blocks=$(( conc * ((prompt + gen + 15) / 16 + 1) ))
target/release/compress --threads "$threads" serve --model "$models/w4g32-sym" --port $port_c \
    --max-seqs "$conc" --kv-blocks "$blocks" 2> "$out/compress_serve.log" &
pid=$!
trap 'kill $pid 2> /dev/null || true' EXIT
wait_health "http://127.0.0.1:$port_c" $pid
load "http://127.0.0.1:$port_c" compress_1 1 "$per"
load "http://127.0.0.1:$port_c" "compress_$conc" "$conc" "$per"
kill $pid; wait $pid 2> /dev/null || true

echo "== llama-server -np $conc (threads $threads)"
"$bin/llama-server" -m "$models/w4g32-sym.q4_0.gguf" --port $port_l -np "$conc" \
    -c $(( conc * (prompt + gen + 16) )) -t "$threads" -tb "$threads" -b 2048 -ub 512 \
    > "$out/llama_server.log" 2>&1 &
pid=$!
wait_health "http://127.0.0.1:$port_l" $pid || { tail -20 "$out/llama_server.log"; exit 1; }
load "http://127.0.0.1:$port_l" llama_1 1 "$per"
load "http://127.0.0.1:$port_l" "llama_$conc" "$conc" "$per"
kill $pid; wait $pid 2> /dev/null || true

python3 - "$out" "$conc" <<'PY'
import json, sys
out, conc = sys.argv[1], int(sys.argv[2])
r = {k: json.load(open(f"{out}/{k}.json")) for k in ["compress_1", f"compress_{conc}", "llama_1", f"llama_{conc}"]}
for k, v in r.items():
    assert v["failed"] == 0, (k, v)
rows = []
for c in [1, conc]:
    a, b = r[f"compress_{c}"], r[f"llama_{c}"]
    rows.append((f"{c} client(s): generated tok/s", a["generated_tokens_per_s"], b["generated_tokens_per_s"]))
    rows.append((f"{c} client(s): p50 latency ms (lower is better)", a["latency_p50_ms"], b["latency_p50_ms"]))
print(f"{'':46} {'compress':>10} {'llama-srv':>10} {'ratio':>7}")
for name, a, b in rows:
    ratio = a / b if "tok/s" in name else b / a
    print(f"{name:46} {a:10.2f} {b:10.2f} {ratio:7.2f}")
scale = lambda k: r[f"{k}_{conc}"]["generated_tokens_per_s"] / r[f"{k}_1"]["generated_tokens_per_s"]
print(f"{conc} clients vs 1: compress {scale('compress'):.2f}x, llama-server {scale('llama'):.2f}x")
json.dump({"rows": [{"metric": n, "compress": a, "llama_server": b} for n, a, b in rows],
           "scaling": {"compress": scale("compress"), "llama_server": scale("llama")}},
          open(f"{out}/summary.json", "w"), indent=1)
PY
