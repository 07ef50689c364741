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
- Groups (`letter_groups`): Piepho's (2004) insert-absorb letters from the Holm-corrected pairs: two methods
  that differ significantly share no letter, and two that do not share at least one. A shared letter means "not
  told apart", never "equal"; no common letter means "told apart" (and only that pair: with A < B < C and only
  A-B significant the letters are a, b, ab).
- Equivalence to gold (`tost`, `equivalence_family`): per figure, the gaps model - gold across seeds; two
  one-sided t-tests against the margin (-margin, +margin). The margin is meant to be how far two golds that differ
  only by their training seed fall apart 95 % of the time, Delta = 1.96 x sqrt(2) x sigma, sigma = gold's
  seed-to-seed standard deviation of the figure. sigma is estimated, and TOST assumes a fixed margin (Schuirmann
  1987): a margin from s of 3 golds is too wide about a third of the time, and a method whose gaps are tight
  around Delta then passes far more often than alpha. So (`equivalence_margin`): the margin uses a one-sided
  lower confidence bound of sigma, s x sqrt(df / chi2_{1 - a_m, df}), which is below sigma with probability
  >= 1 - a_m; s is pooled within forget sets (trees that share a split and a forgotten class; gold_2, gold's recipe
  at another seed on the same forget set, counts as one more gold there), so crossing forget sets does not widen
  it. A false "equivalent" needs the margin above Delta or a TOST at Delta that rejects falsely, so
  (union bound) a_m + a_t bounds the error: a_m = ALPHA / 2 shared over the F figures (Bonferroni), a_t = ALPHA / 2
  for the TOSTs with Holm over every (model, figure) test the verdict lists. Family-wise error <= ALPHA, whatever
  the gaps' correlation with gold (`tost_size` simulates it). gold_2's own check (common.verdict.margins with with_gold_2=False) uses a
  margin from the golds alone (cross-fitted: gold_2 is not in the margin it is tested against). `tost_power` is the
  chance that a true gold of another seed passes under the same rule.
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
ALPHA_MARGIN = ALPHA / 2  # error share of the margins' lower confidence bound (split over the figures)
ALPHA_TOST = ALPHA / 2  # error share of the TOSTs (Holm over the family)


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
    """Piepho's (2004) insert-absorb letter display from the significant pairs: start with one column holding every
    method; for each significant pair, every column holding both is replaced by two copies, one without each
    member (insert); columns contained in another are dropped (absorb). Columns are lettered a, b, ... in the order
    of their best (lowest Avg Gap) member. Then two methods share a letter exactly when they are not told apart."""
    names = sorted(means, key=lambda m: (np.nan_to_num(means[m], nan=np.inf), list(means).index(m)))
    cols: list[frozenset] = [frozenset(names)] if names else []
    for x, y in sorted(_better(pairs), key=lambda p: (names.index(p[0]), names.index(p[1]))):
        new = []
        for c in cols:
            new += [c - {x}, c - {y}] if x in c and y in c else [c]
        new = [c for c in dict.fromkeys(new) if c]
        cols = [c for c in new if not any(c < o for o in new)]  # absorb
    cols.sort(key=lambda c: sorted(names.index(m) for m in c))
    letters = {m: "" for m in names}
    for n, c in enumerate(cols):
        for m in sorted(c, key=names.index):
            letters[m] += chr(ord("a") + n) if n < 26 else f"[{n}]"
    return letters


# ---------------------------------------------------------------------------------------------- equivalence
def pooled_sd(values, groups=None) -> tuple[float, int]:
    """Standard deviation pooled within groups (forget sets) and its degrees of freedom n - (number of groups);
    NaN values dropped, groups of one value add nothing. groups None = one group."""
    v = np.asarray(values, float)
    g = np.zeros(len(v), int) if groups is None else pd.factorize(pd.Series(list(groups)))[0]
    keep = ~np.isnan(v)
    v, g = v[keep], g[keep]
    ss, df = 0.0, 0
    for k in np.unique(g):
        x = v[g == k]
        ss, df = ss + float(((x - x.mean()) ** 2).sum()), df + len(x) - 1
    return (math.sqrt(ss / df) if df > 0 else math.nan), df


