#!/usr/bin/env bash
# llama.cpp runs our GGUF exports and agrees with HF transformers and `compress`:
#   0. logits: llama.cpp on F32 exports of the reference fixtures (Llama GQA, Mistral with
#      head_dim != hidden/heads, Qwen2 with biases and tied embeddings) vs the transformers
#      logits committed with them, and on the demo model vs compress eval --logits-out;
#   1. greedy text: llama-simple on the F32 export == compress generate --temperature 0
#      --activations f32;
#   2. perplexity: llama-perplexity -c 256 on valid.txt within 1% of
#      compress eval --seq-len 256 --context 128 (the same protocol); Q8_0, Q4_0 and the
#      Q4_0 of a GPTQ int4 group-32 dir reported with their mean KL vs the F32 export;
#   3. our Q4_0 / Q8_0 exports == llama-quantize --pure of our F32 export, byte for byte.
# Builds llama.cpp first (tests/interop/build_llama_cpp.sh, cached under target/).
# Needs: the debug `compress` binary (cargo build), .venv with the gguf package.
# Writes target/gguf-llama-cpp/summary.json. Usage: bash tests/interop/gguf_llama_cpp.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bin="$(bash tests/interop/build_llama_cpp.sh | tail -1)"
compress() { "${CARGO_TARGET_DIR:-target}/debug/compress" "$@"; }
py=.venv/bin/python
model=examples/models/demo
text=examples/data/corpus/valid.txt
out=target/gguf-llama-cpp
rm -rf "$out" && mkdir -p "$out"
fail=0

for t in f32 q8_0 q4_0; do
    compress export -q --model "$model" --type "$t" --out "$out/$t.gguf"
done
compress quantize -q --model "$model" --out "$out/w4g32" --bits 4 --group-size 32 --symmetric \
    --method gptq --calib examples/data/corpus/train.txt --calib-samples 64 --seq-len 256
compress export -q --model "$out/w4g32" --type q4_0 --out "$out/gptq-q4_0.gguf"

echo "== logits: llama.cpp on our F32 exports vs transformers (fixtures) and compress (demo)"
compare_logits() { # GGUF IDS_CSV REFERENCE(.safetensors key logits | .npy) LABEL
    "$bin/llama-logits" "$1" "$2" > "$1.logits"
    $py - "$1.logits" "$3" "$4" <<'PY'
import sys
import numpy as np
got_path, ref_path, label = sys.argv[1:]
if ref_path.endswith(".npy"):
    ref = np.load(ref_path)
else:
    from safetensors.numpy import load_file
    ref = load_file(ref_path)["logits"]
got = np.fromfile(got_path, dtype=np.float32).reshape(-1, ref.shape[1])[: ref.shape[0]]
diff = np.abs(got - ref).max()
scale = np.abs(ref).max()
same_argmax = (got.argmax(-1) == ref.argmax(-1)).mean()
ok = diff <= 1e-3 * max(scale, 1.0) and same_argmax == 1.0
print(f"{label}: max |logit diff| {diff:.2e} (logits up to {scale:.1f}), argmax agreement {same_argmax:.0%}")
sys.exit(0 if ok else 1)
PY
}
compress train-tokenizer --data examples/data/corpus/train.txt --vocab-size 300 --out "$out/tok300/tokenizer.json" > /dev/null
for fx in llama3_gqa_untied mistral_headdim qwen2_bias_tied; do
    compress export -q --model "tests/fixtures/$fx" --type f32 --tokenizer "$out/tok300/tokenizer.json" --out "$out/$fx.gguf"
    ids=$($py -c "from safetensors.numpy import load_file; print(','.join(map(str, load_file('tests/fixtures/$fx/reference.safetensors')['input_ids'])))")
    compare_logits "$out/$fx.gguf" "$ids" "tests/fixtures/$fx/reference.safetensors" "$fx" || fail=1
done
demo_ids=$($py -c "import json; print(','.join(map(str, json.load(open('tests/interop/demo_ids.json'))[0])))")
compress eval --model "$model" --data tests/interop/demo_ids.json --logits-out "$out/demo.npy" --json > /dev/null
compare_logits "$out/f32.gguf" "$demo_ids" "$out/demo.npy" "demo vs compress eval" || fail=1

