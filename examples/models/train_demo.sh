#!/usr/bin/env bash
# Reproduces examples/models/demo: a byte-level BPE tokenizer and a ~5M-parameter Llama
# (GQA, untied) trained with `compress train` on the public-domain corpus in examples/data.
#
# Training runs on libtorch CPU (`--device tch:cpu`, about 6x faster than the flex backend on
# 2 cores), so it needs the tch build:
#   bash tests/reference/setup_venv.sh
#   export LIBTORCH_USE_PYTORCH=1 LD_LIBRARY_PATH=$PWD/.venv/lib/python3.11/site-packages/torch/lib PATH=$PWD/.venv/bin:$PATH
#   cargo build -p compress-cli --features tch
# With DEVICE=cpu it runs on flex instead (same command, slower).
set -euo pipefail
cd "$(dirname "$0")/../.."
COMPRESS=${COMPRESS:-target/debug/compress}
DEVICE=${DEVICE:-tch:cpu}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$COMPRESS" train-tokenizer --data examples/data/corpus/train.txt --vocab-size 4096 \
    --out "$work/tokenizer.json"
"$COMPRESS" train --device "$DEVICE" --config tiny --seed 0 \
    --data examples/data/corpus/train.txt --tokenizer "$work/tokenizer.json" \
    --steps 1500 --batch-size 16 --seq-len 128 --lr 2e-3 --min-lr 1e-4 --warmup 100 \
    --weight-decay 0.1 --grad-clip 1.0 --checkpoint-every 500 --dtype bf16 \
    --out "$work/run"
mkdir -p examples/models/demo
cp "$work/run/config.json" "$work/run/model.safetensors" "$work/run/tokenizer.json" \
    "$work/run/metrics.jsonl" examples/models/demo/
# The transformers reference the tests compare against (needs the venv): the first held-out
# paragraph, tokenized, as input.
sed -n 3p examples/data/corpus/valid.txt > "$work/prompt.txt"
.venv/bin/python tests/reference/make_fixtures.py --model-dir examples/models/demo \
    --out tests/fixtures/demo_reference --text "$work/prompt.txt" --no-special-tokens
