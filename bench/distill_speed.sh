#!/usr/bin/env bash
# Distillation step time, side by side in one run: compress on flex (pure-Rust CPU), compress on
# libtorch CPU (tch feature), and a PyTorch eager script of the same setup
# (bench/distill_step_torch.py): the demo teacher, a student of its layers [0, 3], α 0.7, T 2,
# batch 8 × 64 tokens, AdamW with clipping, on THREADS threads. Prints median ms per step and
# the ratios to PyTorch.
#
# Usage: bash bench/distill_speed.sh [THREADS] [STEPS] [FLEX_BINARY] [TCH_BINARY]
#   FLEX_BINARY defaults to target/release/compress; TCH_BINARY (built with --features tch,
#   LIBTORCH_USE_PYTORCH=1) is skipped when absent. Needs .venv (tests/reference/setup_venv.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads=${1:-2}
steps=${2:-20}
flex=${3:-target/release/compress}
tch=${4:-}
out=target/bench-distill
mkdir -p "$out"
torch_lib=$(.venv/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')

median_ms() {  # median step time of a metrics.jsonl, skipping the first 3 steps
    python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ms = sorted(8 * 64 / r["tokens_per_s"] * 1000 for r in rows[3:])
print(f"{ms[len(ms) // 2]:.1f}")
PY
}

run_compress() {  # binary, device, tag
    "$1" distill --device "$2" --threads "$threads" --teacher examples/models/demo --student-layers 2 \
        --alpha 0.7 --T 2 --data examples/data/corpus/valid.txt --steps "$steps" --seq-len 64 \
        --batch-size 8 --out "$out/$3" --overwrite -q --checkpoint-every 0 > /dev/null
    median_ms "$out/$3/metrics.jsonl"
}

flex_ms=$(run_compress "$flex" cpu flex)
tch_ms=""
if [ -n "$tch" ] && [ -x "$tch" ]; then
    tch_ms=$(LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" run_compress "$tch" tch:cpu tch)
fi
torch_ms=$(.venv/bin/python bench/distill_step_torch.py examples/models/demo "$steps" 8 64 "$threads" 2> "$out/torch.log" \
    | python3 -c 'import json, sys; print("%.1f" % json.load(sys.stdin)["median_step_ms"])')
python3 - "$flex_ms" "${tch_ms:-nan}" "$torch_ms" "$threads" <<'PY'
import sys
flex, tch, torch, threads = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"distillation step (demo teacher → 2-layer student, batch 8 × 64, {threads} threads), median ms:")
print(f"  {'engine':<22} {'ms/step':>9} {'vs PyTorch':>11}")
for name, v in [("compress flex", flex), ("compress tch cpu", tch), ("PyTorch eager", torch)]:
    if v == v:
        print(f"  {name:<22} {v:>9.1f} {torch / v:>10.2f}×")
    else:
        print(f"  {name:<22} {'skipped':>9}")
PY
