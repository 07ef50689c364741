"""Choose the sample-wise (ResNet) cpu recipe on VALIDATION data: for each 02 recipe, does `original` measurably
memorise its forget set compared with `gold`?

For every variant (02 overrides) it trains original + gold with stage 02 into its own results tree (sharing one
stage-01 output) and prints, from the cached logits:
  - forget accuracy of original and gold with 95 % intervals, and the paired interval of their gap;
  - loss-threshold attack AUC (Yeom et al.) of forget rows vs `test_val` rows (never the reported test_eval rows),
    for original and gold, with 95 % intervals;
  - validation accuracy (test_val) and the training seconds of gold.
Run (real subset, ~7 min per variant on 2 cores):
  python bench/memorisation_sweep.py --data-dir ../shared/data/cifar10-kaggle-subset --out /tmp/sweep \
      --variant "epochs=15 label_smoothing=0" --variant "epochs=15 label_smoothing=0 augment=false"
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common.metrics import accuracy_figures, auc_ci, group_auc, true_class_log_prob  # noqa: E402

PREPARE = ["--profile", "cpu", "--source", "kaggle", "--sample-per-class", "250", "--forget-fraction", "0.1"]


def run(args: list[str]) -> None:
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def summarise(results: Path) -> dict:
    data = torch.load(results / "01_prepare_data/data.pt", weights_only=True)
    s = torch.load(results / "01_prepare_data/splits.pt", weights_only=True)
    lg = {n: torch.load(results / f"02_train_resnet/logits/{n}.pt", weights_only=True) for n in ("original", "gold")}
    ytr, yte, f, val = data["train_labels"], data["test_labels"], s["sample_forget"], s["test_val"]
    out = {}
    for n in ("original", "gold"):
        acc = accuracy_figures("forget", lg[n]["train"][f].argmax(1), lg["gold"]["train"][f].argmax(1), ytr[f])
        pos = true_class_log_prob(lg[n]["train"][f], ytr[f])  # score = -loss: higher = member
        neg = true_class_log_prob(lg[n]["test"][val], yte[val])
        out[n] = dict(acc, val_acc=100 * (lg[n]["test"][val].argmax(1) == yte[val]).float().mean().item(),
                      loss_auc_forget_vs_val=group_auc(pos, neg), loss_auc_ci=auc_ci(pos, neg))
    m = json.loads((results / "02_train_resnet/metrics.json").read_text())
    out["gold"]["seconds"] = m["models"]["gold"]["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="/tmp/memorisation-sweep")
    ap.add_argument("--variant", action="append", required=True, help='02 overrides, e.g. "epochs=15 augment=false"')
    a = ap.parse_args()
    root = Path(a.out)
    base = root / "base"
    if not (base / "01_prepare_data/metrics.json").is_file():
        run(["01_prepare_data.py", *PREPARE, "--data-dir", a.data_dir, "--cache-dir", str(root / "cache"),
             "--results", str(base)])
    for v in a.variant:
        tree = root / v.replace(" ", "_").replace("=", "-")
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(base / "01_prepare_data", tree / "01_prepare_data")
        overrides = [x for kv in v.split() for x in ("--" + kv.split("=")[0].replace("_", "-"), kv.split("=")[1])]
        run(["02_train_resnet.py", "--profile", "cpu", "--results", str(tree), *overrides])
        print(json.dumps({"variant": v, **summarise(tree)}, default=float), flush=True)


if __name__ == "__main__":
    main()
