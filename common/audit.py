"""Per-example evidence over K seed trees of the sample-wise track (the numbers of stage 07's audit, `make audit`; the
trees are read by common/audit_report.py). Inputs are per-example statistics of K unlearned models and K golds, one per training
seed of the same split (the forget rows are the same in every tree), as [K, n] arrays.

- `logit_conf`: the logit-scaled confidence log p_y - log(1 - p_y) (LiRA's statistic, the challenge's too),
  computed from log-softmax so that confident rows do not round to +-inf.
- `gaussian_audit`: a fixed-forget-set, K-seed audit in the NeurIPS 2023 challenge's style, scored U-LiRA-style:
  for every held-out seed k, per example, Gaussians are fitted to the other K - 1 unlearned models' and the other
  K - 1 golds' statistics; the held-out unlearned model and the held-out gold are scored by the log likelihood
  ratio (unlearned vs gold). Per example, the 2K held-out scores give an attack AUC (0.5 = the attacker cannot
  tell the unlearned models from golds) and an accuracy (ratio > 0 = called unlearned). With K < 16 the variances
  are pooled over the examples (LiRA's fixed-variance variant: K - 1 values per example are too few to fit a
  spread). This is not Hayes et al.'s random-half shadow U-LiRA, which needs hundreds of shadow trainings.
- `challenge_epsilon` / `forget_score`: the challenge's per-example epsilon and its bucketed forget score, after
  google-deepmind/unlearning_evaluation `metric.py` (re-implemented for the CPU with numpy): per example the group
  with the larger median is "positive"; FPR / FNR over a single-threshold family (x >= t) and a double-threshold
  family (x inside [l, r], the peakier group as positive); epsilon = max over thresholds of max(log(1 - delta -
  FPR) - log FNR, log(1 - delta - FNR) - log FPR), clipped at 0; thresholds where exactly one of FPR, FNR is 0 are
  dropped; perfect separation, or one group's range below 1 % of the other's, gives the cap 50. Buckets 0.5 wide up
  to ceil(ln(N - 1)) are worth 1, 1/2, 1/4, ...; forget score = mean points per example (coarse below N = 16).
- `permutation_floor`: the Gaussian audit's mean AUC under H0 by within-tree swaps (tree k's unlearned model and
  gold_k trade labels or not; they are paired: same original_k, batch order, forget rows): what the attack scores
  on nothing (leaving a model out of its own group's fit biases it below 0.5), and the exact permutation p of the
  observed mean AUC over the 2^(K - 1) distinct swaps (smallest 1 / 2^(K - 1): `smallest_p`, `k_needed`).
- `rmia_offline`: offline RMIA (Zarifzadeh et al., ICML 2024; after privacytrustlab/ml_privacy_meter
  `modules/mia/attacks/rmia.py`): p(x | target) / p(x), p(x) = (1 + a) / 2 x mean over OUT reference models +
  (1 - a) / 2, scored as the share of population rows z with ratio(x) / ratio(z) > 1 (gamma = 1); a = 0.3 fixed,
  not tuned (the library tunes it on a paired reference model).
- `column_bootstrap`: intervals over examples (rows) for every summary above.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_curve

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100  # the challenge's threshold grid density (per unit of the statistic)
POOL_BELOW = 16  # K below which per-example variances are pooled
# offline RMIA's a: fixed, untuned. ml_privacy_meter tunes offline_a on a paired reference model (one trained with
# the target's data, which this audit does not train); 0.3 is only a helper's default argument there, not a setting
RMIA_A = 0.3


def logit_conf(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """log p_y - log(1 - p_y) per row, float64: log p_y from log-softmax, log(1 - p_y) = logsumexp of the other
    classes' log-probabilities."""
    logp = torch.log_softmax(logits.double(), dim=1)
    true = logp.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logp.scatter(1, labels.view(-1, 1), float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).numpy()


