#!/usr/bin/env bash
# The recipe knobs of docs/quality.md, each measured for the same number of images (192,000
# full-MNIST images, seed 0), from batch 128, EMA 0.999, lr 2e-4 and real label 1, then (second
# and third pairs) from batch 64. Two trainings at a time, one thread each, on a 2-core machine: about
# 35 minutes.
# Usage: bash scripts/knob_ablation.sh [MNIST_ROOT] [OUT]
set -euo pipefail
root=${1:-../shared/data/mnist}
out=${2:-runs/knob-ablation}
mkdir -p "$out"
export OMP_NUM_THREADS=1

# every knob the table compares, pinned: the table stays the same when dcgan train's defaults change
# (a later option overrides an earlier one, so each run repeats only the knob it changes)
PINNED=(--batch-size 128 --g-width 64 --d-width 64 --lr-g 2e-4 --lr-d 2e-4 --beta1 0.5 --beta2 0.999
        --ema-decay 0.999 --real-label 1.0 --precision fp32)

train() {  # NAME ARGS...: dcgan train on full MNIST into $out/NAME
  local name=$1; shift
  dcgan train --data mnist --data-root "$root" --run-dir "$out/$name" --quiet --seed 0 "${PINNED[@]}" "$@" \
    > "$out/$name.log" 2>&1
}
train baseline --steps 1500 &
train smooth09 --steps 1500 --real-label 0.9 &
wait
train batch64 --steps 3000 --batch-size 64 &
train ttur --steps 1500 --lr-d 4e-4 --lr-g 1e-4 &
wait
train batch32 --steps 6000 --batch-size 32 &
train glr4 --steps 3000 --batch-size 64 --lr-g 4e-4 &
wait
train dwidth32 --steps 3000 --batch-size 64 --d-width 32 &
train dwidth16 --steps 3000 --batch-size 64 --d-width 16 &
wait

echo "| knob | FID | KID | IS | smallest class |"
echo "|---|---:|---:|---:|---:|"
score() {  # LABEL RUN [eval options]
  local label=$1 run=$2; shift 2
  dcgan eval "$run" --json "$@" 2>/dev/null | python -c "
import json, sys
d = json.load(sys.stdin)
print(f\"| $label | {d['fid']:.2f} | {d['kid_mean']:.4f} | {d['is_mean']:.2f} | {d['min_class']}: {d['min_class_share']:.1%} |\")"
}
score "none (batch 128, EMA 0.999)" "$out/baseline"
score "no EMA (the same run's raw G)" "$out/baseline" --no-ema
score "one-sided label smoothing 0.9" "$out/smooth09"
score "batch 64 (3,000 steps)" "$out/batch64"
score "lr_D 4e-4, lr_G 1e-4" "$out/ttur"
score "batch 32 (6,000 steps)" "$out/batch32"
score "batch 64, lr_G 4e-4 (3,000 steps)" "$out/glr4"
score "batch 64, D width 32 (3,000 steps)" "$out/dwidth32"
score "batch 64, D width 16 (3,000 steps)" "$out/dwidth16"
