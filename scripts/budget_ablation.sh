#!/usr/bin/env bash
# The 28x28 width, batch and EMA knobs of docs/quality.md "What each knob bought", each measured for the same
# wall-clock budget: 5 minutes of training on full MNIST, seed 0, one run at a time on both cores,
# then the digit evaluator on 10,000 samples. Unlike scripts/knob_ablation.sh (equal images), this
# charges each knob its speed. About 35 minutes on the 2-core machine.
# Usage: bash scripts/budget_ablation.sh [MNIST_ROOT] [OUT]
set -euo pipefail
root=${1:-../shared/data/mnist}
out=${2:-runs/budget-ablation}
mkdir -p "$out"

# every knob the table compares, pinned to the values it was measured around (a later option
# overrides an earlier one, so each run repeats only the knob it changes)
PINNED=(--batch-size 64 --g-width 64 --d-width 16 --lr-g 2e-4 --lr-d 2e-4 --beta1 0.5 --beta2 0.999
        --ema-decay 0.999 --real-label 1.0 --precision fp32)

run() {  # NAME ARGS...: train for 5 minutes (SIGTERM saves the checkpoint), then score it
  local name=$1; shift
  timeout -s TERM 300 dcgan train --data mnist --data-root "$root" --run-dir "$out/$name" --quiet --seed 0 \
    --steps 1000000000 "${PINNED[@]}" "$@" > "$out/$name.log" 2>&1 || [ $? -eq 124 ]
  dcgan eval "$out/$name" --json > "$out/$name.json" 2>> "$out/$name.log"
  python - "$out/$name" "$*" <<'PY'
import json, sys
run, args = sys.argv[1], sys.argv[2]
d = json.load(open(run + ".json"))
rows = [json.loads(line) for line in open(run + "/metrics.jsonl")]
print(f"| {args} | {d['fid']:.2f} | {d['kid_mean']:.4f} | {d['is_mean']:.2f} | {d['min_class']}: "
      f"{d['min_class_share']:.1%} | {d['step']:,} | {d['step'] * json.load(open(run + '/config.json'))['batch_size']:,} |")
PY
}
echo "| options (5 minutes each) | FID | KID | IS | smallest class | steps | images |"
echo "|---|---:|---:|---:|---:|---:|---:|"
run d16 --d-width 16
run d16-g32 --d-width 16 --g-width 32
run d16-b32 --d-width 16 --batch-size 32
run d16-g96 --d-width 16 --g-width 96
run d16-ema9995 --d-width 16 --ema-decay 0.9995
run d8 --d-width 8
