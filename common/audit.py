"""Per-example evidence over K seed trees of the sample-wise track (issue 17's audit; groundwork: not yet wired into
the Makefile or stage 07). Inputs are per-example statistics of K unlearned models and K golds, one per training
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
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100  # the challenge's threshold grid density (per unit of the statistic)
POOL_BELOW = 16  # K below which per-example variances are pooled


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
    y = np.r_[np.ones(k), np.zeros(k)]
    auc = np.array([roc_auc_score(y, np.r_[s_u[:, j], s_g[:, j]]) for j in range(n)])
    accuracy = ((s_u > 0).sum(0) + (s_g <= 0).sum(0)) / (2 * k)
    scores, labels = np.r_[s_u.ravel(), s_g.ravel()], np.r_[np.ones(k * n), np.zeros(k * n)]
    order = np.argsort(-scores, kind="stable")
    fpr = np.cumsum(labels[order] == 0) / max((labels == 0).sum(), 1)
    tpr = np.cumsum(labels[order] == 1) / max((labels == 1).sum(), 1)
    return dict(auc=auc, accuracy=accuracy, scores_unlearned=s_u, scores_gold=s_g, pooled=pooled,
                mean_accuracy=float(accuracy.mean()), mean_auc=float(auc.mean()),
                share_auc_ge_0_9=float((auc >= 0.9).mean()),
                tpr_at_1pct_fpr=float(tpr[fpr <= 0.01].max(initial=0.0)))


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
    top = math.ceil(math.log(u.shape[0] - 1)) if u.shape[0] > 1 else 0
    starts = np.arange(0, top - 0.5 + 1e-9, 0.5)  # buckets [s, s + 0.5) that fit below the top
    points = np.zeros(len(eps))
    for i, e in enumerate(eps):
        hit = np.flatnonzero(e < starts + 0.5)
        points[i] = 0.5 ** hit[0] if len(hit) else 0.0
    return float(points.mean()), eps


def challenge_score(forget: float, retain_acc: tuple[float, float], test_acc: tuple[float, float]) -> float:
    """Final score = forget score x (RA_unlearned / RA_retrained) x (TA_unlearned / TA_retrained)."""
    return forget * (retain_acc[0] / retain_acc[1]) * (test_acc[0] / test_acc[1])
