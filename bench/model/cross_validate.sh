#!/usr/bin/env bash
# Cross-validation of the built-in model's recipe over more adult patients than one fold holds.
#
#   bench/model/cross_validate.sh ENCODER OUT [FOLD...]      (default folds: 1 2 3)
#
# ENCODER is a masked-autoencoder backbone (`hilum-cli pretrain`) that no fold's labels reached;
# for the built-in model's recipe (hilum-cxr-v5's training, shown the centre crop as hilum-cxr-v6), its four pre-training stages on every film without --hold-out-seed
# (pixels only, as a site's own `pretrain --catalog` sees its future films). Those stages start
# from hilum-cxr-pneumonia-v1, which saw the pediatric labels of every patient outside fold 0: the
# adult figures of folds 1-3 are clean, their pediatric ones are not. For each FOLD it trains
# OUT/fold-FOLD with the model card's `train` command and `--fold FOLD` (resumable: a stopped run
# goes on from its checkpoint), then prints the figures over the built-in model's own fold 0 and
# every fold together (population_report.py: each film scored by the model that never saw its labels).
# Run from the repository root. HILUM_CLI picks another binary (default build/app/hilum-cli).
set -euo pipefail
encoder=${1:?usage: cross_validate.sh ENCODER OUT [FOLD...]}
out=${2:?usage: cross_validate.sh ENCODER OUT [FOLD...]}
shift 2
folds=("$@")
[ ${#folds[@]} -gt 0 ] || folds=(1 2 3)
cli=${HILUM_CLI:-build/app/hilum-cli}
shared=../shared/data
mkdir -p "$out"
models=(resources/models/hilum-cxr-v6:0)
for fold in "${folds[@]}"; do
  model="$out/fold-$fold"
  if [ ! -f "$model/training_report.json" ]; then
    "$cli" train \
      --data "$shared/cxr-pneumonia-224/train" --population pediatric --ages 1-5 \
      --data "$shared/cxr-nih-adult-512" --population adult --repeat 4 \
      --outputs "Pneumonia,No Finding,Infiltration,Atelectasis,Edema,Effusion" \
      --init "$encoder" --out "$model" \
      --epochs 10 --lr 0.0005 --layer-decay 0.75 --warmup-epochs 1 --seed 1 --fold "$fold" --center-crop 0.86 \
      --reference-data "$shared/cxr-adult-unlabelled-512" > "$out/fold-$fold.txt" 2> "$out/fold-$fold.log"
  fi
  models+=("$model:$fold")
done
bench/model/population_report.py "${models[@]}" --cli "$cli" | tee "$out/report.md"