def _log_normal(x, mean, var):
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def gaussian_audit(unlearned: np.ndarray, gold: np.ndarray, pooled: bool | None = None) -> dict:
    """Leave-one-seed-out Gaussian likelihood-ratio test per example. unlearned, gold: [K, n] statistics (K >= 3).
    Returns per-example `auc`, `accuracy` ([n] each), the [K, n] held-out `scores` of both groups, `pooled`, and
    the summaries: mean accuracy and AUC, share of examples with AUC >= 0.9, TPR at 1 % FPR over all held-out
    (model, example) scores."""
    u, g = np.asarray(unlearned, float), np.asarray(gold, float)
    k, n = u.shape
    if g.shape != u.shape or k < 3:
        raise ValueError(f"need [K, n] statistics for both groups with K >= 3, got {u.shape} and {g.shape}")
    pooled = k < POOL_BELOW if pooled is None else pooled
    s_u, s_g = np.empty((k, n)), np.empty((k, n))
    for i in range(k):
        rest_u, rest_g = np.delete(u, i, 0), np.delete(g, i, 0)
        mu_u, mu_g = rest_u.mean(0), rest_g.mean(0)
        var_u, var_g = rest_u.var(0, ddof=1), rest_g.var(0, ddof=1)
        if pooled:
            var_u, var_g = np.full(n, var_u.mean()), np.full(n, var_g.mean())
        var_u, var_g = np.maximum(var_u, 1e-12), np.maximum(var_g, 1e-12)
        for s, x in ((s_u, u[i]), (s_g, g[i])):
            s[i] = _log_normal(x, mu_u, var_u) - _log_normal(x, mu_g, var_g)
    auc = column_auc(s_u, s_g)
    accuracy = ((s_u > 0).sum(0) + (s_g <= 0).sum(0)) / (2 * k)
    return dict(auc=auc, accuracy=accuracy, scores_unlearned=s_u, scores_gold=s_g, pooled=pooled,
                **summaries(auc, accuracy, s_u, s_g))


def column_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per column (example), the AUC of pos [K, n] against neg [M, n] scores (Mann-Whitney U, ties count 1/2)."""
    k, m = len(pos), len(neg)
    ranks = rankdata(np.r_[pos, neg], axis=0)
    return (ranks[:k].sum(0) - k * (k + 1) / 2) / (k * m)


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.01) -> float:
    """TPR at the largest ROC point with FPR <= fpr, pooling every (model, example) score."""
    f, t, _ = roc_curve(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos.ravel(), neg.ravel()])
    return float(t[f <= fpr].max(initial=0.0))


def summaries(auc, accuracy, s_u, s_g) -> dict:
    """The audit's headline figures from per-example AUC / accuracy and the held-out [K, n] scores."""
    return dict(mean_accuracy=float(np.mean(accuracy)), mean_auc=float(np.mean(auc)),
                share_auc_ge_0_9=float(np.mean(np.asarray(auc) >= 0.9)), tpr_at_1pct_fpr=tpr_at_fpr(s_u, s_g))


def column_bootstrap(res: dict, n_boot: int, seed: int, level: float = 0.95) -> dict:
    """Percentile intervals over resampled examples (columns) for every figure of `summaries`: {key: [lo, hi]}."""
    n = len(res["auc"])
    rng = np.random.default_rng(seed)
    reps = {k: np.empty(n_boot) for k in ("mean_accuracy", "mean_auc", "share_auc_ge_0_9", "tpr_at_1pct_fpr")}
    for b in range(n_boot):
        j = rng.integers(0, n, n)
        r = summaries(res["auc"][j], res["accuracy"][j], res["scores_unlearned"][:, j], res["scores_gold"][:, j])
        for key in reps:
            reps[key][b] = r[key]
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    return {key: [float(v) for v in np.percentile(r, q)] for key, r in reps.items()}


MAX_EXACT_SWAPS = 2 ** 13  # enumerate every within-tree swap up to K = 14; beyond, a seeded random sample


def smallest_p(k: int) -> float:
    """The smallest permutation p the within-tree swaps can reach at K trees: swapping every tree at once gives the
    same statistic (the test is symmetric in its two groups), so there are 2^(K - 1) distinct assignments and the
    observed one is among them: p >= 1 / 2^(K - 1)."""
    return 1.0 / 2 ** (k - 1)


def k_needed(n_tests: int, alpha: float = 0.05) -> int:
    """The smallest K at which Holm over n_tests can reach alpha: n_tests x smallest_p(K) < alpha."""
    k = 2
    while n_tests * smallest_p(k) >= alpha:
        k += 1
    return k


def _swaps(k: int, n_perm: int, seed: int) -> tuple[np.ndarray, bool]:
    """[S, K] booleans (swap tree k's two models): every assignment with tree 0 unswapped when 2^(K - 1) <=
    MAX_EXACT_SWAPS (exact), else the identity and n_perm random ones."""
    if 2 ** (k - 1) <= MAX_EXACT_SWAPS:
        codes = np.arange(2 ** (k - 1))
        return np.c_[np.zeros(len(codes), bool), (codes[:, None] >> np.arange(k - 1)) & 1 == 1], True
    rng = np.random.default_rng(seed)
    return np.r_[np.zeros((1, k), bool), rng.random((n_perm, k)) < 0.5], False


