"""Choose the sample-wise (ResNet) cpu recipe on VALIDATION data: for each 02 recipe, does `original` measurably
memorise its forget set compared with `gold`?

For every variant (02 overrides) it trains original + gold with stage 02 into its own results tree (sharing one
stage-01 output) and prints, from the cached logits:
  - forget accuracy of original and gold with 95 % intervals, and the paired interval of their gap;
  - loss-threshold attack AUC (Yeom et al.) of forget rows vs `test_val` rows (never the reported test_eval rows),
    for original and gold, with 95 % intervals;
  - validation accuracy (test_val) and the training seconds of gold;
  - fit: eval-mode accuracy of each model on the rows it trained on (original: the sample-wise rows, gold:
    sample_retain), from the same cached logits. A gold that underfits its rows moves every method's gap.
With --seeds it trains every variant at each training seed (the stability check: every original and gold should
fit its rows, >= 97 %) and prints one row per (variant, seed), then the table.
Run (real subset, 2 cores):
  python bench/memorisation_sweep.py --data-dir ../shared/data/cifar10-kaggle-subset --out /tmp/sweep \
      --variant "epochs=15 label_smoothing=0" --variant "epochs=15 label_smoothing=0 augment=false"
  python bench/memorisation_sweep.py --data-dir ../shared/data/cifar10-kaggle-subset --out /tmp/stability \
      --variant "" --seeds 42,43,44,45,46,47,48,49,1001          (the cpu profile's recipe at 9 training seeds)
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

PREPARE = ["--profile", "cpu", "--source", "kaggle"]  # the cpu profile's cut (rows per class, forget fraction)


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
        fit_rows = torch.cat([s["sample_forget"], s["sample_retain"]]) if n == "original" else s["sample_retain"]
        out[n] = dict(acc, val_acc=100 * (lg[n]["test"][val].argmax(1) == yte[val]).float().mean().item(),
                      fit_acc=100 * (lg[n]["train"][fit_rows].argmax(1) == ytr[fit_rows]).float().mean().item(),
                      loss_auc_forget_vs_val=group_auc(pos, neg), loss_auc_ci=auc_ci(pos, neg))
    m = json.loads((results / "02_train_resnet/metrics.json").read_text())
    out["gold"]["seconds"] = m["models"]["gold"]["seconds"]
    out["precision"] = m.get("precision") or json.loads((results / "02_train_resnet/manifest.json").read_text())[
        "precision"]["resolved"]
    return out


def ci(pair) -> str:
    return f"[{pair[0]:.1f}, {pair[1]:.1f}]"


def table(rows: list[dict]) -> str:
    """Markdown: one row per (variant, seed)."""
    head = ("| variant | seed | precision | original fit % | gold fit % | original forget % | gold forget % | "
            "forget gap [95 %] | loss AUC original | loss AUC gold | val % original | gold s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        o, g = r["original"], r["gold"]
        lines.append(f"| {r['variant'] or '(profile)'} | {r['seed']} | {r['precision']} | {o['fit_acc']:.1f} | "
                     f"{g['fit_acc']:.1f} | {o['forget']:.1f} {ci(o['forget_ci'])} | {g['forget']:.1f} {ci(g['forget_ci'])} | "
                     f"{o['forget'] - g['forget']:+.1f} {ci(o['forget_gap_ci'])} | "
                     f"{o['loss_auc_forget_vs_val']:.3f} | {g['loss_auc_forget_vs_val']:.3f} | {o['val_acc']:.1f} | "
                     f"{g['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="/tmp/memorisation-sweep")
    ap.add_argument("--variant", action="append", required=True, help='02 overrides, e.g. "epochs=15 augment=false" '
                    '("" = the cpu profile as it is)')
    ap.add_argument("--seeds", default="42", help="training seeds, comma-separated (02's --seed)")
    ap.add_argument("--prepare", default="", help='extra 01 overrides, e.g. "sample_per_class=100"')
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--table-from", default="", help="print the table of an earlier run's output (its JSON lines) "
                    "and stop")
    a = ap.parse_args()
    if a.table_from:
        print(table([json.loads(x) for x in Path(a.table_from).read_text().splitlines() if x.startswith("{")]))
        return
    prepare = [x for kv in a.prepare.split() for x in ("--" + kv.split("=")[0].replace("_", "-"), kv.split("=")[1])]
    root = Path(a.out)
    base = root / "base"
    if not (base / "01_prepare_data/metrics.json").is_file():
        run(["01_prepare_data.py", *PREPARE, *prepare, "--data-dir", a.data_dir, "--cache-dir", str(root / "cache"),
             "--results", str(base)])
    rows = []
    for v in a.variant:
        for seed in [int(x) for x in a.seeds.split(",")]:
            tree = root / ((v.replace(" ", "_").replace("=", "-") or "profile") + f"_seed-{seed}")
            if tree.exists():
                shutil.rmtree(tree)
            shutil.copytree(base / "01_prepare_data", tree / "01_prepare_data")
            overrides = [x for kv in v.split() for x in ("--" + kv.split("=")[0].replace("_", "-"), kv.split("=")[1])]
            run(["02_train_resnet.py", "--profile", "cpu", "--results", str(tree), "--seed", str(seed),
                 "--precision", a.precision, *overrides])
            rows.append({"variant": v, "seed": seed, **summarise(tree)})
            print(json.dumps(rows[-1], default=float), flush=True)
    print(table(rows))
    (root / "table.md").write_text(table(rows) + "\n")


if __name__ == "__main__":
    main()
