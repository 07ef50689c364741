"""Aggregation across training seeds (stage 07): mean ± std, a gold-vs-gold noise floor and "within noise".

Input: {seed: DataFrame} for one track, rows = models (gold among them), columns = figures, as stage 07 builds
them from one seed's results tree.
- `std` is the sample standard deviation across seeds (ddof = 1); with one seed it is NaN.
- Noise floor of a figure: with >= 2 seeds, the mean over seed pairs of |gold_s - gold_t| (two golds that differ
  only by SGD noise: init draw, batch order, augmentation); with one seed, |gold_2 - gold| when that seed also
  trained gold_2 (gold's recipe, seed + 10000); otherwise NaN (no floor).
- A model's gap to gold is computed per seed (value - that seed's gold) and then averaged. It is "within noise"
  when |mean gap| < the floor, or when the 95 % Student-t interval of the gap across seeds contains 0 (>= 2 seeds).
- Budget curve (`aggregate_curve`): the points of every seed tree, one row per (method, budget fraction), with the
  mean and sample std over seeds of the compute used (% of gold's training cost) and of the Avg Gap.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats


def noise_floor(per_seed: dict, cols: list[str]) -> pd.Series:
    """Per figure: how far apart two golds are by SGD noise alone (see the module docstring)."""
    golds = [df.loc["gold"].reindex(cols).astype(float) for df in per_seed.values() if "gold" in df.index]
    if len(golds) >= 2:
        diffs = [(a - b).abs() for a, b in itertools.combinations(golds, 2)]
        return sum(diffs) / len(diffs)
    first = next(iter(per_seed.values()), pd.DataFrame())
    if {"gold", "gold_2"} <= set(first.index):
        return (first.loc["gold_2"].reindex(cols).astype(float) - first.loc["gold"].reindex(cols).astype(float)).abs()
    return pd.Series(np.nan, index=cols, dtype=float)


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of `values` (NaN for fewer than 2 values)."""
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean() - half, values.mean() + half


def aggregate(per_seed: dict, cols: list[str], floor: pd.Series | None = None) -> pd.DataFrame:
    """Rows = models (the first seed's order), for each figure `c`: c (mean), c_std (ddof 1), c_n (seeds), c_lo /
    c_hi (95 % t-interval of the mean; NaN with one seed),
    c_gap / c_gap_std (value - gold, per seed, then mean / std), c_gap_lo / c_gap_hi (95 % t-interval of the gap)
    and c_within_noise (bool; False where it cannot be decided)."""
    models = list(dict.fromkeys(m for df in per_seed.values() for m in df.index))
    floor = floor if floor is not None else pd.Series(np.nan, index=cols, dtype=float)
    rows = {}
    for model in models:
        row = {}
        for c in cols:
            vals = np.array([float(df.loc[model, c]) if model in df.index and c in df.columns and
                             pd.notna(df.loc[model, c]) else np.nan for df in per_seed.values()])
            gaps = np.array([float(df.loc[model, c]) - float(df.loc["gold", c])
                             if model in df.index and "gold" in df.index and c in df.columns
                             and pd.notna(df.loc[model, c]) and pd.notna(df.loc["gold", c]) else np.nan
                             for df in per_seed.values()])
            ok, gok = vals[~np.isnan(vals)], gaps[~np.isnan(gaps)]
            row[c] = ok.mean() if len(ok) else np.nan
            row[f"{c}_std"] = ok.std(ddof=1) if len(ok) >= 2 else np.nan
            row[f"{c}_n"] = len(ok)
            row[f"{c}_lo"], row[f"{c}_hi"] = t_interval(vals)  # 95 % t-interval of the mean across seeds
            row[f"{c}_gap"] = gok.mean() if len(gok) else np.nan
            row[f"{c}_gap_std"] = gok.std(ddof=1) if len(gok) >= 2 else np.nan
            row[f"{c}_gap_lo"], row[f"{c}_gap_hi"] = t_interval(gaps)
            fl = floor.get(c, np.nan)
            below_floor = bool(len(gok) and pd.notna(fl) and abs(row[f"{c}_gap"]) < fl)
            spans_zero = bool(pd.notna(row[f"{c}_gap_lo"]) and row[f"{c}_gap_lo"] <= 0 <= row[f"{c}_gap_hi"])
            row[f"{c}_within_noise"] = below_floor or spans_zero
        rows[model] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def aggregate_curve(points: pd.DataFrame) -> pd.DataFrame:
    """Budget-curve points of one track over seeds. Input: one row per (seed, method, budget) with columns method,
    budget (fraction of gold's training cost; NaN allowed), pct_of_gold (compute used, % of gold's cost), avg_gap
    (%) and optionally over_budget / cut (bool). Output: one row per (method, budget), sorted, with pct_of_gold and
    avg_gap (mean over seeds), pct_of_gold_std / avg_gap_std (ddof 1; NaN with one seed), n (seeds with an Avg
    Gap) and over_budget / cut (True when any seed's run was)."""
    cols = ["method", "budget", "pct_of_gold", "pct_of_gold_std", "avg_gap", "avg_gap_std", "n", "over_budget", "cut"]
    if not len(points):
        return pd.DataFrame(columns=cols)
    pts = points.copy()
    for flag in ("over_budget", "cut"):
        pts[flag] = pts[flag].map(lambda v: v in (True, 1)) if flag in pts.columns else False
    pts["pct_of_gold"] = pd.to_numeric(pts["pct_of_gold"], errors="coerce")
    pts["avg_gap"] = pd.to_numeric(pts["avg_gap"], errors="coerce")
    g = pts.groupby(["method", "budget"], dropna=False, sort=True)
    out = pd.DataFrame({"pct_of_gold": g["pct_of_gold"].mean(), "pct_of_gold_std": g["pct_of_gold"].std(ddof=1),
                        "avg_gap": g["avg_gap"].mean(), "avg_gap_std": g["avg_gap"].std(ddof=1),
                        "n": g["avg_gap"].count(), "over_budget": g["over_budget"].any(), "cut": g["cut"].any()})
    return out.reset_index()[cols]
