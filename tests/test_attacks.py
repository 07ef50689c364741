"""Stage 06's attacks and common.metrics' bootstrap intervals on hand-made logits (no stage run)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_stage
from sklearn.metrics import roc_curve

from common.metrics import (accuracy_ci, attack_features, auc_ci, bootstrap_ci, calibrated_scores, group_auc,
                            mean_ci, mia_efficacy, mia_efficacy_svc, roc_points_log, softmax_features, tpr_at_fpr,
                            true_class_log_prob)

attack = load_stage("06_membership_attack.py")


def two_class_logits(log_p: np.ndarray) -> torch.Tensor:
    """Logits whose softmax gives p(class 0) = exp(log_p) exactly: [log p, log(1 - p)]."""
    p = np.exp(log_p)
    return torch.tensor(np.stack([log_p, np.log1p(-p)], 1), dtype=torch.float64)


def toy_target(train: torch.Tensor, test: torch.Tensor, ytr: torch.Tensor, yte: torch.Tensor, members: int,
               forget) -> tuple:
    """(logits, data, splits) for fit_attack: train rows [0, members / 2) = members attack, [members / 2, members)
    = members eval; the test rows' halves likewise for non-members; `forget` = train row indices."""
    h, k = members // 2, len(yte) // 2
    splits = {"mia_sample_members_attack": torch.arange(h), "mia_sample_members_eval": torch.arange(h, 2 * h),
              "mia_sample_nonmembers_attack": torch.arange(k), "mia_sample_nonmembers_eval": torch.arange(k, 2 * k),
              "sample_forget": torch.as_tensor(forget)}
    return {"train": train, "test": test}, {"train_labels": ytr, "test_labels": yte}, splits


# ------------------------------------------------------------------------------------------------ loss attack
def test_loss_attack_auc_is_one_when_every_member_has_lower_loss_and_half_for_identical_losses():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (400,), generator=g)
    logits = torch.randn(400, 10, generator=g)
    logits[torch.arange(200), labels[:200]] += 20.0  # rows 0..199 (members): near-zero loss, below every non-member
    score = true_class_log_prob(logits, labels)
    assert np.allclose(score, -torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy(), atol=1e-5)
    assert group_auc(score[:200], score[200:]) == 1.0

    same = true_class_log_prob(torch.randn(4000, 10, generator=g), torch.randint(0, 10, (4000,), generator=g))
    assert group_auc(same[:2000], same[2000:]) == pytest.approx(0.5, abs=0.04)


def test_fit_attack_wires_every_attack_and_its_intervals():
    """Members (train rows) are confident and right, non-members and the forget rows look alike: every attack
    separates members (auc near 1) while forget rows sit at the non-member level (forget_auc near 0.5)."""
    g = torch.Generator().manual_seed(1)
    ytr, yte = torch.randint(0, 10, (600,), generator=g), torch.randint(0, 10, (300,), generator=g)
    train, test = torch.randn(600, 10, generator=g), torch.randn(300, 10, generator=g)
    train[torch.arange(400), ytr[:400]] += 12.0  # rows 400.. = forget rows, never "seen"
    logits, data, splits = toy_target(train, test, ytr, yte, 400, torch.arange(400, 600))
    fig, roc = attack.fit_attack(logits, data, splits, "resnet", attack.AttackConfig(classifier="logreg"))
    assert set(fig["attacks"]) == set(roc) == set(attack.ATTACKS)
    assert fig["attacks"]["loss"]["auc"] == 1.0 and fig["attacks"]["own"]["auc"] == fig["auc"]
    for name, a in fig["attacks"].items():
        assert a["auc"] > 0.95 and a["forget_auc"] == pytest.approx(0.5, abs=0.12), name
        for key in ("auc", "forget_auc") + (("forget_fnr",) if name in attack.FITTED else ()):
            low, high = a[f"{key}_ci"]
            assert low <= a[key] <= high, (name, key)
        assert roc[name]["fpr"][0] == 0.0 and roc[name]["tpr"][-1] == 1.0
    assert fig["attacks"]["own"]["forget_fnr"] == fig["attack_forget"]["fnr"] > 0.8
    assert fig["mia_efficacy_ci"][0] <= fig["mia_efficacy"] <= fig["mia_efficacy_ci"][1]
    assert "reference_b auc" in attack.table("resnet", {"gold": fig, "x": fig})


# ------------------------------------------------------------------------------------------ calibrated attack
def test_calibrated_attack_removes_a_per_class_offset():
    """Class 0 is easy (log p near -0.1), class 1 hard (near -2); members sit +0.05 above the non-members of their
    class. Raw log p ranks class-0 non-members above class-1 members (AUC 0.75); per-class calibration separates."""
    rng = np.random.default_rng(0)
    n = 200
    labels = torch.tensor(np.repeat([0, 1], n))
    level = np.repeat([-0.1, -2.0], n)
    noise = lambda: rng.uniform(-0.01, 0.01, 2 * n)  # noqa: E731

    def logits(log_p_true):  # 2-class logits; for class-1 rows the true class is column 1, so swap the columns
        z = two_class_logits(np.where(labels.numpy() == 0, log_p_true, np.log1p(-np.exp(log_p_true))))
        return z.float()

    members, nonmembers, ref = logits(level + 0.05 + noise()), logits(level + noise()), logits(level + noise())
    raw = true_class_log_prob(members, labels), true_class_log_prob(nonmembers, labels)
    assert group_auc(*raw) == pytest.approx(0.75, abs=0.01)
    calibrated = calibrated_scores(members, labels, ref, labels), calibrated_scores(nonmembers, labels, ref, labels)
    assert group_auc(*calibrated) == 1.0
    assert abs(calibrated_scores(ref, labels, ref, labels)[labels == 1].mean()) < 1e-6  # offset = ref's class mean