def sd_lower_bound(s: float, df: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound of sigma from a sample sd with df degrees of freedom:
    s x sqrt(df / chi2_{1 - alpha, df}) (below sigma with probability >= 1 - alpha for normal data)."""
    if df < 1 or not math.isfinite(s):
        return math.nan
    return float(s * math.sqrt(df / stats.chi2.ppf(1 - alpha, df)))


def equivalence_margin(gold_values, groups=None, alpha: float = ALPHA_MARGIN, n_trees: int | None = None) -> float:
    """The TOST margin of one figure: Z95 x sqrt(2) x the (1 - alpha) lower confidence bound of gold's
    seed-to-seed sd, pooled within groups (forget sets). NaN with fewer than MIN_GOLDS trees (n_trees, default
    the number of values) or no degrees of freedom."""
    g = np.asarray(gold_values, float)
    if (n_trees if n_trees is not None else int((~np.isnan(g)).sum())) < MIN_GOLDS:
        return math.nan
    s, df = pooled_sd(g, groups)
    return float(Z95 * math.sqrt(2) * sd_lower_bound(s, df, alpha)) if df >= 1 else math.nan


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


def equivalence_family(tests: dict, alpha: float = ALPHA_TOST) -> dict:
    """Holm over a family of TOSTs: tests = {key: tost(...) result}; returns {key: Holm-adjusted p} and sets each
    result's `equivalent` to p_holm < alpha (None stays None: not testable, not in the family)."""
    keys = [k for k, t in tests.items() if t["equivalent"] is not None]
    adj = holm([tests[k]["p"] for k in keys]) if keys else []
    out = {}
    for k, p in zip(keys, adj):
        tests[k]["p_holm"], tests[k]["equivalent"] = float(p), bool(p < alpha)
        out[k] = float(p)
    return out


def _simulate_pass(gaps: np.ndarray, golds: np.ndarray, margin_from: np.ndarray, n_tests: int, n_figures: int,
                   rule: str) -> np.ndarray:
    """Per simulated run (rows): whether one figure's TOST says "equivalent". rule "new": margin from the lower
    bound of the sd of `margin_from` (pooled: rows x values), TOST at ALPHA_TOST / n_tests (Holm's first step for
    one test among n_tests), margin bound at ALPHA_MARGIN / n_figures; rule "old": the sd of `golds` itself, TOST
    at ALPHA, no correction."""
    n = gaps.shape[1]
    if rule == "old":
        margin, a_t = Z95 * math.sqrt(2) * golds.std(axis=1, ddof=1), ALPHA
    else:
        m = margin_from
        df = m.shape[1] - 1
        s = m.std(axis=1, ddof=1)
        margin = Z95 * math.sqrt(2) * s * math.sqrt(df / stats.chi2.ppf(1 - ALPHA_MARGIN / n_figures, df))
        a_t = ALPHA_TOST / n_tests
    mean, se = gaps.mean(1), gaps.std(axis=1, ddof=1) / math.sqrt(n)
    half = stats.t.ppf(1 - a_t, n - 1) * se
    return (mean - half > -margin) & (mean + half < margin)


def tost_size(n_seeds: int, kind: str = "independent", rule: str = "new", n_sim: int = 20000, seed: int = 0,
              n_tests: int = 1, n_figures: int = 1, tight_sd: float = 0.3) -> float:
    """The rate of a wrong "equivalent" (size) for a method whose true mean gap to gold lies exactly at the true
    margin Delta = Z95 x sqrt(2) x sigma (sigma = 1): gold_k, gold_2_k ~ N(0, 1) per tree (one forget set); the
    method's value = gold_k + Delta + noise, noise = (other_k - gold_k) with other_k ~ N(0, 1) for kind
    "independent" (like gold_2), tight_sd x N(0, 1) for "tight" (the method shares its tree's randomness). Monte
    Carlo with a fixed seed. rule: "new" (this module's test) or "old" (the margin from s of the golds, TOST at
    ALPHA, no correction: the rule before issue 30)."""
    rng = np.random.default_rng(seed)
    golds, golds2 = rng.standard_normal((n_sim, n_seeds)), rng.standard_normal((n_sim, n_seeds))
    delta = Z95 * math.sqrt(2)
    noise = (rng.standard_normal((n_sim, n_seeds)) - golds if kind == "independent" else
             tight_sd * rng.standard_normal((n_sim, n_seeds)))
    gaps = delta + noise
    both = np.c_[golds, golds2]  # per tree a gold and a gold_2, one forget set: one group of 2n values
    return float(_simulate_pass(gaps, golds, both, n_tests, n_figures, rule).mean())


def tost_power(n_seeds: int, n_sim: int = 20000, seed: int = 0, n_tests: int = 1, n_figures: int = 1,
               rule: str = "new") -> float:
    """Chance that a true gold of another seed passes one figure's test at n_seeds seeds under the report's rule
    (the margin from the same golds and gold_2s, n_tests in the Holm family, n_figures sharing the margin's error;
    n_tests = 1 is the calibration check, outside the family). NaN below MIN_GOLDS seeds."""
    if n_seeds < MIN_GOLDS:
        return math.nan
    rng = np.random.default_rng(seed)
    golds, golds2, others = (rng.standard_normal((n_sim, n_seeds)) for _ in range(3))
    return float(_simulate_pass(others - golds, golds, np.c_[golds, golds2], n_tests, n_figures, rule).mean())
