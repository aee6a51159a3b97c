#!/usr/bin/env bash
# Long-mode fuzzing (issue 20, item 4): CASES (default 1,000,000) cases per parser target, two
# targets at a time, each writing its results to target/fuzz-long/<target>.json and its table
# to target/fuzz-long/<target>.txt. Uses the dev-profile `fuzz` binary that
# `cargo test --workspace` builds, so nothing is rebuilt in another profile.
#   bench/fuzz.sh                 # every target, 1,000,000 cases each
#   CASES=100000 bench/fuzz.sh safetensors gguf
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${CASES:-1000000}"
SEED="${SEED:-1}"
JOBS="${JOBS:-2}"
cargo build -p compress-fuzz --bin fuzz
BIN=target/debug/fuzz
OUT="${OUT:-target/fuzz-long}"
mkdir -p "$OUT"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(safetensors safetensors_index gguf config tokenizer pack_quantized pack_layer recipe data http)
fi
status=0
run() {
  RUST_BACKTRACE=0 "$BIN" --target "$1" --cases "$CASES" --seed "$SEED" --json "$OUT/$1.json" \
    >"$OUT/$1.txt" 2>"$OUT/$1.err" || return 1
}
running=0
for t in "${TARGETS[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  run "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
for t in "${TARGETS[@]}"; do grep -v '^target ' "$OUT/$t.txt" | head -1; done
exit $status
