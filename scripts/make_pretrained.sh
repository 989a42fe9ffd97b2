#!/usr/bin/env bash
# Make the shipped MNIST generator: train the default recipe on full MNIST for a wall-clock budget, then write
# src/dcgan/pretrained/mnist.safetensors, its grid mnist.png and its card mnist.json (data, recipe, steps,
# time, FID with its feature network and sample count, and these commands).
#
#   scripts/make_pretrained.sh                      # 10 minutes, MNIST IDX files in ../shared/data/mnist
#   MINUTES=3 DATA_ROOT=~/data/mnist scripts/make_pretrained.sh
#
# Run it from the repository root with this checkout's dcgan on the path (pip install -e . or
# PYTHONPATH=src). The run directory is kept under runs/ for dcgan eval and dcgan export.
set -euo pipefail

NAME=${NAME:-mnist}
MINUTES=${MINUTES:-10}
DATA_ROOT=${DATA_ROOT:-../shared/data/mnist}
SEED=${SEED:-0}
FID_IMAGES=${FID_IMAGES:-10000}    # samples for the card's FID against the 60,000 training digits
CHECK_IMAGES=${CHECK_IMAGES:-2000} # samples for the card's check against the built-in digits (tests repeat it)
RUN=${RUN:-runs/pretrained-$NAME-$(date +%Y%m%d-%H%M%S)}
OUT=${OUT:-src/dcgan/pretrained}

train=(dcgan train --data mnist --data-root "$DATA_ROOT" --minutes "$MINUTES" --seed "$SEED" --run-dir "$RUN" --quiet)
echo "+ ${train[*]}"
"${train[@]}" > /dev/null

MAKE_COMMAND="MINUTES=$MINUTES SEED=$SEED scripts/make_pretrained.sh" TRAIN_COMMAND="${train[*]}" \
python - "$RUN" "$NAME" "$DATA_ROOT" "$FID_IMAGES" "$CHECK_IMAGES" "$OUT" <<'PY'
import os
import sys

from dcgan.pretrained.make import make

run, name, data_root, fid_images, check_images, out = sys.argv[1:]
commands = [os.environ["MAKE_COMMAND"], os.environ["TRAIN_COMMAND"],
            f"dcgan eval --pretrained {name} --data mnist --data-root {data_root} -n {fid_images} --seed 0",
            f"dcgan eval --pretrained {name} --data mnist-5k -n {check_images} --seed 0 --k 0"]
path = make(run, name, data_root=data_root, commands=commands, num_images=int(fid_images),
            check_num_images=int(check_images), out_dir=out)
print(f"wrote {path}")
PY
dcgan pretrained
