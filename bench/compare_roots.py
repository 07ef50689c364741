"""Two results roots of the same seed trees (the same originals and golds, stage 06 with the same seed), method by
method: Avg Gap with its interval in each, the paired interval of the change, and the figures behind it.

Used for a before / after table of a harness change: copy one tree's 01-03 into two roots, run 04 / 05 with the old
code in one and the new code in the other, then 06 and 07 with the same code in both, and
  python bench/compare_roots.py /tmp/ba/before /tmp/ba/after --seed 42 --track resnet [--methods a,b]
The change's interval is paired: stage 06 resamples the same rows in both roots (same seed, same rows), so
replicate i of "after" minus replicate i of "before" is one bootstrap draw of the change (95 % percentile interval,
over the rows of the four Avg Gap terms; seed-to-seed spread is not in it).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

FIGS = [("acc_forget", "forget"), ("acc_retain", "retain"), ("acc_test", "test"), ("attack_mia_efficacy", "MIA-eff")]
VIT_FIGS = [("acc_forget_train", "forget"), ("acc_retain_train", "retain"), ("acc_test_retain", "test"),
            ("attack_mia_efficacy", "MIA-eff")]


def load(root: Path, seed: str, track: str) -> tuple[pd.DataFrame, dict]:
    df = pd.read_csv(root / "summary.csv")
    df = df[(df["track"] == track) & (df["seed"].astype(str) == seed)].set_index("model")
    boot = json.loads((root / f"seed-{seed}" / "06_membership_attack" / "avg_gap_boot.json").read_text())
    return df, boot["replicates"][track]


def fig(row: pd.Series, col: str) -> str:
    v = row.get(col)
    if v is None or pd.isna(v):
        return "–"
    d = 3 if col.startswith("attack") else 1
    return f"{v:.{d}f}"


def avg_gap(df: pd.DataFrame, boot: dict, m: str) -> str:
    """Avg Gap [95 %] of model `m`; "–" for a model without one (diverged: no bootstrap replicates)."""
    if m not in boot:
        return "–"
    return f"{df.loc[m, 'avg_gap']:.1f} [{df.loc[m, 'avg_gap_ci_lo']:.1f}, {df.loc[m, 'avg_gap_ci_hi']:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--seed", default="42")
    ap.add_argument("--track", default="resnet", choices=["resnet", "vit"])
    ap.add_argument("--methods", default="", help="comma-separated (default: every model but original / gold)")
    a = ap.parse_args()
    (b, bb), (n, nb) = load(Path(a.before), a.seed, a.track), load(Path(a.after), a.seed, a.track)
    figs = FIGS if a.track == "resnet" else VIT_FIGS
    names = [m for m in (a.methods.split(",") if a.methods else n.index) if m not in ("original", "gold", "gold_2")]
    print("| method | Avg Gap before | Avg Gap after | change [95 %] | " +
          " | ".join(f"{label} before → after" for _, label in figs) + " | steps | status before → after |")
    print("|---" * (6 + len(figs)) + "|")
    for m in names:
        if m not in b.index or m not in n.index:
            continue
        change = "–"
        if m in bb and m in nb:
            lo, hi = np.percentile(np.asarray(nb[m]) - np.asarray(bb[m]), [2.5, 97.5])
            shown = " (shown)" if lo > 0 or hi < 0 else ""
            change = f"{n.loc[m, 'avg_gap'] - b.loc[m, 'avg_gap']:+.1f} [{lo:+.1f}, {hi:+.1f}]{shown}"
        cells = [avg_gap(b, bb, m), avg_gap(n, nb, m), change]
        cells += [f"{fig(b.loc[m], c)} → {fig(n.loc[m], c)}" for c, _ in figs]
        status = lambda r: (r.get("status") if isinstance(r.get("status"), str) else "") or "ran"  # noqa: E731
        cells += [f"{int(b.loc[m, 'steps'])} → {int(n.loc[m, 'steps'])}", f"{status(b.loc[m])} → {status(n.loc[m])}"]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
