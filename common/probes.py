"""Class-wise checks that look past the head (stage 04, every ViT model): is the forgotten class removed from the
features, or only hidden behind the output layer?

- Relearn time (Golatkar et al., CVPR 2020; the relearning-attack stress test): fine-tune a copy of the model on
  a small fixed seeded sample of forget-class TRAIN rows (`relearn_rows`) mixed with `relearn_retain_ratio` times
  as many retain train rows (relearn_plan says why), plain SGD + cross-entropy at one fixed
  recipe for every model (`relearn_steps` steps of `relearn_batch_size`, lr = `relearn_lr` or 03's training lr,
  momentum 0.9, the track's training inputs; the batch order is the same for every model), and score the
  forget-class `test_eval` rows (test_forget: no model or method ever trained on them) every `relearn_every` steps.
  A model that only suppressed the class output relearns it quickly; gold, which never learned it, is the
  reference. Figures: `relearn_acc` (%, the accuracy averaged over the checkpoints after step 0, i.e. the area
  under the relearn curve, with its row-bootstrap interval and the paired interval of its gap to gold's) and
  `relearn_curve` [[step, acc]].
  Its cost is evaluation, not unlearning: not counted in any method's budget.
- Linear probe: a logistic regression (standardised features) on the model's penultimate (pre-logit) features,
  forget class vs the rest, fitted on the `test_unseen` + `test_val` rows (test rows no model trained on; the two
  GAN methods looked at original's outputs on test_unseen, never at labels) and scored by its AUC on `test_eval`
  (`probe_auc`, with its bootstrap interval). High AUC = the class is still linearly decodable from the features.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.data import batches
from common.metrics import auc_ci, group_auc
from common.models import autocast
from common.train import predict

N_BOOT = 1000


def relearn_plan(forget_rows: torch.Tensor, retain_rows: torch.Tensor, n_rows: int, retain_ratio: int, steps: int,
                 batch_size: int, seed: int) -> list[torch.Tensor]:
    """The relearn batches, identical for every model: a seeded sample of n_rows forget-class train rows mixed with
    retain_ratio x n_rows retain train rows, cycled in seeded shuffles (train-row indices, `steps` batches of
    `batch_size`). The retain rows keep the fine-tune from collapsing onto the forget class (on forget rows alone
    every model predicts that class for everything within a few steps: 100 % forget accuracy, nothing measured)."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.cat([forget_rows[torch.randperm(len(forget_rows), generator=gen)[:n_rows]],
                      retain_rows[torch.randperm(len(retain_rows), generator=gen)[:retain_ratio * n_rows]]])
    order, out = torch.empty(0, dtype=torch.long), []
    for _ in range(steps):
        while len(order) < batch_size:
            order = torch.cat([order, rows[torch.randperm(len(rows), generator=gen)]])
        out.append(order[:batch_size])
        order = order[batch_size:]
    return out


def predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, transform, device: str, batch_size: int = 256):
    return predict(model, batches(x, y, None, batch_size, transform, device), device, desc="relearn eval").argmax(1)


def relearn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, plan: list[torch.Tensor],
            eval_x: torch.Tensor, eval_y: torch.Tensor, lr: float, every: int, transform, device: str,
            amp: bool) -> tuple[list[list[float]], np.ndarray]:
    """Fine-tune a copy of `model` on the plan's batches; returns ([[step, forget-class test accuracy %]] at step 0,
    every `every` steps and the last, and [checkpoints after step 0, eval rows] 0/1 correct)."""
    m = copy.deepcopy(model).to(device)
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9)
    ce = nn.CrossEntropyLoss()
    y = eval_y.cpu()

    def right() -> torch.Tensor:
        return (predictions(m, eval_x, eval_y, transform, device).cpu() == y).double()

    r = right()
    curve, rights = [[0, 100.0 * r.mean().item()]], []
    for step, rows in enumerate(plan, 1):
        m.train()
        idx = rows.to(images.device)
        with autocast(device, amp):
            loss = ce(m(transform(images[idx])).float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == len(plan):
            r = right()
            curve.append([step, 100.0 * r.mean().item()])
            rights.append(r.numpy())
    return curve, np.stack(rights) if rights else np.empty((0, len(y)))


def relearn_figures(right: np.ndarray, gold_right: np.ndarray | None, seed: int) -> dict:
    """relearn_acc = the forget-class test accuracy averaged over the checkpoints after step 0 (%, the area under
    the relearn curve: one checkpoint swings by tens of points between steps at this batch size, the mean does
    not), its 95 % bootstrap interval over the eval rows and, with gold's, the paired interval of the gap (the same
    resampled rows for both)."""
    per_row = right.mean(0)  # share of checkpoints at which each eval row is right
    idx = np.random.default_rng(seed).integers(0, len(per_row), (N_BOOT, len(per_row)))
    out = {"relearn_acc": 100.0 * per_row.mean(),
           "relearn_acc_ci": list(100.0 * np.percentile(per_row[idx].mean(1), [2.5, 97.5]))}
    if gold_right is not None:
        diff = per_row - gold_right.mean(0)
        out["relearn_acc_gap_ci"] = list(100.0 * np.percentile(diff[idx].mean(1), [2.5, 97.5]))
    return out


def linear_probe(fit_x: np.ndarray, fit_is_forget: np.ndarray, eval_x: np.ndarray, eval_is_forget: np.ndarray,
                 seed: int) -> dict:
    """AUC (and its bootstrap interval) on the eval rows of a logistic regression fitted on the fit rows; NaN when
    the fit or eval rows lack the forget class or the rest (nothing to fit or rank)."""
    if len(set(fit_is_forget.tolist())) < 2 or len(set(eval_is_forget.tolist())) < 2:
        return {"probe_auc": float("nan"), "probe_auc_ci": [float("nan"), float("nan")]}
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(fit_x, fit_is_forget)
    score = clf.decision_function(eval_x)
    pos, neg = score[eval_is_forget == 1], score[eval_is_forget == 0]
    return {"probe_auc": group_auc(pos, neg), "probe_auc_ci": list(auc_ci(pos, neg, N_BOOT, seed))}


