#!/usr/bin/env bash
# Copy the seed trees' stages 01-03 (the originals and golds) of results root $1 into $2, with make's stamps and
# the files' times, so that `make all RESULTS=$2 SETTINGS=official` re-runs only 04-07: the official-defaults
# column of the README's tuning tables on the same originals and golds as the tuned column.
set -euo pipefail
src=$1 dst=$2
mkdir -p "$dst"
cp -a "$src"/.make-vars "$src"/.make-seeds "$dst"/
for tree in "$src"/seed-*; do
  mkdir -p "$dst/$(basename "$tree")"
  cp -a "$tree"/01_prepare_data "$tree"/02_train_resnet "$tree"/03_train_vit_refs "$dst/$(basename "$tree")"/
done
