#!/usr/bin/env bash
# The weights the llama.cpp comparisons share, made once into target/bench-vs-llama-cpp/:
#   w4g32-sym/              a random-weight model of TinyLlama-1.1B's shapes (quantize_1b bench),
#                           quantized by `compress quantize --bits 4 --group-size 32 --symmetric`
#                           (int4, groups of 32, symmetric: exactly ggml's Q4_0 grid);
#   w4g32-sym.q4_0.gguf     its `compress export --type q4_0 --output-type f16`: every quantized
#                           linear keeps its codes and scales (no requantizing) and lm_head stays
#                           16-bit in both engines, so both read the same bytes per token;
#   w4g32-sym.q4_0-head.gguf  llama.cpp's usual Q4_0 file (lm_head in Q4_0 too).
# Builds the release binary first. Prints the out dir on its last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=target/bench-vs-llama-cpp
mkdir -p "$out"
cargo build --release -q -p compress-cli
compress() { target/release/compress "$@"; }
w4="$out/w4g32-sym"
if [ ! -f "$w4/config.json" ]; then
    model=$(cargo bench -q -p compress-cli --bench quantize_1b -- --model-only | tail -n 1)
    compress quantize -q --model "$model" --out "$w4" --bits 4 --group-size 32 --symmetric --overwrite
fi
# The random model has no tokenizer; the demo's fills the GGUF vocab (padding beyond it).
if [ ! -f "$out/w4g32-sym.q4_0.gguf" ]; then
    compress export -q --model "$w4" --type q4_0 --output-type f16 \
        --tokenizer examples/models/demo/tokenizer.json --out "$out/w4g32-sym.q4_0.gguf" --overwrite
fi
if [ ! -f "$out/w4g32-sym.q4_0-head.gguf" ]; then
    compress export -q --model "$w4" --type q4_0 \
        --tokenizer examples/models/demo/tokenizer.json --out "$out/w4g32-sym.q4_0-head.gguf" --overwrite
fi
echo "$out"
