#!/usr/bin/env bash
# issue 26 before/after: ViT track seeds 42-44, then ResNet seeds 42-44; fp32, official settings, THREADS=2
# after = commit 7616394, before = 7616394 with 5c84ffa's common/unlearn.py + common/methods/ (worktrees under /tmp/ba);
# then per seed: python bench/compare_roots.py /tmp/ba/before /tmp/ba/after --seed S --track T
#   bash bench/before_after_26.sh            (from the repository root, after `make venv`)
set -euo pipefail
export THREADS=2 PYTHONHASHSEED=0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
D=$(cd "${DATA_DIR:-$ROOT/../shared/data/cifar10-kaggle-subset}" && pwd)
[ -d /tmp/ba/after_code ] || git -C "$ROOT" worktree add -f /tmp/ba/after_code 7616394
[ -d /tmp/ba/before_code ] || { git -C "$ROOT" worktree add -f /tmp/ba/before_code 7616394 &&
  git -C /tmp/ba/before_code checkout 5c84ffa -- common/unlearn.py common/methods/; }
TRACK_LIST=${TRACK_LIST:-"vit resnet"}
for track in $TRACK_LIST; do
for s in 42 43 44; do
  A=/tmp/ba/after/seed-$s; B=/tmp/ba/before/seed-$s
  ARGS="--profile cpu --device cpu --seed $s --wandb 0 --precision fp32"
  cd /tmp/ba/after_code
  [ -f $A/01_prepare_data/metrics.json ] || $PY 01_prepare_data.py $ARGS --results $A --source kaggle --data-dir $D \
      --cache-dir /tmp/ba/cache --forget-class 0 --split-seed 42
  if [ $track = vit ]; then train=03_train_vit_refs.py; st=03_train_vit_refs; un=04_unlearn_vit; else train=02_train_resnet.py; st=02_train_resnet; un=05_unlearn_gan; fi
  [ -f $A/$st/metrics.json ] || $PY $train $ARGS --results $A --noise-gold true
  mkdir -p $B; for d in 01_prepare_data $st; do [ -d $B/$d ] || cp -a $A/$d $B/$d; done
  echo "== $(date +%T) $track seed $s after"
  [ -f $A/$un/metrics.json ] || $PY $un.py $ARGS --results $A --settings official --tuned-dir common/tuned
  cd /tmp/ba/before_code
  echo "== $(date +%T) $track seed $s before"
  [ -f $B/$un/metrics.json ] || $PY $un.py $ARGS --results $B --settings official --tuned-dir common/tuned
  cd /tmp/ba/after_code
  for R in $A $B; do rm -rf $R/06_membership_attack; $PY 06_membership_attack.py $ARGS --results $R; done
  echo "== $(date +%T) $track seed $s done"
done
done
cd /tmp/ba/after_code
for R in /tmp/ba/after /tmp/ba/before; do
  ids=$(ls $R | sed -n 's/^seed-//p' | tr '\n' ' ')
  $PY 07_report.py --profile cpu --results $R --device cpu --wandb 0 --seeds "$ids" --tracks "vit resnet" --audit false
done
echo "== $(date +%T) all done"
