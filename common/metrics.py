"""Metrics computed from cached logits (never from a fresh forward pass).

Logits cache convention: `results/<stage>/logits/<model>.pt` = {"train": float32 [N_train, C],
"test": float32 [N_test, C]} in the row order of stage 01's data.pt, so every split is an index into them.
Units: accuracy in %, entropy in nats, Jensen-Shannon as a *distance* with base 2 (each value in [0, 1]).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from sklearn.svm import SVC

from common.io import load_torch, save_torch


# ---------------------------------------------------------------------------------------------- logits cache
def logits_path(results, stage: str, model: str) -> Path:
    return Path(results) / stage / "logits" / f"{model}.pt"


def save_logits(path, train: torch.Tensor, test: torch.Tensor) -> None:
    save_torch({"train": train.float().cpu(), "test": test.float().cpu()}, path)


def load_logits(path, make: str = "") -> dict:
    return load_torch(path, "cached logits", make)


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
    """Per-sample Jensen-Shannon distance (base 2, in [0, 1]) between two models' predictive distributions."""
    pa, pb = probs(logits_a).double().numpy(), probs(logits_b).double().numpy()
    return np.nan_to_num(jensenshannon(pa, pb, axis=1, base=2), nan=0.0)


def sorted_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities sorted in descending order (label-free, class-permutation-invariant features)."""
    return probs(logits).sort(dim=1, descending=True).values


# --------------------------------------------------------------------------------- class-wise (reference A)
def classwise_metrics(logits: dict, data: dict, splits: dict, gold: dict | None = None) -> dict:
    """Accuracies on the class-wise splits, entropy on test_forget and (with gold's logits) mean JS to gold."""
    ytr, yte = data["train_labels"], data["test_labels"]
    tr, te = logits["train"], logits["test"]
    tf, trt = splits["test_forget"], splits["test_retain"]
    out = {
        "acc_forget_train": accuracy(tr[splits["forget"]], ytr[splits["forget"]]),
        "acc_retain_train": accuracy(tr[splits["retain"]], ytr[splits["retain"]]),
        "acc_test_forget": accuracy(te[tf], yte[tf]),
        "acc_test_retain": accuracy(te[trt], yte[trt]),
        "acc_test": accuracy(te, yte),
        "entropy_test_forget": entropy(te[tf]).mean().item(),
    }
    if gold is not None:
        out["jsd_gold_test_forget"] = float(js_distance(te[tf], gold["test"][tf]).mean())
        out["jsd_gold_test_retain"] = float(js_distance(te[trt], gold["test"][trt]).mean())
    return out


# -------------------------------------------------------------------------------- sample-wise (reference B)
def samplewise_metrics(logits: dict, data: dict, splits: dict) -> dict:
    ytr, yte = data["train_labels"], data["test_labels"]
    f, r = splits["sample_forget"], splits["sample_retain"]
    return {
        "acc_forget": accuracy(logits["train"][f], ytr[f]),
        "acc_retain": accuracy(logits["train"][r], ytr[r]),
        "acc_test": accuracy(logits["test"], yte),
    }


# ------------------------------------------------------------------------------ membership-inference attacks
def attack_features(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Reference B's attack input: sorted softmax probabilities plus the true-class probability, [N, C + 1]."""
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
