#!/usr/bin/env bash
# The runtime against llama.cpp on the same weights, side by side in one run.
#
# Model: bench/prepare_1b_q4.sh (random TinyLlama-1.1B shapes, int4 g32 symmetric = Q4_0's grid,
# exported to GGUF Q4_0 without requantizing; lm_head 16-bit in both engines).
#
# Measured, with the same thread count:
#   llama.cpp  llama-bench -p PROMPT -n GEN            (prompt and decode tokens/s, one sequence)
#              llama-batched-bench -npp PROMPT -ntg GEN -npl 1,CONC   (S_PP, S_TG)
#   compress   compress bench --prompt-len PROMPT --gen-len GEN --concurrency 1,CONC
#              compress bench --prompt-len 1 --gen-len GEN   (decode from an empty context, as tg)
# and printed as ratios compress / llama.cpp (> 1: compress is faster).
#
# Usage: bash bench/vs_llama_cpp.sh [THREADS] [PROMPT] [GEN] [CONC]   (defaults: nproc 512 128 16)
# Results: target/bench-vs-llama-cpp/{llama_bench*.json,batched.jsonl,compress.json,summary.json}
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads=${1:-$(nproc)}
prompt=${2:-512}
gen=${3:-128}
conc=${4:-16}
out=target/bench-vs-llama-cpp
mkdir -p "$out"

bin=$(bash tests/interop/build_llama_cpp.sh | tail -n 1)
bash bench/prepare_1b_q4.sh > /dev/null
compress() { target/release/compress "$@"; }
w4="$out/w4g32-sym"
gguf="$out/w4g32-sym.q4_0.gguf"
# llama.cpp's usual Q4_0 file: lm_head quantized to Q4_0 too (fewer bytes per token than either
# engine reads above; the anchors in shared/anchors.md were measured this way).
gguf_q4head="$out/w4g32-sym.q4_0-head.gguf"

echo "== llama-bench (threads $threads)"
"$bin/llama-bench" -m "$gguf" -t "$threads" -p "$prompt" -n "$gen" -r 2 -o json > "$out/llama_bench.json"
"$bin/llama-bench" -m "$gguf_q4head" -t "$threads" -p 0 -n "$gen" -r 2 -o json > "$out/llama_bench_q4head.json"
echo "== llama-batched-bench (threads $threads, 1 and $conc sequences)"
"$bin/llama-batched-bench" -m "$gguf" -t "$threads" -tb "$threads" -c $(((prompt + gen) * conc)) \
    -b 2048 -ub 512 -npp "$prompt" -ntg "$gen" -npl "1,$conc" --output-format jsonl 2> "$out/batched.log" \
    | grep '^{' > "$out/batched.jsonl"
echo "== compress bench (threads $threads)"
compress --threads "$threads" bench --model "$w4" --prompt-len "$prompt" --gen-len "$gen" \
    --concurrency "1,$conc" --json > "$out/compress.json"
# llama-bench's tg test decodes from an empty context: the same here (a 1-token prompt).
compress --threads "$threads" bench --model "$w4" --prompt-len 1 --gen-len "$gen" \
    --concurrency 1 --json > "$out/compress_tg.json"

python3 - "$out" "$conc" <<'EOF'
import json, sys
out, conc = sys.argv[1], int(sys.argv[2])
lb = json.load(open(f"{out}/llama_bench.json"))
pp = next(r["avg_ts"] for r in lb if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in lb if r["n_gen"] > 0 and r["n_prompt"] == 0)
bb = {r["pl"]: r for r in map(json.loads, open(f"{out}/batched.jsonl"))}
ours = json.load(open(f"{out}/compress.json"))
runs = {r["concurrency"]: r for r in ours["runs"]}
tg_ours = json.load(open(f"{out}/compress_tg.json"))["runs"][0]["decode_tokens_per_s"]
rows = [
    ("prompt tok/s, 1 seq (llama-bench pp)", runs[1]["prompt_tokens_per_s"], pp),
    ("decode tok/s, 1 seq, empty context (llama-bench tg)", tg_ours, tg),
    ("decode tok/s, 1 seq, after the prompt (batched S_TG)", runs[1]["decode_tokens_per_s"], bb[1]["speed_tg"]),
    (f"prompt tok/s, {conc} seqs (batched S_PP)", runs[conc]["prompt_tokens_per_s"], bb[conc]["speed_pp"]),
    (f"decode tok/s, {conc} seqs (batched S_TG)", runs[conc]["decode_tokens_per_s"], bb[conc]["speed_tg"]),
]
roof = ours["roofline_decode_tokens_per_s"]
print(f"read bandwidth {ours['read_bandwidth_gb_s']:.1f} GB/s, "
      f"{ours['weight_bytes_per_token'] / 1e6:.0f} MB weights per token: roofline {roof:.1f} tok/s")
print(f"{'':54} {'compress':>10} {'llama.cpp':>10} {'ratio':>7}")
for name, a, b in rows:
    print(f"{name:54} {a:10.2f} {b:10.2f} {a / b:7.2f}")
print(f"decode, 1 seq, empty context: compress at {tg_ours / roof:.0%} of roofline, llama.cpp at {tg / roof:.0%}")
tg_q4 = json.load(open(f"{out}/llama_bench_q4head.json"))[0]["avg_ts"]
print(f"llama.cpp with a Q4_0 lm_head (its usual file, fewer bytes per token): decode {tg_q4:.2f} tok/s; "
      f"compress / that = {tg_ours / tg_q4:.2f}")
json.dump({"rows": [{"metric": n, "compress": a, "llama_cpp": b, "ratio": a / b} for n, a, b in rows],
           "roofline_decode_tokens_per_s": roof,
           "llama_cpp_q4_0_head_decode_tokens_per_s": tg_q4}, open(f"{out}/summary.json", "w"), indent=1)
EOF
