#!/usr/bin/env bash
# compress convert --from-gguf against transformers' own GGUF loader, on every ggml type
# llama-quantize makes: the demo exported to F32 (and F16/Q8_0/Q4_0 by compress), then
# llama-quantize --pure to BF16, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (rows of 704
# fall back to a 32-block type, as llama-quantize does); each file is imported and compared by
# tests/interop/gguf_import.py (tensors exact, logits within 1e-4, same tokenizer ids); then the
# tokenizers rebuilt from llama.cpp's vocabulary-only GGUFs against its tokenizer test vectors.
# With REAL=1 also the real SmolLM2-135M GGUF fetched by bench/fetch_real_model.sh.
# Needs: the debug `compress` binary, .venv (transformers, gguf, accelerate), llama.cpp (built
# by tests/interop/build_llama_cpp.sh, cached under target/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bin="$(bash tests/interop/build_llama_cpp.sh | tail -1)"
compress() { "${CARGO_TARGET_DIR:-target}/debug/compress" "$@"; }
out=target/gguf-import
rm -rf "$out" && mkdir -p "$out"
ids=tests/interop/demo_ids.json
for t in f32 f16 q8_0 q4_0; do
    compress export -q --model examples/models/demo --type "$t" --out "$out/$t.gguf"
done
for t in bf16 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k; do
    "$bin/llama-quantize" --pure "$out/f32.gguf" "$out/$t.gguf" "$t" > "$out/$t.log" 2>&1 \
        || { cat "$out/$t.log"; exit 1; }
done
specs=()
for t in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k; do
    d="$out/$t"
    compress convert -q --from-gguf "$d.gguf" --out "$d"
    compress eval -q --model "$d" --data "$ids" --logits-out "$d.npy" --json > /dev/null
    specs+=("$d.gguf:$d:$d.npy")
done
.venv/bin/python tests/interop/gguf_import.py "$ids" examples/data/corpus/valid.txt "${specs[@]}"
# Tokenizers rebuilt from llama.cpp's vocabulary-only files against its test vectors (the ids
# of the original Hugging Face tokenizers).
models="$(ls -d target/llama.cpp/llama_cpp_python-*/vendor/llama.cpp/models | tail -1)"
.venv/bin/python tests/interop/gguf_vocab.py "${CARGO_TARGET_DIR:-target}/debug/examples/gguf_tokenizer" \
    "$models" "$out/vocab" --require llama-spm,llama-bpe,qwen2,gpt-2,mpt,phi-3
if [ "${REAL:-0}" = 1 ]; then
    real="$(bash bench/fetch_real_model.sh)"
    .venv/bin/python - "$real/tokenizer.json" examples/data/corpus/valid.txt "$out/real_ids.json" <<'PY'
import json, sys
from tokenizers import Tokenizer
ids = Tokenizer.from_file(sys.argv[1]).encode(open(sys.argv[2]).read()[:3000]).ids[:128]
json.dump([ids], open(sys.argv[3], "w"))
PY
    compress eval -q --model "$real" --data "$out/real_ids.json" --logits-out "$out/real.npy" --json > /dev/null
    .venv/bin/python tests/interop/gguf_import.py "$out/real_ids.json" examples/data/corpus/valid.txt \
        "target/models/smollm2-135m-instruct.q4_1.gguf:$real:$out/real.npy"
fi