def permutation_floor(unlearned: np.ndarray, gold: np.ndarray, n_perm: int, seed: int,
                      observed: float | None = None, paired: bool = True) -> dict:
    """The Gaussian audit's mean AUC under H0 (the unlearned models are golds): its null distribution, its mean and
    95th percentile, and the one-sided p of the observed mean AUC. paired (the default, the valid test): tree k's
    unlearned model and gold_k are swapped or not, tree by tree (they share original_k's initial weights, batch
    order and forget rows, so only within-tree labels are exchangeable under H0); every one of the 2^(K - 1)
    distinct swaps is enumerated (p = share of them at or above the observed, which is one of them; smallest
    1 / 2^(K - 1)), or the identity and n_perm random ones past MAX_EXACT_SWAPS (p = (1 + #) / (1 + n_perm)). paired False: the old
    unrestricted relabelling of all 2K models (kept to show its bias: it is not valid when trees share an effect)."""
    u, g = np.asarray(unlearned, float), np.asarray(gold, float)
    k = len(u)
    obs = gaussian_mean_auc(u, g) if observed is None else observed
    if paired:
        swaps, exact = _swaps(k, n_perm, seed)
        null = np.array([gaussian_mean_auc(np.where(sw[:, None], g, u), np.where(sw[:, None], u, g)) for sw in swaps])
        p = max((null >= obs - 1e-12).sum(), 1) / len(null)  # the observed assignment (no swap) is null[0]
        return dict(mean=float(null.mean()), q95=float(np.quantile(null, 0.95)), n=len(null), p=float(p),
                    exact=exact, p_min=smallest_p(k) if exact else 1 / len(null))
    both = np.r_[u, g]
    rng = np.random.default_rng(seed)
    null = np.empty(n_perm)
    for i in range(n_perm):
        order = rng.permutation(2 * k)
        null[i] = gaussian_mean_auc(both[order[:k]], both[order[k:]])
    return dict(mean=float(null.mean()), q95=float(np.quantile(null, 0.95)), n=n_perm,
                p=float((1 + (null >= obs - 1e-12).sum()) / (1 + n_perm)), exact=False, p_min=1 / (1 + n_perm))


def gaussian_mean_auc(unlearned: np.ndarray, gold: np.ndarray) -> float:
    return float(gaussian_audit(unlearned, gold)["auc"].mean())


def true_class_prob(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), 1).gather(1, labels.view(-1, 1)).squeeze(1).numpy()


def rmia_offline(target_x: np.ndarray, ref_x: np.ndarray, target_z: np.ndarray, ref_z: np.ndarray,
                 a: float = RMIA_A) -> np.ndarray:
    """Offline RMIA scores of one target model on rows x: target_x [n] and ref_x [R, n] are the true-class
    probabilities of the target and of R OUT reference models on x, target_z [m] / ref_z [R, m] the same on the
    population rows z. Score(x) = share of z with (p(x|t) / p(x)) / (p(z|t) / p(z)) > 1, p(.) = (1 + a) / 2 x
    mean over references + (1 - a) / 2. Larger = more likely a member (here: not unlearned)."""
    px = (1 + a) / 2 * np.mean(ref_x, 0) + (1 - a) / 2
    pz = (1 + a) / 2 * np.mean(ref_z, 0) + (1 - a) / 2
    ratio_x, ratio_z = np.asarray(target_x) / px, np.sort(np.asarray(target_z) / pz)
    # share of z with ratio_z < ratio_x, by binary search (m log m, not the n x m matrix)
    return np.searchsorted(ratio_z, ratio_x, side="left") / len(ratio_z)


def rmia_audit(unlearned_x: np.ndarray, gold_x: np.ndarray, unlearned_z: np.ndarray, gold_z: np.ndarray,
               a: float = RMIA_A) -> dict:
    """Offline RMIA over K seed trees: every unlearned model and every gold is a target in turn, the golds of the
    other K - 1 trees its OUT references (none trained on the forget rows x; nor on the population rows z). Inputs
    are true-class probabilities [K, n] on x and [K, m] on z. Returns the [K, n] scores of both groups and the
    pooled AUC / TPR at 1 % FPR (unlearned = positive: the attacker calls a row still learned)."""
    k = len(gold_x)
    s_u, s_g = np.empty(np.shape(unlearned_x)), np.empty(np.shape(gold_x))
    for i in range(k):
        ref_x, ref_z = np.delete(gold_x, i, 0), np.delete(gold_z, i, 0)
        s_u[i] = rmia_offline(unlearned_x[i], ref_x, unlearned_z[i], ref_z, a)
        s_g[i] = rmia_offline(gold_x[i], ref_x, gold_z[i], ref_z, a)
    return dict(scores_unlearned=s_u, scores_gold=s_g, **pooled_auc(s_u, s_g))


def pooled_auc(s_u: np.ndarray, s_g: np.ndarray) -> dict:
    labels = np.r_[np.ones(s_u.size), np.zeros(s_g.size)]
    f, t, _ = roc_curve(labels, np.r_[s_u.ravel(), s_g.ravel()])
    return dict(auc=float(np.trapezoid(t, f)), tpr_at_1pct_fpr=float(t[f <= 0.01].max(initial=0.0)))


