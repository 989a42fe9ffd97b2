#!/usr/bin/env bash
# The measurements of docs/conditional.md: class-conditional MNIST against the unconditional default,
# conditional training from a folder of class sub-folders, small datasets with and without
# augmentation, and fine-tuning against training from scratch.
#
#   bash scripts/measure_conditional_small_data.sh ../shared/data runs/issue14
#
# Every training runs with one thread, two at a time side by side (a 2-core machine), each pair for the
# same wall-clock budget; evaluations run afterwards, one at a time. Needs the MNIST IDX files and the
# anime faces under DATA (see ../shared/data/README.md).
set -euo pipefail
DATA=${1:?the folder holding mnist/ and anime-faces/}
OUT=${2:?a new output folder}
MNIST=$DATA/mnist
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
train() {  # train NAME MINUTES OPTIONS...: one run for a wall-clock budget, its log beside it
  local name=$1 minutes=$2; shift 2
  dcgan train --minutes "$minutes" --steps 1000000000 --run-dir "$OUT/$name" --quiet "$@" > "$OUT/$name.log" 2>&1
}
evaluate() {  # evaluate NAME OPTIONS...: dcgan eval's JSON beside the run
  local name=$1; shift
  dcgan eval "$OUT/$name" --json "$@" > "$OUT/$name.eval.json"
}

# 1. digits as PNG files: one sub-folder per class, a flat random 5,000, and two halves of the classes
python scripts/mnist_to_folders.py "$MNIST" "$OUT/digits/by-class"
python scripts/mnist_to_folders.py "$MNIST" "$OUT/digits/flat-5k" --flat --count 5000
python scripts/mnist_to_folders.py "$MNIST" "$OUT/digits/04" --classes 0,1,2,3,4
python scripts/mnist_to_folders.py "$MNIST" "$OUT/digits/59" --classes 5,6,7,8,9

# 2. conditional MNIST against the unconditional default, in one run of dcgan quality (15 minutes each,
#    side by side), with the paper recipe and the classic loop as the second pair
dcgan quality --data mnist --data-root "$MNIST" --budget-min 15 --threads 1 --jobs 2 --seeds 0 \
  --recipes default,conditional,paper,classic --out "$OUT/quality" > "$OUT/quality.out" 2>&1

# 3. the same conditional training from a folder of class sub-folders (15 minutes), beside the fine-tuning
#    source: the default recipe on digits 0-4 (5 minutes), then the digit small-data pair without augmentation
train cond-folder 15 --data folder --data-root "$OUT/digits/by-class" --conditional &
( train source-04 5 --data folder --data-root "$OUT/digits/04"
  train digits-1k 5 --data folder --data-root "$OUT/digits/flat-5k" --max-images 1000
  train digits-5k 5 --data folder --data-root "$OUT/digits/flat-5k" ) &
wait

# 4. small datasets with augmentation, side by side
train digits-1k-aug 5 --data folder --data-root "$OUT/digits/flat-5k" --max-images 1000 --augment color,translation,cutout &
train digits-5k-aug 5 --data folder --data-root "$OUT/digits/flat-5k" --augment color,translation,cutout &
wait
ANIME=(--data folder --data-root "$DATA/anime-faces" --channels 3 --image-size 64)
for n in 1000 5000; do
  train "anime-$n" 6 "${ANIME[@]}" --max-images "$n" &
  train "anime-$n-aug" 6 "${ANIME[@]}" --max-images "$n" --augment color,translation,cutout --mirror &
  wait
done

# 5. fine-tuning on digits 5-9: from the digits 0-4 run against from scratch, side by side
train tune-scratch 4 --data folder --data-root "$OUT/digits/59" --keep-every-minutes 1 &
train tune-init 4 --data folder --data-root "$OUT/digits/59" --init-from "$OUT/source-04" --keep-every-minutes 1 &
wait

# evaluations, one at a time
export OMP_NUM_THREADS=2
evaluate cond-folder --data mnist --data-root "$MNIST"
for run in digits-1k digits-5k digits-1k-aug digits-5k-aug; do
  evaluate "$run" --data mnist --data-root "$MNIST"
done
for run in tune-scratch tune-init; do
  for snapshot in "$OUT/$run"/checkpoints/minute_*.pt "$OUT/$run/checkpoints/latest.pt"; do
    dcgan eval "$snapshot" --json --data folder --data-root "$OUT/digits/59" > "${snapshot%.pt}.eval.json"
  done
done
echo "done: $OUT"
