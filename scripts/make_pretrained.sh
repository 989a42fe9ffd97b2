#!/usr/bin/env bash
# Make a shipped generator: train the default recipe for a wall-clock budget (or take a finished run), then
# write src/dcgan/pretrained/NAME.safetensors, its grid NAME.png and its card NAME.json (data, recipe, steps,
# time, FID with its feature network and sample count, and the commands that made it).
#
#   scripts/make_pretrained.sh                      # mnist: 10 minutes on the MNIST IDX files in ../shared/data/mnist
#   MINUTES=3 DATA_ROOT=~/data/mnist scripts/make_pretrained.sh
#   NAME=cifar10 DATA=cifar10 DATA_ROOT=../shared/data/cifar10 CHECK_SPLIT=test MINUTES=15 scripts/make_pretrained.sh
#   NAME=cifar10 DATA=cifar10 DATA_ROOT=../shared/data/cifar10 CHECK_SPLIT=test \
#     FROM_RUN=runs/q/runs/default-seed0 TRAIN_COMMAND="dcgan quality ..." scripts/make_pretrained.sh
#
# The card's FID is against the run's training data; its check (which tests/test_pretrained.py repeats) is
# against the built-in mnist-5k digits for a 28x28 digit generator and against DATA's CHECK_SPLIT otherwise.
# Run it from the repository root with this checkout's dcgan on the path (pip install -e . or PYTHONPATH=src).
# The run directory is kept under runs/ for dcgan eval and dcgan export.
set -euo pipefail

NAME=${NAME:-mnist}
DATA=${DATA:-mnist}
MINUTES=${MINUTES:-10}
DATA_ROOT=${DATA_ROOT:-../shared/data/mnist}
SEED=${SEED:-0}
FID_IMAGES=${FID_IMAGES:-10000}    # samples for the card's FID against the training data
CHECK_IMAGES=${CHECK_IMAGES:-2000} # samples for the card's check, which the tests repeat
CHECK_SPLIT=${CHECK_SPLIT:-train}
OUT=${OUT:-src/dcgan/pretrained}

if [[ -n "${FROM_RUN:-}" ]]; then
  RUN=$FROM_RUN
  : "${TRAIN_COMMAND:?FROM_RUN needs TRAIN_COMMAND, the command that trained it}"
  MAKE_COMMAND="NAME=$NAME DATA=$DATA CHECK_SPLIT=$CHECK_SPLIT FROM_RUN=$RUN scripts/make_pretrained.sh"
else
  RUN=${RUN:-runs/pretrained-$NAME-$(date +%Y%m%d-%H%M%S)}
  train=(dcgan train --data "$DATA" --data-root "$DATA_ROOT" --minutes "$MINUTES" --seed "$SEED" --run-dir "$RUN" --quiet)
  echo "+ ${train[*]}"
  "${train[@]}" > /dev/null
  TRAIN_COMMAND="${train[*]}"
  MAKE_COMMAND="NAME=$NAME DATA=$DATA CHECK_SPLIT=$CHECK_SPLIT MINUTES=$MINUTES SEED=$SEED scripts/make_pretrained.sh"
fi

MAKE_COMMAND=$MAKE_COMMAND TRAIN_COMMAND=$TRAIN_COMMAND \
python - "$RUN" "$NAME" "$DATA" "$DATA_ROOT" "$FID_IMAGES" "$CHECK_IMAGES" "$CHECK_SPLIT" "$OUT" <<'PY'
import os
import sys

from dcgan.pretrained.make import make

run, name, data, data_root, fid_images, check_images, check_split, out = sys.argv[1:]
digits = data.startswith("mnist")
check = "--data mnist-5k" if digits else f"--data {data} --data-root {data_root} --split {check_split}"
commands = [os.environ["MAKE_COMMAND"], os.environ["TRAIN_COMMAND"],
            f"dcgan eval --pretrained {name} --data {data} --data-root {data_root} -n {fid_images} --seed 0",
            f"dcgan eval --pretrained {name} {check} -n {check_images} --seed 0 --k 0"]
path = make(run, name, data_root=data_root, commands=commands, num_images=int(fid_images),
            check_num_images=int(check_images), check_split="train" if digits else check_split, out_dir=out)
print(f"wrote {path}")
PY
dcgan pretrained
