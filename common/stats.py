"""The tests behind stage 07's claims: paired bootstrap of Avg Gap, pairwise tests with Holm's correction, rank
intervals, groups of methods that cannot be told apart, and equivalence to gold (two one-sided tests).

Which test when:
- Avg Gap of one seed: `avg_gap_replicates` resamples the rows of every Avg Gap term (forget, retain, test rows;
  the forget rows for MIA-efficacy, whose SVC stays fitted: only its per-row calls are resampled) with one set of
  resampled indices for every model of a track and for gold, so each replicate is paired with gold and with every
  other model over the same rows. Its 2.5 / 97.5 percentiles are the interval.
- Method A vs method B on Avg Gap (`pairwise`): with >= 3 seeds, a paired t-test across seeds (the per-seed Avg
  Gaps of A and B share their seed's original and gold); with fewer, the paired row bootstrap of one seed (the
  replicates above: a Wald test of "A - B = 0" with the bootstrap standard error). Holm's step-down correction over all pairs of a track
  controls the chance of any false "better" at `ALPHA` (the family-wise error).
- Ranks (`rank_intervals`): rank 1 = lowest Avg Gap; its interval is [1 + the methods significantly better, N - the
  methods significantly worse], from the Holm-corrected pairs: intervals that hold for all methods at once with
  probability >= 1 - ALPHA when the pairwise family does.
- Groups (`letter_groups`): methods sorted by Avg Gap; every maximal run of methods with no significant pair among
  them gets a letter; methods that share a letter cannot be told apart.
- Equivalence to gold (`tost`): per figure, the gaps model - gold across seeds; two one-sided t-tests against the
  margin (-margin, +margin): equivalent when both reject at ALPHA, i.e. the 90 % t-interval of the mean gap lies
  inside the margin. The margin (`equivalence_margin`) is how far two golds that differ only by their training seed
  fall apart 95 % of the time: 1.96 x sqrt(2) x the standard deviation of gold's figure across >= 3 seeds. With
  fewer golds there is no margin and nothing is claimed equivalent. `tost_power` is the chance that a true gold of
  another seed passes (simulation: the margin estimated from the same golds the gaps are taken to).
"Different from gold" is the other question (a gap interval that excludes 0); most cells are neither.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
Z95 = stats.norm.ppf(0.975)  # two golds fall within Z95 x sqrt(2) x sd of each other 95 % of the time
MIN_GOLDS = 3  # golds (seeds) needed to estimate an equivalence margin


# ------------------------------------------------------------------------------------------ Avg Gap, one seed
def resample_indices(sizes: dict[str, int], n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """{term: [n_boot, n] row indices drawn with replacement}, one draw per term (group sizes fixed); the same seed
    and sizes give the same indices, so every model resampled with them is paired."""
    rng = np.random.default_rng(seed)
    return {t: rng.integers(0, n, (n_boot, n), dtype=np.int32) for t, n in sizes.items()}


def avg_gap_replicates(rows: dict[str, np.ndarray], gold: dict[str, np.ndarray], idx: dict[str, np.ndarray]) -> np.ndarray:
    """Bootstrap replicates of Avg Gap (%): rows[term] = a model's per-row 0/1 outcome (correct, or called
    non-member for MIA-efficacy), gold[term] the same rows' outcomes of gold, idx from resample_indices. Replicate b =
    mean over terms of 100 x |mean(rows[idx_b]) - mean(gold[idx_b])|. NaN replicates when a term has no rows."""
    terms = []
    for t, ix in idx.items():
        a, g = np.asarray(rows[t], float), np.asarray(gold[t], float)
        if not len(a):
            return np.full(len(ix), np.nan)
        terms.append(100 * np.abs(a[ix].mean(1) - g[ix].mean(1)))
    return np.mean(terms, axis=0)


def avg_gap_point(rows: dict[str, np.ndarray], gold: dict[str, np.ndarray]) -> float:
    """Avg Gap (%) of the full rows: what avg_gap_replicates resamples."""
    return float(np.mean([100 * abs(np.mean(rows[t]) - np.mean(gold[t])) for t in rows]))


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    r = np.asarray(replicates, float)
    r = r[~np.isnan(r)]
    if not len(r):
        return math.nan, math.nan
    lo, hi = np.percentile(r, [50 * (1 - level), 100 - 50 * (1 - level)])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------- pairwise tests
def bootstrap_pvalue(diff_replicates: np.ndarray, point: float | None = None) -> float:
    """Two-sided p-value of "the difference is 0" from its paired bootstrap replicates: the Wald test with the
    bootstrap standard error, 2 x P(Z > |point| / sd(replicates)) (point = the full-data difference, default the
    replicates' mean). Unlike the percentile tail count, its resolution is not capped at 2 / (replicates + 1), which
    Holm over 78 pairs would need to reach (0.05 / 78 = 0.0006). sd 0: p = 0 for a non-zero difference, else 1."""
    d = np.asarray(diff_replicates, float)
    d = d[~np.isnan(d)]
    if not len(d):
        return math.nan
    point = float(d.mean()) if point is None else float(point)
    sd = d.std(ddof=1) if len(d) > 1 else 0.0
    if sd == 0:
        return 0.0 if abs(point) > 1e-12 else 1.0
    return float(2 * stats.norm.sf(abs(point) / sd))


def paired_t_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test of mean(a - b) = 0 across seeds. Equal differences (sd 0): p = 0 when they are not
    0, 1 when they are. NaN with fewer than 2 pairs."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[~np.isnan(d)]
    if len(d) < 2:
        return math.nan
    if np.allclose(d, d[0], rtol=0, atol=1e-12):
        return 0.0 if abs(d[0]) > 1e-12 else 1.0
    return float(stats.ttest_rel(d, np.zeros_like(d)).pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN): sort ascending, multiply the k-th
    smallest (k from 0) by (m - k), carry the running maximum, cap at 1."""
    p = np.asarray(pvalues, float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, (m - k) * p[i])
        out[i] = min(1.0, running)
    return out


def pairwise(values: dict[str, np.ndarray], by: str, points: dict[str, float] | None = None) -> pd.DataFrame:
    """Every pair (a, b) of methods, in the order given: diff = Avg Gap a - b (mean over seeds, or the point
    estimates with `by="rows"`), p (paired t across seeds for by="seeds", values = per-seed Avg Gaps aligned by
    seed; bootstrap of the paired row replicates for by="rows", values = replicates), p_holm and significant
    (p_holm < ALPHA). A negative diff means a is closer to gold."""
    if by not in ("seeds", "rows"):
        raise ValueError(f"by must be 'seeds' or 'rows', not {by!r}")
    rows = []
    for a, b in itertools.combinations(values, 2):
        va, vb = np.asarray(values[a], float), np.asarray(values[b], float)
        if by == "seeds":
            diff, p = float(np.nanmean(va - vb)), paired_t_pvalue(va, vb)
        else:
            diff = (points[a] - points[b]) if points else float(np.nanmean(va - vb))
            p = bootstrap_pvalue(va - vb, diff)
        rows.append(dict(a=a, b=b, diff=diff, p=p))
    df = pd.DataFrame(rows, columns=["a", "b", "diff", "p"])
    df["p_holm"] = holm(df["p"].to_numpy()) if len(df) else []
    df["significant"] = df["p_holm"] < ALPHA
    return df


def _better(pairs: pd.DataFrame) -> set[tuple[str, str]]:
    """{(winner, loser)} of the significant pairs."""
    out = set()
    for r in pairs[pairs["significant"]].itertuples():
        out.add((r.a, r.b) if r.diff < 0 else (r.b, r.a))
    return out


def rank_intervals(means: dict[str, float], pairs: pd.DataFrame) -> pd.DataFrame:
    """Per method: rank (1 = lowest Avg Gap, ties by order given), rank_lo = 1 + methods significantly better,
    rank_hi = N - methods significantly worse (from `pairwise`'s Holm-corrected pairs)."""
    names = sorted(means, key=lambda m: (np.nan_to_num(means[m], nan=np.inf), list(means).index(m)))
    better = _better(pairs)
    n = len(names)
    out = {m: dict(rank=i + 1, rank_lo=1 + sum((o, m) in better for o in names),
                   rank_hi=n - sum((m, o) in better for o in names)) for i, m in enumerate(names)}
    return pd.DataFrame.from_dict(out, orient="index")


def letter_groups(means: dict[str, float], pairs: pd.DataFrame) -> dict[str, str]:
    """Methods sorted by mean Avg Gap; each maximal run [i..j] of consecutive methods with no significant pair inside
    it gets a letter (a, b, ...); a method's letters are those of the runs it is in. Methods sharing a letter
    cannot be told apart; two methods with no common letter differ significantly."""
    names = sorted(means, key=lambda m: (np.nan_to_num(means[m], nan=np.inf), list(means).index(m)))
    sig = {frozenset(p) for p in _better(pairs)}
    runs = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and all(frozenset((names[k], names[j + 1])) not in sig for k in range(i, j + 1)):
            j += 1
        if not runs or j > runs[-1][1]:
            runs.append((i, j))
    letters = {m: "" for m in names}
    for n, (i, j) in enumerate(runs):
        for m in names[i:j + 1]:
            letters[m] += chr(ord("a") + n) if n < 26 else f"[{n}]"
    return letters


# ---------------------------------------------------------------------------------------------- equivalence
def equivalence_margin(gold_values) -> float:
    """How far two golds that differ only by their training seed fall apart 95 % of the time, Z95 x sqrt(2) x sd
    (ddof 1) of gold's figure across seeds; NaN with fewer than MIN_GOLDS golds."""
    g = np.asarray(gold_values, float)
    g = g[~np.isnan(g)]
    if len(g) < MIN_GOLDS:
        return math.nan
    return float(Z95 * math.sqrt(2) * g.std(ddof=1))


def tost(gaps, margin: float, alpha: float = ALPHA) -> dict:
    """Two one-sided t-tests of H0: |mean gap| >= margin on per-seed gaps (model - gold). Returns mean, the
    (1 - 2 alpha) t-interval lo / hi, p (the larger one-sided p) and equivalent (p < alpha); equivalent is None
    (cannot be tested) with fewer than 2 gaps or no finite margin. Gaps that are all equal (sd 0) are equivalent
    when |gap| < margin."""
    d = np.asarray(gaps, float)
    d = d[~np.isnan(d)]
    out = dict(mean=float(d.mean()) if len(d) else math.nan, lo=math.nan, hi=math.nan, p=math.nan, equivalent=None,
               margin=margin)
    if len(d) < 2 or not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        return out
    se = d.std(ddof=1) / math.sqrt(len(d))
    if se == 0:
        out.update(lo=out["mean"], hi=out["mean"], p=0.0 if abs(out["mean"]) < margin else 1.0)
    else:
        df = len(d) - 1
        p_lower = stats.t.sf((out["mean"] + margin) / se, df)  # H0: mean <= -margin
        p_upper = stats.t.cdf((out["mean"] - margin) / se, df)  # H0: mean >= +margin
        half = stats.t.ppf(1 - alpha, df) * se
        out.update(lo=out["mean"] - half, hi=out["mean"] + half, p=float(max(p_lower, p_upper)))
    out["equivalent"] = bool(out["p"] < alpha)
    return out


def tost_power(n_seeds: int, n_sim: int = 20000, seed: int = 0, alpha: float = ALPHA) -> float:
    """Chance that a true gold of another seed passes `tost` on one figure at n_seeds seeds, when the margin is
    estimated from the same n_seeds golds the gaps are taken to (gold figure ~ N(0, 1) per seed; the other gold ~
    N(0, 1), independent). Monte Carlo with a fixed seed: the same value every run."""
    if n_seeds < MIN_GOLDS:
        return math.nan
    rng = np.random.default_rng(seed)
    golds, others = rng.standard_normal((n_sim, n_seeds)), rng.standard_normal((n_sim, n_seeds))
    margin = Z95 * math.sqrt(2) * golds.std(axis=1, ddof=1)
    d = others - golds
    mean, se = d.mean(1), d.std(axis=1, ddof=1) / math.sqrt(n_seeds)
    half = stats.t.ppf(1 - alpha, n_seeds - 1) * se
    return float(((mean - half > -margin) & (mean + half < margin)).mean())
