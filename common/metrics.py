"""Metrics computed from cached logits (never from a fresh forward pass).

Logits cache convention: `results/<stage>/logits/<model>.pt` = {"train": float32 [N_train, C],
"test": float32 [N_test, C]} in the row order of stage 01's data.pt, so every split is an index into them.
Units: accuracy in %, entropy in nats, Jensen-Shannon as a *distance* with scipy's default natural-log base, as
reference A reports it (each value in [0, sqrt(ln 2)] = [0, 0.833]; x 1.201 gives base 2).
Test figures use `test_eval` rows only (stage 01): `test_unseen` may be used by methods, `test_val` chooses settings.
A model with non-finite logits gets NaN figures (reported as diverged), never a distance of 0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from sklearn.svm import SVC

from common.io import PipelineError, load_torch, save_torch


# ---------------------------------------------------------------------------------------------- logits cache
def logits_path(results, stage: str, model: str) -> Path:
    return Path(results) / stage / "logits" / f"{model}.pt"


def save_logits(path, train: torch.Tensor, test: torch.Tensor) -> None:
    save_torch({"train": train.float().cpu(), "test": test.float().cpu()}, path)


def load_logits(path, make: str = "", data: dict | None = None) -> dict:
    """Read a logits cache; with `data`, check it has one row per train / test row (else it is stale)."""
    logits = load_torch(path, "cached logits", make)
    if data is not None and (len(logits["train"]) != len(data["train_labels"])
                             or len(logits["test"]) != len(data["test_labels"])):
        raise PipelineError(f"{path} does not match stage 01's data (stale?): re-run {make or 'the stage that wrote it'}")
    return logits


# ------------------------------------------------------------------------------------------ basic quantities
def probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in % (nan for an empty split)."""
    if len(labels) == 0:
        return float("nan")
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample predictive entropy in nats (ln 10 = 2.303 for a uniform 10-class prediction)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1)


def js_distance(logits_a: torch.Tensor, logits_b: torch.Tensor) -> np.ndarray:
    """Per-sample Jensen-Shannon distance between two models' predictive distributions, natural log (scipy's
    default, reference A's unit; in [0, 0.833]). NaN where either model's logits are not finite."""
    pa, pb = probs(logits_a).double().numpy(), probs(logits_b).double().numpy()
    with np.errstate(invalid="ignore"):
        return jensenshannon(pa, pb, axis=1)


