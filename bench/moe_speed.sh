#!/usr/bin/env bash
# Decode speed of a mixture-of-experts model against the dense model it came from, on the
# runtime, side by side in one run. The model has real per-layer shapes (TinyLlama-1.1B's:
# hidden 2048, FFN 5632, 32 / 4 heads) with 4 layers and the demo's 4096-token vocabulary, random
# weights (`compress train --steps 1`); `compress moe` splits it into 8 experts with routers
# trained on calibration text; both are quantized to int4 (RTN, groups of 64, which divide the
# experts' 704-wide down_proj inputs).
#
# Usage: bash bench/moe_speed.sh [COMPRESS_BINARY] [THREADS]   (default: target/release/compress 2)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin=${1:-target/release/compress}
threads=${2:-2}
out=target/bench-moe
mkdir -p "$out"
cat > "$out/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 4096, "hidden_size": 2048,
 "intermediate_size": 5632, "num_hidden_layers": 4, "num_attention_heads": 32, "num_key_value_heads": 4,
 "head_dim": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "max_position_embeddings": 1024,
 "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
JSON
data=examples/data/corpus/valid.txt
if [ ! -f "$out/dense/model.safetensors" ]; then
    "$bin" train -q --config "$out/config.json" --tokenizer examples/models/demo/tokenizer.json --data "$data" \
        --steps 1 --batch-size 1 --seq-len 16 --dtype bf16 --out "$out/dense" --overwrite --checkpoint-every 0
    rm -rf "$out/dense/checkpoint"
fi
"$bin" moe -q --model "$out/dense" --out "$out/moe" --experts 8 --top-k 2 --data "$data" --calib-samples 8 \
    --seq-len 64 --router-steps 50 --overwrite
for m in dense moe; do
    "$bin" quantize -q --model "$out/$m" --out "$out/$m-w4" --bits 4 --group-size 64 --overwrite
done
bench() {  # model dir, extra flags → "decode tok/s at 1 sequence, at 16"
    "$bin" bench --threads "$threads" --model "$1" "${@:2}" --prompt-len 64 --gen-len 64 --concurrency 1,16 --no-bandwidth --json \
        | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["weight_bytes_per_token"], *(x["decode_tokens_per_s"] for x in r["runs"]))'
}
dense=$(bench "$out/dense-w4")
k2=$(bench "$out/moe-w4" --top-k 2)
k1=$(bench "$out/moe-w4" --top-k 1)
k8=$(bench "$out/moe-w4" --top-k 8)
python3 - "$dense" "$k2" "$k1" "$k8" "$threads" <<'PY'
import sys
rows = [("dense", sys.argv[1]), ("MoE top-2 of 8", sys.argv[2]), ("MoE top-1 of 8", sys.argv[3]), ("MoE top-8 of 8", sys.argv[4])]
base = [float(x) for x in sys.argv[1].split()]
print(f"decode tok/s, int4, {sys.argv[5]} threads (4 layers of TinyLlama-1.1B shapes):")
print(f"  {'model':<16} {'MB/token':>9} {'1 seq':>8} {'vs dense':>9} {'16 seqs':>8} {'vs dense':>9}")
for name, r in rows:
    b, one, sixteen = (float(x) for x in r.split())
    print(f"  {name:<16} {b / 1e6:>9.1f} {one:>8.1f} {one / base[1]:>8.2f}× {sixteen:>8.1f} {sixteen / base[2]:>8.2f}×")
PY
