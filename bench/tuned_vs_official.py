"""Avg Gap per method at the official defaults and at the tuned settings, mean ± std over the training seeds of
two results roots that share their seed trees' originals and golds (the README's tuning tables).

Run (after `make tune` and a multi-seed `make all`, then the same trees' 04-07 at the official defaults):
  make all PROFILE=cpu DATA_SOURCE=kaggle DATA_DIR=<data> SEEDS="42 43 44"                 # tuned, results/
  bash bench/official_copy.sh results results-official   # copies 01-03 (+ make's stamps), keeps the mtimes
  make all PROFILE=cpu DATA_SOURCE=kaggle DATA_DIR=<data> SEEDS="42 43 44" RESULTS=results-official SETTINGS=official
  python bench/tuned_vs_official.py results-official results --tuned common/tuned/cpu.json
Reads <root>/summary.csv (stage 07) and the tuned-settings file; prints one markdown table per track.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

REFS = ("original", "gold", "gold_2")


def cell(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "–"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def settings_text(entry: dict | None) -> str:
    if not entry:
        return "official (not tuned)"
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry["settings"].items())


def study_table(tuned: dict, track: str) -> list[str]:
    """Per method, on the tuning problem: the objective at the official defaults (trial 0) and at the chosen
    settings, with its parts, and the trial's timing (median method seconds, median overhead of the trial beyond
    the method's own run: loading the start weights, the objective's evaluation)."""
    methods = tuned.get(track, {}).get("methods", {})
    if not methods:
        return []
    out = [f"\n{track} track, tuning problem (objective = norm of gaps to the tuning gold, points):\n",
           "| method | objective, official defaults | objective, tuned (parts: forget / retain / val / mia) | best trial "
           "| median method s | median overhead % |", "|---|---|---|---|---|---|"]
    for name, e in sorted(methods.items(), key=lambda kv: kv[1]["study"]["objective"]):
        st = e["study"]
        parts = " / ".join(f"{st['parts'][k]:.1f}" if st["parts"].get(k) is not None else "–"
                           for k in ("forget", "retain", "val", "mia"))
        out.append(f"| {name} | {st['default_objective']:.1f} | {st['objective']:.1f} ({parts}) | {st['best_trial']} "
                   f"of {st['trials']} | {st['method_s_median']:.1f} | {st['overhead_pct_median']:.1f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("official", type=Path)
    ap.add_argument("tuned", type=Path)
    ap.add_argument("--tuned-file", "--tuned", dest="tuned_file", type=Path, default=Path("common/tuned/cpu.json"))
    args = ap.parse_args()
    off, tun = (pd.read_csv(p / "summary.csv", dtype={"seed": str}) if (p / "summary.csv").is_file()
                else pd.DataFrame(columns=["seed", "track", "model", "avg_gap"]) for p in (args.official, args.tuned))
    tuned = json.loads(args.tuned_file.read_text())["tracks"] if args.tuned_file.is_file() else {}
    for track in ("vit", "resnet"):
        print("\n".join(study_table(tuned, track)))
        o, t = off[off.track == track], tun[tun.track == track]
        if t.empty:
            continue
        seeds = sorted(set(t.seed))
        rows = []
        for model in t.model.unique():
            if model in REFS:
                continue
            a = o[o.model == model].set_index("seed").avg_gap
            b = t[t.model == model].set_index("seed").avg_gap
            entry = tuned.get(track, {}).get("methods", {}).get(model)
            rows.append((b.mean(), f"| {model} | {cell(a)} | {cell(b)} | {cell(b - a)} | {settings_text(entry)} |"))
        print(f"\n{track} track, Avg Gap to gold (points, lower is better), mean ± std over seeds {', '.join(seeds)}:\n")
        print("| method | official defaults | tuned | tuned - official | tuned settings |")
        print("|---|---|---|---|---|")
        for _, line in sorted(rows):
            print(line)


if __name__ == "__main__":
    main()