echo "== greedy text (32 tokens)"
greedy_same=true
for prompt in "Once upon a time" "The government of the" "In 1905, the"; do
    # f32 activations: the exact arithmetic llama.cpp uses for F32 weights (q8 is the fast default).
    ours=$(compress generate -q --model "$model" --prompt "$prompt" --max-tokens 32 --temperature 0 --activations f32)
    theirs=$("$bin/llama-simple" -m "$out/f32.gguf" -n 32 "$prompt" 2>/dev/null)
    if [ "$ours" == "$theirs" ]; then
        echo "same: $ours"
    else
        printf 'DIFFERENT\n  compress : %s\n  llama.cpp: %s\n' "$ours" "$theirs"
        greedy_same=false
        fail=1
    fi
done

echo "== perplexity, n_ctx 256 (second half of each window scored)"
# Plain runs print "Final estimate: PPL = X"; --kl-divergence runs print "Mean PPL(Q) : X".
# A run that ends without its estimate (seen once: the log stopped at the last chunk) is retried.
ppl() {
    local v
    for _ in 1 2; do
        "$bin/llama-perplexity" -m "$1" -f "$text" -c 256 -b 256 -t "$(nproc)" "${@:2}" > "$1.log" 2>&1 || true
        v=$(sed -n -e 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' -e 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' "$1.log")
        if [ -n "$v" ]; then
            echo "$v"
            return 0
        fi
    done
    echo "llama-perplexity printed no estimate for $1 (log: $1.log)" >&2
    return 1
}
kld() { sed -n 's/^Mean    KLD: *\([0-9.e-]*\).*/\1/p' "$1.log"; }
ours_ppl=$(compress eval --model "$model" --data "$text" --seq-len 256 --context 128 --json \
    | $py -c 'import json,sys; print(json.load(sys.stdin)["ppl"])')
f32_ppl=$(ppl "$out/f32.gguf" --kl-divergence-base "$out/f32.kld")
declare -A q_ppl q_kld
for t in q8_0 q4_0 gptq-q4_0; do
    q_ppl[$t]=$(ppl "$out/$t.gguf" --kl-divergence-base "$out/f32.kld" --kl-divergence)
    q_kld[$t]=$(kld "$out/$t.gguf")
done
rel=$($py -c "print(abs($f32_ppl / $ours_ppl - 1))")
echo "compress eval $ours_ppl  llama.cpp f32 $f32_ppl  (relative difference $rel)"
for t in q8_0 q4_0 gptq-q4_0; do echo "llama.cpp $t: ppl ${q_ppl[$t]}  mean KLD vs f32 ${q_kld[$t]}"; done
$py -c "import sys; sys.exit(0 if $rel < 0.01 else 1)" || { echo "perplexity differs by more than 1%"; fail=1; }

echo "== our Q4_0 / Q8_0 vs llama-quantize --pure of our F32 export"
declare -A identical
for t in q8_0 q4_0; do
    up=$(echo "$t" | tr a-z A-Z)
    "$bin/llama-quantize" --pure "$out/f32.gguf" "$out/llama-quantize-$t.gguf" "$up" > "$out/llama-quantize-$t.log" 2>&1
    if $py tests/interop/gguf_same_tensors.py "$out/$t.gguf" "$out/llama-quantize-$t.gguf"; then
        identical[$t]=true
    else
        identical[$t]=false
        fail=1
    fi
done

cat > "$out/summary.json" <<JSON
{"greedy_same": $greedy_same, "compress_ppl": $ours_ppl, "llama_cpp_f32_ppl": $f32_ppl,
 "relative_difference": $rel,
 "q8_0": {"ppl": ${q_ppl[q8_0]}, "kld": ${q_kld[q8_0]}, "identical_to_llama_quantize": ${identical[q8_0]}},
 "q4_0": {"ppl": ${q_ppl[q4_0]}, "kld": ${q_kld[q4_0]}, "identical_to_llama_quantize": ${identical[q4_0]}},
 "gptq_q4_0": {"ppl": ${q_ppl[gptq-q4_0]}, "kld": ${q_kld[gptq-q4_0]}}}
JSON
cat "$out/summary.json"
exit $fail
