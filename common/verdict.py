"""What stage 07 may claim per track, from the tests of common.stats: which methods beat which (Holm-corrected),
ranks with intervals and groups, which figures differ from gold, which are equivalent to it (and at what margin),
whether the run can rank at all, and the verdict sentences that open the report.

Input per track: {seed: DataFrame} (rows = models, gold among them; columns = figures, as stage 07 builds them)
and {seed: {model: Avg Gap bootstrap replicates}} (stage 06's avg_gap_boot.json).
Marks per (model, figure):
  different  the gap to gold is shown: its 95 % t-interval across seeds excludes 0 (>= 2 seeds); with one seed the
             paired row-bootstrap interval of the gap (accuracies) excludes 0, or gold's value lies outside the
             model's own interval (other figures). None when there is nothing to test.
  equivalent two one-sided tests across seeds against the figure's margin (common.stats: the margin from a lower
             confidence bound of gold's sd, pooled within forget sets; Holm over every method x figure test of
             the track; family-wise error <= 0.05); None (cannot be tested) with fewer than 3 golds. original and
             gold_2 are tested on their own (outside the family), gold_2 against a margin from the golds alone.
A cell with neither mark is "not shown either way": most cells at 3 seeds.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from common.aggregate import t_interval
from common.stats import (ALPHA, ALPHA_MARGIN, ALPHA_TOST, MIN_GOLDS, equivalence_family, equivalence_margin,
                          letter_groups, pairwise, pooled_sd, rank_intervals, tost, tost_power)

REFS = ("original", "gold", "gold_2")
MIN_SEEDS_BEATS = 3  # below this a "better" compares two trained models on their rows, not two methods


def values(per_seed: dict, model: str, col: str) -> np.ndarray:
    """The figure of one model in every seed tree, aligned by seed (NaN where missing)."""
    return np.array([float(df.loc[model, col]) if model in df.index and col in df.columns and pd.notna(df.loc[model, col])
                     else np.nan for df in per_seed.values()])


def gaps(per_seed: dict, model: str, col: str) -> np.ndarray:
    return values(per_seed, model, col) - values(per_seed, "gold", col)


def methods_of(per_seed: dict) -> list[str]:
    return [m for m in dict.fromkeys(m for df in per_seed.values() for m in df.index) if m not in REFS]


def compare(per_seed: dict, boots: dict, methods: list[str]) -> dict:
    """Avg Gap of the methods: pairwise tests (Holm), ranks with intervals, groups. With >= 3 seeds: paired t across
    seeds; otherwise the paired row bootstrap (replicates averaged over the seeds' trees: the seed-to-seed spread is
    not in it). `by` says which; `note` why nothing was tested when so."""
    n = len(per_seed)
    ag = {m: values(per_seed, m, "avg_gap") for m in methods}
    ok = [m for m in methods if not np.isnan(ag[m]).any()]
    means = {m: float(ag[m].mean()) for m in ok}
    out = dict(by="seeds" if n >= MIN_GOLDS else "rows", means=means, note="")
    if len(ok) < 2:
        out.update(pairs=pairwise({}, "seeds"), note="fewer than 2 methods with an Avg Gap")
    elif n >= MIN_GOLDS:
        out["pairs"] = pairwise({m: ag[m] for m in ok}, "seeds")
    else:
        have = [m for m in ok if all(m in boots.get(s, {}) for s in per_seed)]
        if len(have) < 2:
            out.update(pairs=pairwise({}, "seeds"), note="no Avg Gap replicates from stage 06 (re-run it)")
        else:
            reps = {m: np.mean([np.asarray(boots[s][m], float) for s in per_seed], axis=0) for m in have}
            out["pairs"] = pairwise(reps, "rows", {m: means[m] for m in have})
    pairs = out["pairs"]
    out["ranks"] = rank_intervals(means, pairs) if means else pd.DataFrame(columns=["rank", "rank_lo", "rank_hi"])
    out["groups"] = letter_groups(means, pairs) if means else {}
    return out


def gap_not_significant(df: pd.DataFrame, model: str, col: str) -> bool | None:
    """One seed's table: whether the gap to gold is indistinguishable from 0: the paired gap interval contains 0
    when the stage gave one (accuracies); otherwise gold's value lies inside the model's own 95 % interval (attack
    figures). None when neither interval exists."""
    row, gold = df.loc[model], df.loc["gold"]
    if f"{col}_gap_ci_lo" in df.columns and pd.notna(row.get(f"{col}_gap_ci_lo")):
        return bool(row[f"{col}_gap_ci_lo"] <= 0 <= row[f"{col}_gap_ci_hi"])
    if f"{col}_ci_lo" in df.columns and pd.notna(row.get(f"{col}_ci_lo")):
        return bool(row[f"{col}_ci_lo"] <= gold[col] <= row[f"{col}_ci_hi"])
    return None


def different(per_seed: dict, model: str, col: str) -> bool | None:
    """Whether the gap to gold is shown (see the module docstring)."""
    g = gaps(per_seed, model, col)
    g = g[~np.isnan(g)]
    if len(g) >= 2:
        lo, hi = t_interval(g)
        return bool(lo > 0 or hi < 0) if pd.notna(lo) else None
    if len(g) == 1:
        ns = gap_not_significant(next(df for df in per_seed.values() if model in df.index), model, col)
        return None if ns is None else not ns
    return None


def forget_set(tree_id) -> str:
    """The forget set a tree scores: its id without the training seed (``42_split-7_class-0`` -> ``_split-7_class-0``;
    ``42`` -> ``""``): trees that share it share the split and the forgotten class."""
    return re.sub(r"^[^_]*", "", str(tree_id))


def _margin_inputs(per_seed: dict, col: str, with_gold_2: bool) -> tuple[np.ndarray, list[str]]:
    vals, groups = [values(per_seed, "gold", col)], [forget_set(t) for t in per_seed]
    if with_gold_2 and all("gold_2" in df.index for df in per_seed.values()):
        vals.append(values(per_seed, "gold_2", col))
        groups = groups * 2
    return np.concatenate(vals), groups


def margins(per_seed: dict, cols: list[str], with_gold_2: bool = True) -> pd.Series:
    """Per figure: the equivalence margin (NaN with fewer than 3 trees): 1.96 x sqrt(2) x the lower confidence bound
    of gold's seed-to-seed sd, pooled within forget sets, gold_2 counted as one more gold of its tree's forget set
    (with_gold_2; False = the golds alone: gold_2's own check). The bound's error ALPHA_MARGIN is split over the
    figures whose gold varies. 0 where gold has the same value in every tree (nothing to test)."""
    inputs = {c: _margin_inputs(per_seed, c, with_gold_2) for c in cols}
    varies = [c for c, (v, g) in inputs.items() if (pooled_sd(v, g)[0] or 0) > 0]
    alpha = ALPHA_MARGIN / max(len(varies), 1)
    out = {c: (equivalence_margin(v, g, alpha, n_trees=len(per_seed)) if c in varies else
               (0.0 if len(per_seed) >= MIN_GOLDS else math.nan)) for c, (v, g) in inputs.items()}
    return pd.Series(out, dtype=float)


def marks(per_seed: dict, models: list[str], cols: list[str], margin: pd.Series,
          cal_margin: pd.Series | None = None) -> pd.DataFrame:
    """Rows = models, columns = {col}_different / {col}_equivalent / {col}_tost_p / {col}_tost_p_holm (see the
    module docstring). The methods' tests form one Holm family at ALPHA_TOST; original and gold_2 are judged alone
    at ALPHA_TOST (gold_2 against cal_margin, the golds-only margin)."""
    tests, diff = {}, {}
    for m in models:
        mg = cal_margin if (m == "gold_2" and cal_margin is not None) else margin
        for c in cols:
            tests[(m, c)] = tost(gaps(per_seed, m, c), mg.get(c, math.nan), alpha=ALPHA_TOST)
            diff[(m, c)] = different(per_seed, m, c)
    equivalence_family({k: t for k, t in tests.items() if k[0] not in REFS})
    rows = {}
    for m in models:
        r = {}
        for c in cols:
            t = tests[(m, c)]
            r.update({f"{c}_different": diff[(m, c)], f"{c}_equivalent": t["equivalent"], f"{c}_tost_p": t["p"],
                      f"{c}_tost_p_holm": t.get("p_holm", t["p"])})
        rows[m] = r
    return pd.DataFrame.from_dict(rows, orient="index").astype(object)


def yes(v) -> bool:
    """A mark that is set (True or numpy's True; None / NaN / False are not)."""
    return isinstance(v, (bool, np.bool_)) and bool(v)


def name_list(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def verdict(per_seed: dict, comp: dict, mk: pd.DataFrame, margin: pd.Series, cols: list[str],
            names: dict, extra: list[str] = ()) -> list[str]:
    """The opening sentences of one track (markdown bullet lines). `cols` = the Avg Gap figures (forget, retain,
    test, MIA), `extra` = the past-the-head figures (ViT) that may separate what the output figures do not."""
    n, methods = len(per_seed), list(comp["means"])
    pairs = comp["pairs"]
    test = ("paired t-test across the seeds" if comp["by"] == "seeds" else
            "paired row bootstrap" + (" (one seed: row noise only)" if n == 1 else
                                      f" over {n} seeds' rows (seed-to-seed spread not included)"))
    lines = []
    wins = {}
    for r in pairs[pairs["significant"]].itertuples() if len(pairs) else []:
        w, l_ = (r.a, r.b) if r.diff < 0 else (r.b, r.a)
        wins.setdefault(w, []).append(l_)
    order = sorted(methods, key=lambda m: comp["means"][m])
    if comp["note"]:
        lines.append(f"- **Ranking:** not tested ({comp['note']}).")
    elif not wins:
        raw = int((pairs["p"] < ALPHA).sum())
        lines.append(f"- **Ranking:** no two of the {len(methods)} methods can be told apart on Avg Gap "
                     f"({test}, Holm over {len(pairs)} pairs, α {ALPHA}): this run cannot rank them "
                     f"({raw} pair{'s' if raw != 1 else ''} had p < {ALPHA} before the correction; more seeds "
                     "would be needed).")
    elif n < MIN_SEEDS_BEATS:
        told = "; ".join(f"{w} lower than {name_list(sorted(wins[w], key=order.index))}" for w in order if w in wins)
        lines.append(f"- **Differs on these rows** (Avg Gap, {test}, Holm over {len(pairs)} pairs, α {ALPHA}): {told}. "
                     f"With {n} seed{'s' if n != 1 else ''} this compares the trained models of this run on these rows, "
                     f"not the methods: a claim that one method beats another needs >= {MIN_SEEDS_BEATS} seeds. "
                     f"{len(pairs) - sum(len(v) for v in wins.values())} of {len(pairs)} pairs do not differ.")
    else:
        told = "; ".join(f"{w} beats {name_list(sorted(wins[w], key=order.index))}" for w in order if w in wins)
        best = [m for m in order if comp["ranks"].loc[m, "rank_lo"] == 1]
        lines.append(f"- **Better than** (Avg Gap, {test}, Holm over {len(pairs)} pairs, α {ALPHA}): {told}. "
                     f"{len(pairs) - sum(len(v) for v in wins.values())} of {len(pairs)} pairs cannot be told apart; "
                     f"rank 1 is possible for {name_list(best)}.")
    shown = [c for c in cols if pd.notna(margin.get(c))]
    if len(shown) < len(cols) or n < MIN_GOLDS:
        lines.append(f"- **Equivalent to gold:** cannot be tested: {n} gold{'s' if n != 1 else ''} (one per tree), "
                     f"the margin needs at least {MIN_GOLDS}; no method is claimed to match gold.")
    else:
        digits = {c: 3 if "mia" in c else 1 for c in cols}
        m_text = ", ".join(f"{names.get(c, c)} ±{margin[c]:.{digits[c] + (1 if margin[c] < 0.1 else 0)}f}"
                           for c in cols if margin[c] > 0)
        flat = [c for c in cols if margin[c] == 0]  # gold has the same value in every tree: no margin to test against
        testable = [c for c in cols if c not in flat]
        exact = {m: all(bool(np.all(gaps(per_seed, m, c) == 0)) for c in flat) for m in order}
        # "on every figure" needs every testable figure equivalent AND gold's exact value on every constant figure:
        # a method that forgot nothing must not be listed because forget accuracy could not be tested
        full = [m for m in order if testable and exact[m]
                and all(yes(mk.loc[m, f"{c}_equivalent"]) for c in testable)]
        part = {m: [names.get(c, c) for c in cols if yes(mk.loc[m, f"{c}_equivalent"])] for m in order}
        part_text = "; ".join(f"{m}: {', '.join(v)}" for m, v in part.items() if v and m not in full)
        flat_text = "".join(
            f" {names.get(c, c)}: gold scores {values(per_seed, 'gold', c)[0]:.{digits[c]}f} in every tree, so there is "
            f"no margin and nothing to test; {sum(bool(np.all(gaps(per_seed, m, c) == 0)) for m in order)} of "
            f"{len(order)} methods hit that value exactly on every seed (a count, not a test)." for c in flat)
        family = int(sum(v is not None for c in mk.columns if c.endswith("_equivalent") for v in mk[c]))
        n_fig = int((margin > 0).sum())  # every marked figure whose gold varies shares the margins' error
        power = tost_power(n, n_tests=max(family, 1), n_figures=max(n_fig, 1))
        lines.append(f"- **Equivalent to gold** (two one-sided t-tests across {n} seeds; margin = 1.96 x √2 x a 1 - "
                     f"{ALPHA_MARGIN:g} / {n_fig} lower confidence bound of gold's seed-to-seed std, pooled "
                     f"within forget sets, gold_2 counted as a gold: {m_text or 'none above 0'}; Holm over the "
                     f"{family} method x figure tests at α {ALPHA_TOST:g}; family-wise error <= {ALPHA}): "
                     + (f"on every figure ({', '.join(names.get(c, c) for c in testable)} tested"
                        + (f"; {', '.join(names.get(c, c) for c in flat)}: gold's exact value on every seed" if flat
                           else "") + f"): {name_list(full)}")
                     + (f"; on some: {part_text}" if part_text else "") + "." + flat_text
                     + f" At {n} seeds a true gold would pass one test of this family with probability {power:.2f} "
                     "(simulation, common.stats.tost_power): not marked equivalent is not evidence of a gap.")
    if not mk.empty:
        cells = [(m, c) for m in methods for c in cols]
        neither = sum(not yes(mk.loc[m, f"{c}_different"]) and not yes(mk.loc[m, f"{c}_equivalent"])
                      for m, c in cells)
        ceiling = [m for m in order if all(not yes(mk.loc[m, f"{c}_different"]) for c in cols[:1] + cols[3:])]
        share = pd.Series({c: np.nanmean([abs(np.nanmean(gaps(per_seed, m, c))) * (100 if "mia" in c else 1)
                                          for m in methods]) for c in cols})
        share = 100 * share / share.sum() if share.sum() > 0 else share
        lines.append(f"- **What this run cannot show:** {neither} of {len(cells)} method x figure cells are neither "
                     "different from gold nor equivalent to it. "
                     + (f"{len(ceiling)} of {len(methods)} methods show no gap to gold on forget accuracy and "
                        f"MIA-efficacy ({name_list(ceiling)}): their order rests on retain and test accuracy. "
                        if ceiling else "")
                     + "The ranking is carried by " + ", ".join(f"{names.get(c, c)} {share[c]:.0f} %" for c in cols)
                     + " of the mean |gap| (MIA in points).")
        if extra and ceiling:
            sep = {m: [f"{names.get(c, c)} {np.nanmean(gaps(per_seed, m, c)):+.{3 if 'auc' in c else 1}f}"
                       for c in extra if f"{c}_different" in mk.columns and yes(mk.loc[m, f"{c}_different"])]
                   for m in ceiling}
            moved = [f"{m} ({', '.join(v)})" for m, v in sep.items() if v]
            lines.append(f"- **Past the head** ({', '.join(names.get(c, c) for c in extra)}): of those {len(ceiling)}, "
                         + (f"{len(moved)} differ from gold (mean gap; a faster relearn or a higher probe AUC than "
                            f"gold's = the class hidden, not removed): {', '.join(moved)}." if moved else
                            "none differs from gold: these checks do not separate them either."))
    return lines


def calibration_line(per_seed: dict, cols: list[str], cal: pd.Series, names: dict) -> str:
    """The equivalence test checked on gold_2 (gold's recipe, an independent training seed), against a margin from
    the golds alone (cal = margins(..., with_gold_2=False); cross-fitted: gold_2 is not in the margin it is tested
    against): it should come out equivalent; and the test's power at this many seeds."""
    n = len(per_seed)
    if n < MIN_GOLDS:
        return ""
    power = tost_power(n, n_figures=max(int((cal > 0).sum()), 1))
    if not all("gold_2" in df.index for df in per_seed.values()):
        return (f"Calibration: no gold_2 in every tree, so the test is not checked on an independent gold. Power at "
                f"{n} seeds: a true gold passes one figure's test alone with probability {power:.2f} (simulation).")
    res = {c: tost(gaps(per_seed, "gold_2", c), cal.get(c, math.nan), alpha=ALPHA_TOST) for c in cols}
    testable = [c for c, r in res.items() if r["equivalent"] is not None]
    ok = [names.get(c, c) for c in testable if res[c]["equivalent"]]
    level = round(100 * (1 - 2 * ALPHA_TOST))
    failed = [f"{names.get(c, c)} ({level} % interval of its gap [{res[c]['lo']:.3g}, {res[c]['hi']:.3g}] vs margin "
              f"±{res[c]['margin']:.3g})" for c in testable if not res[c]["equivalent"]]
    return (f"Calibration: gold_2 (gold's recipe, training seed + 10000: an independent gold), tested alone at α "
            f"{ALPHA_TOST:g} against a margin from the {n} golds only, comes out equivalent on "
            f"{len(ok)} of the {len(testable)} testable figures ({name_list(ok)})"
            + (f"; not on {'; '.join(failed)}" if failed else "")
            + f". Power at {n} seeds: a true gold passes one figure's test alone with probability {power:.2f} "
            "(simulation, common.stats.tost_power), so a failed check at few seeds is expected, not a fault.")
