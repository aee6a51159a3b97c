#!/usr/bin/env bash
# Interrupting a recipe mid-stage and resuming it: `full` (prune → distill → quantize) is killed
# (SIGKILL) while its second stage runs, then run again with --resume. Fails unless the first
# stage is not redone and the final model and report numbers equal an uninterrupted run's.
# Usage: bash tests/recipe_resume.sh COMPRESS_BINARY
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin=$1
recipe="$root/recipes/full.toml"
a="$root/target/ci-recipe-full"
b="$root/target/ci-recipe-full-resumed"
"$bin" -q run "$recipe" --out "$a" --overwrite > "$a.log" 2>&1 || { cat "$a.log"; exit 1; }

rm -rf "$b"
"$bin" -q run "$recipe" --out "$b" > /dev/null 2>&1 &
pid=$!
# Wait for the first stage to be recorded, then kill the run inside the second.
for _ in $(seq 600); do
    grep -q '"neurons50"' "$b/run.json" 2> /dev/null && break
    sleep 0.2
done
sleep 2
kill -9 $pid 2> /dev/null || { echo "recipe_resume: the run ended before it could be interrupted"; exit 1; }
wait $pid 2> /dev/null || true
grep -q '"neurons50"' "$b/run.json" || { echo "recipe_resume: stage 1 was never recorded"; exit 1; }
if grep -q '"gptq-w4"' "$b/run.json"; then echo "recipe_resume: killed too late"; exit 1; fi

log=$("$bin" -q run "$recipe" --out "$b" --resume 2>&1 > /dev/null)
echo "$log" | grep -q "neurons50 (prune): unchanged, resumed" \
    || { echo "$log"; echo "recipe_resume: the finished stage was redone"; exit 1; }
for f in stages/03-gptq-w4/model.safetensors stages/02-recover/model.safetensors; do
    cmp "$a/$f" "$b/$f" || { echo "recipe_resume: $f differs from the uninterrupted run"; exit 1; }
done
python3 - "$a/report.json" "$b/report.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for ra, rb in zip(a["rows"], b["rows"]):
    assert (ra["name"], ra["ppl"], ra["kld"]) == (rb["name"], rb["ppl"], rb["kld"]), (ra, rb)
print("recipe_resume: interrupted in stage 2, resumed without redoing stage 1; final model and "
      f"report equal the uninterrupted run (ppl {b['rows'][-1]['ppl']:.3f})")
PY
