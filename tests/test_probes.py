"""common.probes on hand-made data: the relearn plan (fixed, mixed at the stated ratio), the relearn figures (mean
over checkpoints, paired gap interval), the linear probe (AUC 1 on separable features, NaN without both classes)
and a relearn run that teaches a tiny model the class."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from common.probes import linear_probe, relearn, relearn_figures, relearn_plan


def test_relearn_plan_is_fixed_and_mixes_forget_and_retain_rows():
    forget, retain = torch.arange(0, 50), torch.arange(100, 400)
    plan = relearn_plan(forget, retain, n_rows=10, retain_ratio=9, steps=7, batch_size=20, seed=3)
    again = relearn_plan(forget, retain, n_rows=10, retain_ratio=9, steps=7, batch_size=20, seed=3)
    assert len(plan) == 7 and all(len(b) == 20 for b in plan)
    assert all(torch.equal(a, b) for a, b in zip(plan, again))  # the same batches for every model
    used = torch.cat(plan)
    assert len(set(used[used < 100].tolist())) == 10 and len(set(used[used >= 100].tolist())) == 90
    # 100 rows cycled over 140 draws: every row once before any row twice
    first = used[:100]
    assert len(set(first.tolist())) == 100


def test_relearn_figures_average_checkpoints_and_pair_with_gold():
    right = np.array([[1, 0, 0, 0], [1, 1, 0, 0]], float)  # per-row share right: 1, .5, 0, 0 -> 37.5 %
    gold = np.array([[1, 0, 0, 0], [1, 0, 0, 0]], float)  # 25 %
    f = relearn_figures(right, gold, seed=0)
    assert f["relearn_acc"] == pytest.approx(37.5)
    lo, hi = f["relearn_acc_gap_ci"]
    assert 0 <= lo <= 12.5 <= hi <= 50  # the paired gap (row 2 only) is never negative
    assert relearn_figures(gold, gold, seed=0)["relearn_acc_gap_ci"] == [0.0, 0.0]
    assert "relearn_acc_gap_ci" not in relearn_figures(gold, None, seed=0)


def test_linear_probe_separable_random_and_one_class():
    rng = np.random.default_rng(0)
    y_fit, y_eval = np.r_[np.ones(20), np.zeros(80)].astype(int), np.r_[np.ones(10), np.zeros(40)].astype(int)
    x_fit = rng.standard_normal((100, 5)) + 4 * y_fit[:, None]
    x_eval = rng.standard_normal((50, 5)) + 4 * y_eval[:, None]
    assert linear_probe(x_fit, y_fit, x_eval, y_eval, seed=0)["probe_auc"] == pytest.approx(1.0)
    noise = linear_probe(rng.standard_normal((100, 5)), y_fit, rng.standard_normal((50, 5)), y_eval, seed=0)
    assert 0.2 < noise["probe_auc"] < 0.8 and noise["probe_auc_ci"][0] < 0.5 < noise["probe_auc_ci"][1]
    assert math.isnan(linear_probe(x_fit, np.zeros(100, int), x_eval, y_eval, seed=0)["probe_auc"])


def test_relearn_teaches_a_model_that_never_predicts_the_class():
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    y = (x[:, 0] > 0).long()  # class 1 = first feature positive
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.zero_(), model.bias.copy_(torch.tensor([5.0, -5.0]))  # always predicts class 0
    ones = torch.nonzero(y == 1).flatten()
    plan = relearn_plan(ones[:30], torch.nonzero(y == 0).flatten(), 30, 1, steps=60, batch_size=20, seed=0)
    eval_rows = ones[30:]
    curve, right = relearn(model, x, y, plan, x[eval_rows], y[eval_rows], lr=0.5, every=20,
                           transform=lambda t: t.float(), device="cpu", amp=False)
    assert curve[0] == [0, 0.0] and [s for s, _ in curve] == [0, 20, 40, 60]
    assert curve[-1][1] > 80 and right.shape == (3, len(eval_rows))
    assert model.bias[0].item() == 5.0  # the model itself is left as it was (a copy relearns)
