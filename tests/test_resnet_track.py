"""Unit tests of the ResNet track (stages 02, 05, 06) on hand-made tensors: no data files, a few seconds."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from common.data import random_crop_flip, resnet_transform
from common.metrics import attack_features, binary_metrics, mia_efficacy, sorted_probs
from common.methods import _gan as methods  # the WGAN-GP parts of both GANs
from common.models import resnet18_cifar

REPO = Path(__file__).resolve().parent.parent


def load_stage(filename: str):
    """Import a stage script (its name starts with a digit, so plain `import` cannot)."""
    spec = importlib.util.spec_from_file_location("stage_" + Path(filename).stem, REPO / filename)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


attack = load_stage("06_membership_attack.py")


# ------------------------------------------------------------------------------------------ gradient penalty
def test_gradient_penalty_of_linear_critic_is_analytic():
    # D(x) = w.x + b has gradient w everywhere, so the penalty is (|w| - 1)^2 = (5 - 1)^2 = 16 for w = (3, 4).
    critic = nn.Linear(2, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0]]))
        critic.bias.fill_(0.7)
    real, fake = torch.rand(64, 2), torch.rand(64, 2)
    gp = methods.gradient_penalty(lambda x: critic(x).squeeze(1), real, fake)
    assert gp.item() == pytest.approx(16.0, rel=1e-6)
    # create_graph: d gp / d w = 2 (|w| - 1) w / |w| = 2 * 4 * (0.6, 0.8)
    gp.backward()
    assert torch.allclose(critic.weight.grad, torch.tensor([[4.8, 6.4]]), atol=1e-5)


def test_gradient_penalty_zero_for_unit_norm_critic():
    critic = nn.Linear(10, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.full((1, 10), 1 / 10**0.5))
    gp = methods.gradient_penalty(lambda x: critic(x).squeeze(1), torch.rand(8, 10), torch.rand(8, 10))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


def test_critic_scores_one_number_per_probability_vector():
    critic = methods.Critic(10, (16, 16))
    assert critic(torch.softmax(torch.randn(5, 10), 1)).shape == (5,)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in critic.modules())  # BN would break the per-sample GP


# ------------------------------------------------------------------------------- sorted-probability features
def test_sorted_probs_and_attack_features():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    sp = sorted_probs(logits)
    assert torch.allclose(sp, torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]]), atol=1e-6)
    feats = attack_features(logits, torch.tensor([2, 1]))
    assert feats.shape == (2, 4)
    assert np.allclose(feats[:, :3], sp.numpy()) and np.allclose(feats[:, 3], [0.3, 0.2], atol=1e-6)
    # label-free part is invariant to permuting the classes
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(sorted_probs(logits[:, perm]), sp)


# ---------------------------------------------------------------------------------------- attack metrics
def test_binary_metrics_known_confusion_matrix():
    # tp = 3, fn = 1, fp = 2, tn = 4
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    m = binary_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert m["fnr"] == pytest.approx(1 / 4)
    assert m["n"] == 10


def test_binary_metrics_on_an_all_member_forget_set():
    # forget rows are all true members: FNR = share called non-member, accuracy = recall = 1 - FNR
    m = binary_metrics([1] * 8, [0, 0, 0, 1, 1, 1, 1, 1])
    assert m["fnr"] == pytest.approx(3 / 8) and m["accuracy"] == pytest.approx(5 / 8) == m["recall"]
    assert m["precision"] == 1.0


def test_mia_efficacy_separable_confidences():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.uniform(0.9, 1.0, 200), rng.uniform(0.05, 0.4, 200)
    assert mia_efficacy(members, nonmembers, rng.uniform(0.1, 0.3, 50)) == 1.0  # forgotten: all non-members
    assert mia_efficacy(members, nonmembers, rng.uniform(0.95, 1.0, 50)) == 0.0  # remembered: all members
    half = np.concatenate([rng.uniform(0.1, 0.3, 25), rng.uniform(0.95, 1.0, 25)])
    assert mia_efficacy(members, nonmembers, half) == pytest.approx(0.5)


def test_fit_attack_separates_confident_members_from_unsure_nonmembers():
    """Stage 06's attack on toy logits: members get peaked outputs, non-members flat ones -> AUC near 1, and a
    forget set that looks like non-members gets FNR near 1."""
    g = torch.Generator().manual_seed(0)
    n_train, n_test = 200, 100
    labels_train = torch.randint(0, 10, (n_train,), generator=g)
    labels_test = torch.randint(0, 10, (n_test,), generator=g)
    train = torch.randn(n_train, 10, generator=g)
    train[torch.arange(n_train), labels_train] += 8.0  # members: confident and right
    test = torch.randn(n_test, 10, generator=g)  # non-members: unsure
    train[150:] = torch.randn(50, 10, generator=g)  # rows 150.. (the "forget set") look unseen
    perm = torch.randperm(100, generator=g)
    splits = {"mia_sample_members_attack": torch.arange(0, 50), "mia_sample_members_eval": torch.arange(50, 100),
              "mia_sample_nonmembers_attack": perm[:50], "mia_sample_nonmembers_eval": perm[50:],
              "sample_forget": torch.arange(150, 200)}
    data = {"train_labels": labels_train, "test_labels": labels_test}
    cfg = attack.AttackConfig(classifier="logreg")
    fig, roc = attack.fit_attack({"train": train, "test": test}, data, splits, "resnet", cfg)
    assert fig["auc"] > 0.95 and fig["attack_test"]["accuracy"] > 0.9
    assert fig["attack_forget"]["fnr"] > 0.9 and fig["mia_efficacy"] > 0.9
    for name in ("reference_b", "own", "loss", "calibrated"):
        assert len(roc[name]["fpr"]) == len(roc[name]["tpr"]) and roc[name]["tpr"][-1] == 1.0
    gap = attack.vs_gold(fig, fig)
    assert all(v["gap"] == 0 or np.isnan(v["gap"]) for v in gap.values())


# ------------------------------------------------------------------------------------------------ model
def test_resnet18_cifar_stem_keeps_32px():
    model = resnet18_cifar(10).eval()
    conv = model.conv1
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    seen = {}

    def hook(module, inputs, output):  # returns None, so the output is left unchanged
        seen["layer1"] = output.shape

    model.layer1.register_forward_hook(hook)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert seen["layer1"] == (2, 64, 32, 32)  # no downsampling before layer1


def test_narrow_resnet_is_the_same_architecture_at_a_quarter_of_the_channels():
    from torch.utils.flop_counter import FlopCounterMode

    full, narrow = resnet18_cifar(10).eval(), resnet18_cifar(10, width=16).eval()
    assert [type(m) for m in full.modules()] == [type(m) for m in narrow.modules()]  # same layers, same order
    x = torch.randn(1, 3, 32, 32)
    flops = []
    for m in (full, narrow):
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            assert m(x).shape == (1, 10)
        flops.append(c.get_total_flops())
    assert 14 < flops[0] / flops[1] < 18  # ~(64 / 16)^2
    assert narrow.fc.in_features == 128 and narrow.layer4[1].conv2.out_channels == 128


# ----------------------------------------------------------------------------------------- augmentation
def test_random_crop_flip_values_come_from_the_padded_image():
    torch.manual_seed(0)
    n, c, h, w, pad = 64, 3, 6, 6, 2
    x = (torch.arange(n * c * h * w).view(n, c, h, w) % 251 + 1).to(torch.uint8)  # no zeros: padding is visible
    y = random_crop_flip(x, pad=pad)
    assert y.shape == x.shape and y.dtype == x.dtype
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    offsets, flips = set(), set()
    for i in range(n):
        matches = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (False, True)
                   if torch.equal(y[i], (lambda crop: crop.flip(-1) if f else crop)(xp[i, :, dy:dy + h, dx:dx + w]))]
        assert matches, f"image {i} is not a (flipped) crop of its padded original"
        offsets.add(matches[0][:2])
        flips.add(matches[0][2])
    assert len(offsets) > 5 and flips == {False, True}  # crops and flips vary per image


def test_resnet_transform_eval_is_deterministic_and_normalised():
    x = torch.full((2, 3, 32, 32), 128, dtype=torch.uint8)
    f = resnet_transform(False, channels_last=True)
    a, b = f(x), f(x)
    assert torch.equal(a, b) and a.dtype == torch.float32 and a.is_contiguous(memory_format=torch.channels_last)
    assert abs(a[0, 0, 0, 0].item() - (128 / 255 - 0.4914) / 0.2470) < 1e-5
