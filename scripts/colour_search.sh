#!/usr/bin/env bash
# The colour recipe search of docs/colour.md, for equal wall-clock time: each row trains for the same
# minutes (seed 0), two trainings side by side with one thread each, then the CIFAR-10 evaluator
# scores 10,000 samples of each against the data's training images.
# Usage: bash scripts/colour_search.sh DATA ROOT SIZE OUT MINUTES "name options" "name options" ...
#   e.g. bash scripts/colour_search.sh cifar10 ../shared/data/cifar10 32 runs/colour-32 5 \
#          "base" "d32 --d-width 32"
set -euo pipefail
data=$1 root=$2 size=$3 out=$4 minutes=$5
shift 5
mkdir -p "$out"
export OMP_NUM_THREADS=1

train() {  # NAME ARGS...
  local name=$1; shift
  [ -f "$out/$name/checkpoints/latest.pt" ] && return 0
  dcgan train --data "$data" --data-root "$root" --image-size "$size" --channels 3 --run-dir "$out/$name" \
    --quiet --seed 0 --minutes "$minutes" --log-every-steps 50 --sample-every-steps 100000 "$@" \
    > "$out/$name.log" 2>&1
}
while [ $# -ge 2 ]; do train $1 & train $2 & wait; shift 2; done
[ $# -eq 1 ] && train $1
unset OMP_NUM_THREADS

echo "| run | options | FID (cifar10, 10k) | KID | precision | recall | steps | images | D(x) | D(G(z)) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for log in "$out"/*.log; do
  name=$(basename "$log" .log)
  [ -f "$out/$name.json" ] || dcgan eval "$out/$name" --json > "$out/$name.json" 2>/dev/null
  python - "$out/$name" <<'PY'
import json, sys
run = sys.argv[1]
d = json.load(open(run + ".json"))
cfg = json.load(open(run + "/config.json"))
rows = [json.loads(line) for line in open(run + "/metrics.jsonl") if '"loss_D"' in line]
last = rows[-1]
opts = " ".join(f"{k}={cfg[k]}" for k in ("g_width", "d_width", "batch_size", "lr_g", "lr_d", "r1_gamma", "ema_decay"))
pr = lambda k: "-" if d.get(k) is None else f"{d[k]:.3f}"
print(f"| {run.split('/')[-1]} | {opts} | {d['fid']:.2f} | {d['kid_mean']:.4f} | {pr('precision')} | {pr('recall')} | "
      f"{last['step']:,} | {last['step'] * cfg['batch_size']:,} | {last['D_x']:.2f} | {last['D_G_z_before']:.2f} |")
PY
done