def sorted_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities sorted in descending order (label-free, class-permutation-invariant features)."""
    return probs(logits).sort(dim=1, descending=True).values


def accuracy_figures(key: str, pred: torch.Tensor, gold_pred: torch.Tensor | None, labels: torch.Tensor,
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """`key` = accuracy (%) of the predicted labels `pred`, `key_ci` = its 95 % percentile bootstrap interval over
    rows and, with gold's predictions, `key_gap_ci` = the interval of (accuracy - gold's accuracy) from the same
    resampled rows (paired), so "the gap's interval contains 0" is a statement about these rows."""
    if len(labels) == 0:
        return {key: float("nan")}
    right = (pred == labels).double().numpy()
    idx = np.random.default_rng(seed).integers(0, len(right), (n_boot, len(right)))
    out = {key: 100.0 * right.mean(), f"{key}_ci": list(100.0 * np.percentile(right[idx].mean(1), [2.5, 97.5]))}
    if gold_pred is not None:
        diff = right - (gold_pred == labels).double().numpy()
        out[f"{key}_gap_ci"] = list(100.0 * np.percentile(diff[idx].mean(1), [2.5, 97.5]))
    return out


def _accuracies(parts: dict, logits: dict, gold: dict | None, data: dict) -> dict:
    """accuracy_figures for {key: (train|test, rows)}."""
    out = {}
    for key, (split, rows) in parts.items():
        y = data[f"{split}_labels"][rows]
        gold_pred = gold[split][rows].argmax(1) if gold is not None else None
        out.update(accuracy_figures(key, logits[split][rows].argmax(1), gold_pred, y))
    return out


# --------------------------------------------------------------------------------- class-wise (reference A)
def classwise_metrics(logits: dict, data: dict, splits: dict, gold: dict | None = None) -> dict:
    """Accuracies on the class-wise splits, entropy on test_forget and (with gold's logits) mean JS to gold."""
    te = logits["test"]
    tf, trt, ev = splits["test_forget"], splits["test_retain"], splits["test_eval"]
    parts = {"acc_forget_train": ("train", splits["forget"]), "acc_retain_train": ("train", splits["retain"]),
             "acc_test_forget": ("test", tf), "acc_test_retain": ("test", trt), "acc_test": ("test", ev)}
    out = _accuracies(parts, logits, gold, data)
    out["entropy_test_forget"] = entropy(te[tf]).mean().item()
    if gold is not None:
        out["jsd_gold_test_forget"] = float(js_distance(te[tf], gold["test"][tf]).mean())
        out["jsd_gold_test_retain"] = float(js_distance(te[trt], gold["test"][trt]).mean())
    return out


# -------------------------------------------------------------------------------- sample-wise (reference B)
def samplewise_metrics(logits: dict, data: dict, splits: dict, gold: dict | None = None) -> dict:
    """Accuracy (%) on forget, retain and test_eval rows, each with its 95 % interval (and gap interval to gold)."""
    parts = {"acc_forget": ("train", splits["sample_forget"]), "acc_retain": ("train", splits["sample_retain"]),
             "acc_test": ("test", splits["test_eval"])}
    return _accuracies(parts, logits, gold, data)


# Per track: the train rows forgotten, the membership sets, and the accuracy terms of Avg Gap (stage 07's GAP_KEYS)
CURVE = {"vit": dict(forget="forget", mia="mia_class", acc=("acc_forget_train", "acc_retain_train", "acc_test_retain")),
         "resnet": dict(forget="sample_forget", mia="mia_sample", acc=("acc_forget", "acc_retain", "acc_test"))}


# Per track: Avg Gap's accuracy terms as {key: (train | test, split)} (the rows classwise / samplewise_metrics score)
GAP_ROWS = {"vit": {"acc_forget_train": ("train", "forget"), "acc_retain_train": ("train", "retain"),
                    "acc_test_retain": ("test", "test_retain")},
            "resnet": {"acc_forget": ("train", "sample_forget"), "acc_retain": ("train", "sample_retain"),
                       "acc_test": ("test", "test_eval")}}


def curve_figures(track: str, logits: dict, data: dict, splits: dict) -> dict:
    """The figures of Avg Gap for one budget point of the trade-off curve: the track's three accuracies (%) and
    SalUn's MIA-efficacy computed exactly as stage 06 does (RBF SVC on true-class confidence, the *_members_attack
    rows vs the *_nonmembers_attack rows, share of forget rows called non-member)."""
    figs = classwise_metrics(logits, data, splits) if track == "vit" else samplewise_metrics(logits, data, splits)
    out = {k: figs[k] for k in CURVE[track]["acc"]}
    if not finite(logits, track_train_rows(track, splits)):
        return dict(out, attack_mia_efficacy=float("nan"))
    mia, forget = CURVE[track]["mia"], splits[CURVE[track]["forget"]]
    ytr, yte = data["train_labels"], data["test_labels"]
    m, n = splits[f"{mia}_members_attack"], splits[f"{mia}_nonmembers_attack"]
    svc = mia_efficacy_svc(true_class_confidence(logits["train"][m], ytr[m]),
                           true_class_confidence(logits["test"][n], yte[n]))
    called_member = svc.predict(true_class_confidence(logits["train"][forget], ytr[forget]).reshape(-1, 1))
    return dict(out, attack_mia_efficacy=float(1.0 - called_member.mean()))


def track_train_rows(track: str, splits: dict) -> torch.Tensor | None:
    """The train rows a track evaluates: every row for the class-wise ViT track (None), the sample-wise rows
    (sample_forget + sample_retain) for the ResNet track. Its caches hold NaN in the other train rows (with
    --sample-per-class they are never trained on, scored or attacked, so they are not evaluated)."""
    return None if track == "vit" else torch.cat([splits["sample_forget"], splits["sample_retain"]]).sort().values


def finite(logits: dict, train_rows: torch.Tensor | None = None) -> bool:
    """False when a cached logit of the evaluated rows (`train_rows` of train, every test row) is NaN or inf:
    a diverged model, whose figures are not meaningful."""
    train = logits["train"] if train_rows is None else logits["train"][train_rows]
    return bool(torch.isfinite(train).all().item() and torch.isfinite(logits["test"]).all().item())


# ------------------------------------------------------------------------------ membership-inference attacks
def attack_features(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """The project's own attack input (not reference B's): sorted softmax + true-class probability, [N, C + 1]."""
    p = probs(logits)
    true_p = p.gather(1, labels.view(-1, 1))
    return torch.cat([p.sort(dim=1, descending=True).values, true_p], dim=1).numpy()


def binary_metrics(y_true, y_pred) -> dict:
    """Accuracy, precision, recall, F1 and FNR with 1 = member; every value in [0, 1] (nan where undefined)."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * precision * recall, precision + recall) if tp else (0.0 if (fp + fn) else float("nan"))
    return {"accuracy": ratio(tp + tn, len(y_true)), "precision": precision, "recall": recall, "f1": f1,
            "fnr": ratio(fn, fn + tp), "n": int(len(y_true))}


def roc_summary(y_true, scores, max_points: int = 200) -> dict:
    """Threshold-free attack strength: ROC AUC, TPR at 1 % FPR, and a thinned ROC curve for plotting."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    fpr, tpr, _ = roc_curve(y_true, scores)
    tpr_at = float(np.interp(0.01, fpr, tpr))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return {"auc": float(roc_auc_score(y_true, scores)), "tpr_at_1pct_fpr": tpr_at,
            "roc_fpr": fpr[keep].tolist(), "roc_tpr": tpr[keep].tolist()}


def true_class_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return probs(logits).gather(1, labels.view(-1, 1)).numpy()


def mia_efficacy(member_conf: np.ndarray, nonmember_conf: np.ndarray, forget_conf: np.ndarray) -> float:
    """SalUn's MIA-efficacy: an RBF SVC (C=3, gamma='auto') on true-class confidence, fitted on members (1) vs
    non-members (0); returns the share of forget samples it calls non-members (higher = more forgotten).
    Compare with gold's value, not with 1."""
    x = np.concatenate([member_conf, nonmember_conf]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(member_conf)), np.zeros(len(nonmember_conf))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1.0 - clf.predict(np.asarray(forget_conf).reshape(-1, 1)).mean())


# ----------------------------------------------------- attacks nobody trains against, low-FPR ROC, bootstrap CIs
def softmax_features(logits: torch.Tensor) -> np.ndarray:
    """Reference B's attack input: the raw (unsorted) softmax vector [N, C], column k = class k."""
    return probs(logits).numpy()


def true_class_log_prob(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """log p(true class) = -(cross-entropy loss) per row, in nats; float64 so near-certain rows do not all tie at 0."""
    return torch.log_softmax(logits.double(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1).numpy()


def class_offsets(scores: np.ndarray, labels, n_classes: int) -> np.ndarray:
    """Mean score per class over reference rows, [n_classes]; a class without reference rows gets the overall mean."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.bincount(labels, weights=scores, minlength=n_classes)
    return np.where(counts > 0, sums / np.maximum(counts, 1), scores.mean())


def calibrated_scores(logits: torch.Tensor, labels: torch.Tensor, ref_logits: torch.Tensor,
                      ref_labels: torch.Tensor) -> np.ndarray:
    """Per-class calibrated confidence (the difficulty calibration of Watson et al., ICLR 2022, per class instead of
    per example): log p(y) minus the mean log p(y) of the reference rows (non-members) of class y. An easy class
    no longer looks like membership."""
    offsets = class_offsets(true_class_log_prob(ref_logits, ref_labels), ref_labels, logits.shape[1])
    return true_class_log_prob(logits, labels) - offsets[np.asarray(labels)]


def group_auc(pos_scores, neg_scores) -> float:
    """ROC AUC of scores with the `pos` rows as positives (members): P(pos > neg) + P(tie) / 2."""
    pos, neg = np.asarray(pos_scores, float), np.asarray(neg_scores, float)
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def tpr_at_fpr(y_true, scores, levels=(0.001, 0.01)) -> list[float]:
    """Highest TPR over thresholds whose FPR <= level, per level (no interpolation, as in Carlini et al. 2022).
    With n non-members the smallest non-zero FPR is 1/n: below it this is the TPR at FPR 0."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    return [float(tpr[fpr <= level].max()) for level in levels]


def roc_points_log(y_true, scores, n_grid: int = 100) -> dict:
    """ROC curve thinned for log-log axes: around each of n_grid log-spaced FPR values from the smallest non-zero
    FPR to 1, the last ROC point at or below it and the first at or above it, plus (0, 0); <= 2 n_grid + 2 points."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    low = fpr[fpr > 0].min() if (fpr > 0).any() else 1.0
    grid = np.geomspace(low, 1.0, n_grid)
    keep = np.r_[0, len(fpr) - 1, np.searchsorted(fpr, grid, "left"), np.searchsorted(fpr, grid, "right") - 1]
    keep = np.unique(keep.clip(0, len(fpr) - 1))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def bootstrap_ci(stat_fn, *arrays, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval (1 - alpha) of a statistic over rows. Each array is one group of rows,
    resampled with replacement on its own, so group sizes stay fixed (stratified). stat_fn is vectorised: it gets
    each group's resamples stacked as [n_resamples, n_rows, ...] and returns one value per resample. Resamples go
    in blocks of <= ~4M rows to bound memory. The same seed and group sizes give the same resamples (paired
    comparisons across models). (nan, nan) when a group is empty."""
    arrays = [np.asarray(a) for a in arrays]
    if any(len(a) == 0 for a in arrays):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    block = max(1, 4_000_000 // sum(len(a) for a in arrays))
    stats = []
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        stats.append(np.asarray(stat_fn(*(a[rng.integers(0, len(a), (b, len(a)))] for a in arrays)), float))
    low, high = np.percentile(np.concatenate(stats), [50 * alpha, 100 - 50 * alpha])
    return float(low), float(high)


def mean_ci(values, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Bootstrap interval of the mean of per-row values (e.g. 0/1 flags -> interval of a share)."""
    return bootstrap_ci(lambda v: v.mean(axis=1), np.asarray(values, float), n_boot=n_boot, seed=seed, alpha=alpha)


def accuracy_ci(logits: torch.Tensor, labels: torch.Tensor, n_boot: int = 1000, seed: int = 0,
                alpha: float = 0.05) -> tuple[float, float]:
    """Bootstrap interval of top-1 accuracy in % (rows resampled)."""
    correct = (logits.argmax(1) == labels).numpy()
    low, high = mean_ci(correct, n_boot, seed, alpha)
    return 100.0 * low, 100.0 * high


def auc_ci(pos_scores, neg_scores, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Bootstrap interval of group_auc(pos, neg), positives and negatives resampled separately. Mann-Whitney form
    without re-sorting per resample: sort the negatives once; a positive's wins = negatives strictly below it plus
    half the ties, i.e. the mean of the resampled negatives among its `left` and `right` searchsorted bounds."""
    neg = np.sort(np.asarray(neg_scores, float))
    pos = np.asarray(pos_scores, float)
    bounds = np.stack([np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")], axis=1)

    def auc(b, j):  # b [B, n_pos, 2] resampled positives' bounds; j [B, n_neg] resampled sorted-negative positions
        n_res, n = j.shape
        counts = np.bincount((j + n * np.arange(n_res)[:, None]).ravel(), minlength=n_res * n).reshape(n_res, n)
        below = np.concatenate([np.zeros((n_res, 1)), counts.cumsum(axis=1)], axis=1)  # [:, k]: among k lowest
        wins = np.take_along_axis(below, b[..., 0], 1) + np.take_along_axis(below, b[..., 1], 1)
        return wins.sum(axis=1) / (2.0 * b.shape[1] * n)

    return bootstrap_ci(auc, bounds, np.arange(len(neg)), n_boot=n_boot, seed=seed, alpha=alpha)


def mia_efficacy_svc(member_conf: np.ndarray, nonmember_conf: np.ndarray) -> SVC:
    """The fitted SVC behind mia_efficacy (same settings), so the forget rows' predictions can be bootstrapped:
    mia_efficacy = 1 - svc.predict(forget_conf.reshape(-1, 1)).mean()."""
    x = np.concatenate([member_conf, nonmember_conf]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(member_conf)), np.zeros(len(nonmember_conf))])
    return SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
