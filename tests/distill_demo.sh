#!/usr/bin/env bash
# Distillation on the demo model (issue acceptance): a student with half the teacher's layers
# (depths 0 and 3), trained with α = 0.7, T = 2 must reach a lower held-out perplexity than the
# same student trained with α = 0 (plain next-token loss) on the same data, steps and seed.
# Prints teacher and students side by side: layers, parameters, held-out ppl and decode tokens/s
# on the runtime. With SWEEP=1 also trains T ∈ {1, 4} at α = 0.7.
#
# Usage: bash tests/distill_demo.sh [COMPRESS_BINARY] [STEPS]   (defaults: target/release/compress 150)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin=${1:-target/release/compress}
steps=${2:-150}
out=target/distill-demo
mkdir -p "$out"
runs=("0 2" "0.7 2")
if [ "${SWEEP:-0}" = 1 ]; then
    runs+=("0.7 1" "0.7 4")
fi
for r in "${runs[@]}"; do
    set -- $r
    "$bin" distill --teacher examples/models/demo --student-layers 2 --alpha "$1" --T "$2" \
        --data examples/data/corpus/train.txt --eval-data examples/data/corpus/valid.txt --eval-samples 64 \
        --steps "$steps" --seq-len 64 --batch-size 8 --lr 5e-4 --seed 0 --checkpoint-every 0 \
        --out "$out/a$1-t$2" --overwrite -q --json > "$out/a$1-t$2.json"
done
bench() {  # decode tokens/s of a model dir on the runtime, 1 sequence
    "$bin" bench --model "$1" --prompt-len 64 --gen-len 128 --concurrency 1 --no-bandwidth --json \
        | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["runs"][0]["decode_tokens_per_s"])'
}
teacher_tps=$(bench examples/models/demo)
student_tps=$(bench "$out/a0.7-t2")
python3 - "$out" "$teacher_tps" "$student_tps" "${runs[@]}" <<'PY'
import json, sys
out, t_tps, s_tps = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
runs = [r.split() for r in sys.argv[4:]]
rep = {f"{a} {t}": json.load(open(f"{out}/a{a}-t{t}.json")) for a, t in runs}
base = rep["0.7 2"]
te, init = base["teacher"], base["student_init"]
print(f"{'model':<26} {'layers':>6} {'params':>9} {'ppl':>9} {'decode tok/s':>13}")
print(f"{'teacher':<26} {te['layers']:>6} {te['params'] / 1e6:>8.2f}M {te['ppl']:>9.3f} {t_tps:>13.1f}")
print(f"{'student, as initialised':<26} {init['layers']:>6} {init['params'] / 1e6:>8.2f}M {init['ppl']:>9.3f}")
for (a, t), r in zip(runs, rep.values()):
    s = r["student"]
    tps = f"{s_tps:>13.1f}" if (a, t) == ("0.7", "2") else ""
    print(f"{f'student α {a} T {t}':<26} {s['layers']:>6} {s['params'] / 1e6:>8.2f}M {s['ppl']:>9.3f} {tps}")
print(f"student/teacher: params {init['params'] / te['params']:.2f}×, decode {s_tps / t_tps:.2f}× faster; "
      f"{base['steps']} steps of 8 × 64 tokens")
plain, kd = rep["0 2"]["student"]["ppl"], base["student"]["ppl"]
ok = kd < plain
print(f"held-out ppl: α 0.7 T 2 {kd:.3f} vs α 0 {plain:.3f} (goal: lower)")
print(f"{int(ok)} passed, {int(not ok)} failed")
sys.exit(0 if ok else 1)
PY
