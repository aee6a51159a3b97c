#!/usr/bin/env bash
# Crash consistency: SIGKILL the commands that write (quantize, prune, distill, moe, convert,
# export, run) at pseudo-random points (fixed seed) and check after every kill that
#   - the output is absent or complete: `compress inspect` loads it (GGUF: gguf magic and the
#     size the header implies is not checked here, only that a file in place is whole: written
#     atomically, so a partial file never has the final name);
#   - a previous complete output at the same path survives a killed --overwrite run;
#   - the input model is unchanged (sha256);
#   - a recipe killed mid-stage resumes with --resume.
# Usage: bash tests/crash_consistency.sh COMPRESS_BINARY [TRIES]   (default 100)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin=$1
kills=${2:-100}
work="$root/target/crash"
rm -rf "$work"
mkdir -p "$work"
demo="$root/examples/models/demo"
data="$root/examples/data/corpus/valid.txt"
before=$(cat "$demo"/*.safetensors "$demo"/config.json | sha256sum)
RANDOM=20
cmd_for() { # $1: index → a command line writing $work/out-$1 (or .gguf)
    local o="$work/out-$2"
    case $(($1 % 6)) in
    0) echo "quantize --model $demo --out $o --bits 4 --group-size 64 --overwrite" ;;
    1) echo "prune --model $demo --out $o --sparsity 0.5 --retrain-steps 20 --data $data --seq-len 32 --batch-size 2 --overwrite" ;;
    2) echo "distill --teacher $demo --student-layers 2 --data $data --steps 20 --seq-len 32 --batch-size 2 --out $o --overwrite" ;;
    3) echo "moe --model $demo --out $o --experts 4 --top-k 2 --data $data --router-steps 60 --seq-len 32 --calib-samples 4 --overwrite" ;;
    4) echo "convert --model $demo --out $o --dtype f16 --overwrite" ;;
    5) echo "export --model $demo --type q8_0 --out $o.gguf --overwrite" ;;
    esac
}
complete() { # $1: output path; 0 when absent or whole
    local o=$1
    if [ -f "$o.gguf" ]; then head -c 4 "$o.gguf" | grep -q GGUF; return; fi
    [ -e "$o" ] || return 0
    "$bin" -q inspect "$o" > /dev/null 2>&1
}
done_kills=0 survived=0
for i in $(seq 0 $((kills - 1))); do
    slot=$((i % 12))   # two output paths per command kind: fresh and previously complete
    args=$(cmd_for "$i" "$slot")
    prev_ok=0
    if [ $((slot / 6)) -eq 1 ] && [ ! -e "$work/out-$slot" ] && [ ! -e "$work/out-$slot.gguf" ]; then
        $bin -q $args > /dev/null 2>&1 && prev_ok=1
    elif complete "$work/out-$slot" && { [ -e "$work/out-$slot" ] || [ -e "$work/out-$slot.gguf" ]; }; then
        prev_ok=1
    fi
    delay=$(( (RANDOM % 30) * 15 ))   # 0 to 435 ms in 15 ms steps
    $bin -q $args > /dev/null 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    if kill -9 $pid 2> /dev/null; then done_kills=$((done_kills + 1)); fi
    wait $pid 2> /dev/null || true
    if ! complete "$work/out-$slot"; then
        echo "crash_consistency: kill $i ($args after ${delay} ms) left a half-written output"
        exit 1
    fi
    if [ $prev_ok -eq 1 ]; then
        if [ -e "$work/out-$slot" ] || [ -e "$work/out-$slot.gguf" ]; then survived=$((survived + 1)); else
            echo "crash_consistency: kill $i ($args) lost the previous complete output"
            exit 1
        fi
    fi
done
after=$(cat "$demo"/*.safetensors "$demo"/config.json | sha256sum)
[ "$before" = "$after" ] || { echo "crash_consistency: the input model changed"; exit 1; }
# A recipe killed in its second stage resumes.
r="$work/run"
"$bin" -q run "$root/recipes/full.toml" --out "$r" > /dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q '"neurons50"' "$r/run.json" 2> /dev/null && break; sleep 0.2; done
sleep 1
kill -9 $pid 2> /dev/null && done_kills=$((done_kills + 1))
wait $pid 2> /dev/null || true
"$bin" -q run "$root/recipes/full.toml" --out "$r" --resume > /dev/null 2>&1 \
    || { echo "crash_consistency: the killed recipe did not resume"; exit 1; }
complete "$r/final" || { echo "crash_consistency: the resumed recipe's output is not whole"; exit 1; }
echo "crash_consistency: $done_kills kills of running commands (of $((kills + 1)) tries), 0 half-written outputs, $survived previous outputs survived, input unchanged, killed recipe resumed"
