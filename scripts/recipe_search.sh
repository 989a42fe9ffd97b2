#!/usr/bin/env bash
# The recipe search of docs/quality.md, for equal images: each knob trains on the same number of
# full-MNIST images (seed 0) from the same pinned base, two trainings at a time with one thread each
# (equal images do not depend on speed, so the pairs may share the machine), then the digit evaluator
# scores 10,000 samples of each. About 40 minutes on the 2-core machine.
# Usage: bash scripts/recipe_search.sh [MNIST_ROOT] [OUT] [STEPS]
set -euo pipefail
root=${1:-../shared/data/mnist}
out=${2:-runs/recipe-search}
steps=${3:-3125}  # x batch 64 = 200,000 images
mkdir -p "$out"
export OMP_NUM_THREADS=1

# the base every row starts from, pinned (a later option overrides an earlier one)
PINNED=(--batch-size 64 --g-width 64 --d-width 16 --lr-g 2e-4 --lr-d 2e-4 --beta1 0.5 --beta2 0.999
        --ema-decay 0.999 --real-label 1.0 --r1-gamma 0 --lr-schedule constant --lr-warmup-steps 0
        --precision fp32)

train() {  # NAME ARGS...
  local name=$1; shift
  [ -f "$out/$name/checkpoints/latest.pt" ] && return 0
  dcgan train --data mnist --data-root "$root" --run-dir "$out/$name" --quiet --seed 0 --steps "$steps" \
    --log-every-steps 250 --sample-every-steps 100000 --checkpoint-every-steps 1000 "${PINNED[@]}" "$@" \
    > "$out/$name.log" 2>&1
}
pair() {  # "NAME ARGS" "NAME ARGS"
  train $1 & train $2 & wait
}
pair "base" "bf16 --precision bf16"
pair "glr4 --lr-g 4e-4" "lr4 --lr-g 4e-4 --lr-d 4e-4"
pair "d32-glr4 --d-width 32 --lr-g 4e-4" "r1 --r1-gamma 0.1"
pair "cosine --lr-schedule cosine" "glr4-r1 --lr-g 4e-4 --r1-gamma 0.1"
# more rows, two at a time: bash scripts/recipe_search.sh ROOT OUT STEPS "name options" "name options" ...
shift $(( $# < 3 ? $# : 3 ))
while [ $# -ge 2 ]; do pair "$1" "$2"; shift 2; done
[ $# -eq 1 ] && train $1

echo "| run | options | FID | KID | IS | smallest class | largest class | D(x) at the end |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for log in "$out"/*.log; do
  name=$(basename "$log" .log)
  [ -f "$out/$name.json" ] || dcgan eval "$out/$name" --json > "$out/$name.json" 2>/dev/null
  python - "$out/$name" <<'PY'
import json, sys
run = sys.argv[1]
d = json.load(open(run + ".json"))
cfg = json.load(open(run + "/config.json"))
rows = [json.loads(line) for line in open(run + "/metrics.jsonl") if '"loss_D"' in line]
shares = d["class_shares"]
big = max(shares, key=shares.get)
opts = " ".join(f"{k}={cfg[k]}" for k in ("lr_g", "lr_d", "d_width", "r1_gamma", "lr_schedule", "precision"))
print(f"| {run.split('/')[-1]} | {opts} | {d['fid']:.2f} | {d['kid_mean']:.4f} | {d['is_mean']:.2f} | "
      f"{d['min_class']}: {d['min_class_share']:.1%} | {big}: {shares[big]:.1%} | {rows[-1]['D_x']:.2f} |")
PY
done