# ---------------------------------------------------------------------------------------- reference B attack
def test_reference_b_features_are_the_raw_softmax_so_a_class_permutation_changes_them():
    z = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    perm = torch.tensor([2, 0, 1])
    assert np.allclose(softmax_features(z)[:, 0], [0.8438, 0.0064], atol=1e-3)  # column k = class k
    assert not np.allclose(softmax_features(z[:, perm]), softmax_features(z))
    labels = torch.tensor([0, 2])  # the own attack's sorted features do not see which class holds the mass
    assert np.allclose(attack_features(z[:, perm], perm.argsort()[labels]), attack_features(z, labels))


def test_reference_b_attack_sees_which_class_holds_the_mass_and_the_own_attack_does_not():
    """Members put their mass on classes 0-4, non-members on 5-9, with identical sorted probabilities and true-class
    probability: only the unsorted features tell them apart."""
    g = torch.Generator().manual_seed(2)
    ytr, yte = torch.randint(0, 5, (1200,), generator=g), torch.randint(5, 10, (1200,), generator=g)
    def peaked(y):  # same sorted-probability distribution for every row; only the peak's position differs
        return torch.nn.functional.one_hot(y, 10).float() * 4.0 + 0.5 * torch.randn(len(y), 10, generator=g)
    logits, data, splits = toy_target(peaked(ytr), peaked(yte), ytr, yte, 1200, torch.arange(100))
    fig, _ = attack.fit_attack(logits, data, splits, "resnet", attack.AttackConfig(classifier="logreg"))
    assert fig["attacks"]["reference_b"]["auc"] > 0.95
    assert fig["attacks"]["own"]["auc"] == pytest.approx(0.5, abs=0.05)


# ----------------------------------------------------------------------------------- bootstrap and intervals
def test_auc_ci_contains_the_estimate_narrows_with_rows_and_matches_a_plain_bootstrap_with_ties():
    rng = np.random.default_rng(3)
    widths = []
    for n in (100, 3000):
        pos, neg = rng.normal(0.5, 1, n), rng.normal(0, 1, n)
        low, high = auc_ci(pos, neg, seed=0)
        assert low < group_auc(pos, neg) < high
        widths.append(high - low)
    assert widths[1] < 0.3 * widths[0]  # ~ 1 / sqrt(30) = 0.18

    pos, neg = rng.integers(0, 4, 60).astype(float), rng.integers(0, 4, 50).astype(float)  # many ties
    slow = lambda p, q: [group_auc(a, b) for a, b in zip(p, q)]  # noqa: E731  (same draws: sorted negatives)
    assert auc_ci(pos, neg, n_boot=300, seed=5) == pytest.approx(bootstrap_ci(slow, pos, np.sort(neg), n_boot=300,
                                                                              seed=5))


def test_mean_ci_and_accuracy_ci_on_known_cases():
    labels = torch.arange(400) % 10
    logits = torch.nn.functional.one_hot(labels, 10).float()
    logits[:100] = torch.nn.functional.one_hot((labels[:100] + 1) % 10, 10).float()  # 300 / 400 right = 75 %
    low, high = accuracy_ci(logits, labels, n_boot=2000, seed=0)
    assert 70 < low < 75 < high < 80  # binomial standard error 2.2 points: about 75 +- 4.2
    assert accuracy_ci(logits[100:], labels[100:]) == (100.0, 100.0)
    assert mean_ci(np.r_[np.ones(50), np.zeros(50)], seed=1) == mean_ci(np.r_[np.ones(50), np.zeros(50)], seed=1)
    assert np.isnan(mean_ci([])[0])


def test_mia_efficacy_svc_is_the_svc_behind_mia_efficacy():
    rng = np.random.default_rng(4)
    members, nonmembers, forget = rng.beta(8, 1, 200), rng.beta(2, 2, 200), rng.beta(3, 2, 50)
    svc = mia_efficacy_svc(members, nonmembers)
    assert 1.0 - svc.predict(forget.reshape(-1, 1)).mean() == mia_efficacy(members, nonmembers, forget)


# ------------------------------------------------------------------------------------------------ low-FPR ROC
def test_roc_thinning_keeps_the_low_fpr_end_and_tpr_at_fpr_does_not_interpolate():
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(5000), np.zeros(5000)]
    s = np.r_[rng.normal(1, 1, 5000), rng.normal(0, 1, 5000)]
    curve = roc_points_log(y, s)
    fpr = np.array(curve["fpr"])
    assert len(fpr) <= 202 and fpr[0] == 0.0 and fpr[-1] == 1.0
    assert fpr[fpr > 0].min() == pytest.approx(1 / 5000)  # the smallest non-zero FPR is kept
    every, _, _ = roc_curve(y, s)
    assert set(every[every < 0.002]) <= set(fpr)  # every step of the first 10 non-members is kept
    assert (np.diff(np.log10(fpr[fpr > 0.01])) < 0.05).all()  # where FPR steps are fine: gaps < 1/20 decade
    # 4 non-members tie with the 10 members: the only thresholds give (FPR, TPR) = (0, 0) or (0.2 %, 1), so TPR at
    # FPR <= 0.1 % is 0 (interpolating the ROC would say 0.5) and at 0.2 % it is 1
    y, s = np.r_[np.ones(10), np.zeros(2000)], np.r_[np.full(14, 5.0), np.zeros(1996)]
    assert tpr_at_fpr(y, s, (0.001, 0.002)) == [0.0, 1.0]