def pooled_bootstrap(s_u: np.ndarray, s_g: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> dict:
    """Percentile intervals of pooled AUC and TPR at 1 % FPR over resampled examples (columns of both groups)."""
    rng = np.random.default_rng(seed)
    n = s_u.shape[1]
    reps = np.array([list(pooled_auc(s_u[:, j], s_g[:, j]).values()) for j in
                     (rng.integers(0, n, n) for _ in range(n_boot))])
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    return {"auc": [float(v) for v in np.percentile(reps[:, 0], q)],
            "tpr_at_1pct_fpr": [float(v) for v in np.percentile(reps[:, 1], q)]}


# ------------------------------------------------------------------------------------- the challenge's score
def _single_threshold_rates(pos: np.ndarray, neg: np.ndarray):
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, max(int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)), 1))
    tpr, fpr = (pos[:, None] >= t).mean(0), (neg[:, None] >= t).mean(0)
    return tpr, 1 - tpr, fpr, 1 - fpr


def _double_threshold_rates(pos: np.ndarray, neg: np.ndarray):
    """Predict positive inside [left, right]; the peakier group (smaller range) is the positive one."""
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    width, buffer = np.ptp(pos), 2.0
    lo, hi = pos.min() + width - buffer, pos.max() + buffer
    right = np.linspace(lo, hi, max(int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)), 1))
    n_left = int(math.ceil(2 * buffer * THRESHOLDS_PER_UNIT))
    left = (right[:, None] - width + np.linspace(-buffer, buffer, n_left)[None, :]).ravel()
    right = np.repeat(right, n_left)
    inside = lambda x: ((left[None, :] <= x[:, None]) & (x[:, None] <= right[None, :])).mean(0)  # noqa: E731
    tpr, fpr = inside(pos), inside(neg)
    return tpr, 1 - tpr, fpr, 1 - fpr


def challenge_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = DELTA) -> float:
    """One example's epsilon from the two groups' statistics (pos = the group with the larger median)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    small, large = sorted((np.ptp(pos), np.ptp(neg)))
    if large == 0 or small / large < 0.01:
        return EPSILON_CAP  # one group is (nearly) a point: the threshold grid cannot be trusted to see it
    rates = [_double_threshold_rates(pos, neg), _single_threshold_rates(pos, neg)]
    tpr, fnr, fpr, tnr = (np.concatenate([r[i] for r in rates]) for i in range(4))
    if np.any((fpr + fnr == 0) & (tpr + tnr == 2)):
        return EPSILON_CAP  # perfect separation
    keep = fpr * fnr > 0  # drop thresholds where exactly one of FPR, FNR is 0 (too few samples to tell)
    if not keep.any():
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.maximum(np.log(1 - delta - fpr[keep]) - np.log(fnr[keep]),
                         np.log(1 - delta - fnr[keep]) - np.log(fpr[keep]))
    return float(np.clip(np.nanmax(eps), 0, EPSILON_CAP))


def forget_score(unlearned: np.ndarray, gold: np.ndarray) -> tuple[float, np.ndarray]:
    """The challenge's forget score from [N, n] statistics of N unlearned models and N golds (retrained), and the
    per-example epsilons. N = 2 always scores 0 (no bucket fits below ceil(ln 1) = 0)."""
    u, g = np.asarray(unlearned, float), np.asarray(gold, float)
    gold_pos = np.median(g, 0) > np.median(u, 0)
    eps = np.array([challenge_epsilon(g[:, j], u[:, j]) if gold_pos[j] else challenge_epsilon(u[:, j], g[:, j])
                    for j in range(u.shape[1])])
    points = forget_points(eps, u.shape[0])
    return float(points.mean()), eps


def forget_points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """Each example's points from its epsilon: buckets [0, 0.5), [0.5, 1), ... below ceil(ln(N - 1)) are worth 1,
    1/2, 1/4, ...; an epsilon past the last bucket scores 0."""
    top = math.ceil(math.log(n_models - 1)) if n_models > 1 else 0
    starts = np.arange(0, top - 0.5 + 1e-9, 0.5)  # buckets [s, s + 0.5) that fit below the top
    points = np.zeros(len(eps))
    for i, e in enumerate(eps):
        hit = np.flatnonzero(e < starts + 0.5)
        points[i] = 0.5 ** hit[0] if len(hit) else 0.0
    return points


def challenge_score(forget: float, retain_acc: tuple[float, float], test_acc: tuple[float, float]) -> float:
    """Final score = forget score x (RA_unlearned / RA_retrained) x (TA_unlearned / TA_retrained)."""
    return forget * (retain_acc[0] / retain_acc[1]) * (test_acc[0] / test_acc[1])
