#!/usr/bin/env bash
# Decode speed of structurally pruned models on the runtime, against the dense model, in one run.
#
# Model: the random-weight TinyLlama-1.1B-shape model (made once by the quantize_1b bench).
# Variants: dense, `compress prune --pattern heads --sparsity 0.5` (2 of 4 KV heads with their
# query heads per layer) and `--pattern neurons --sparsity 0.5` (half the FFN), each quantized
# to int4 g32 symmetric (as bench/vs_llama_cpp.sh), then `compress bench` (decode, 1 sequence).
# Prints decode tokens/s, weight bytes read per token, and the speed-up next to the byte ratio
# (decode is memory-bound, so "in proportion" means speed-up ≈ bytes_dense / bytes_pruned).
#
# Usage: bash bench/prune_speed.sh [THREADS] [GEN]   (defaults: nproc 64)
# Results: target/bench-prune-speed/{dense,heads,neurons}.json, summary.json
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads=${1:-$(nproc)}
gen=${2:-64}
out=target/bench-prune-speed
mkdir -p "$out"
cargo build --release -q -p compress-cli
compress() { target/release/compress "$@"; }
model=$(cargo bench -q -p compress-cli --bench quantize_1b -- --model-only | tail -n 1)
for v in dense heads neurons; do
    if [ ! -f "$out/$v-w4/config.json" ]; then
        src="$model"
        if [ "$v" != dense ]; then
            compress prune -q --model "$model" --out "$out/$v" --pattern "$v" --sparsity 0.5 --overwrite
            src="$out/$v"
        fi
        compress quantize -q --model "$src" --out "$out/$v-w4" --bits 4 --group-size 32 --symmetric --overwrite
    fi
done
for v in dense heads neurons; do
    echo "== compress bench $v (threads $threads)"
    compress --threads "$threads" bench --model "$out/$v-w4" --prompt-len 16 --gen-len "$gen" \
        --concurrency 1 --json > "$out/$v.json"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
runs = {v: json.load(open(f"{out}/{v}.json")) for v in ("dense", "heads", "neurons")}
def decode(r): return r["runs"][0]["decode_tokens_per_s"]
def nbytes(r): return r["weight_bytes_per_token"]
d = runs["dense"]
print(f"{'variant':<8} {'decode tok/s':>12} {'MB/token':>9} {'speed-up':>9} {'byte ratio':>10}")
summary = {}
for v, r in runs.items():
    s, b = decode(r) / decode(d), nbytes(d) / nbytes(r)
    summary[v] = {"decode_tokens_per_s": decode(r), "weight_bytes_per_token": nbytes(r), "speedup": s, "byte_ratio": b}
    print(f"{v:<8} {decode(r):>12.2f} {nbytes(r) / 1e6:>9.0f} {s:>9.2f} {b:>10.2f}")
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
PY
