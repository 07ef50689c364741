"""Known-answer tests for the metrics of the ViT track (common/metrics.py): accuracy, entropy, JS distance and
classwise_metrics on a hand-made case. No data files, no network."""
import math

import numpy as np
import pytest
import torch

from common.metrics import accuracy, classwise_metrics, entropy, js_distance

BIG = 100.0  # softmax of (+BIG, -BIG, ...) is a one-hot up to exp(-200)


def one_hot_logits(classes, n_classes=10):
    z = torch.full((len(classes), n_classes), -BIG)
    z[torch.arange(len(classes)), torch.tensor(classes)] = BIG
    return z


def test_entropy_uniform_is_ln_classes():
    assert entropy(torch.zeros(4, 10)).tolist() == pytest.approx([math.log(10)] * 4, abs=1e-6)
    assert entropy(torch.zeros(1, 3)).item() == pytest.approx(math.log(3), abs=1e-6)


def test_entropy_one_hot_is_zero():
    assert entropy(one_hot_logits([0, 7])).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_js_identical_distributions_is_zero():
    z = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    assert js_distance(z, z.clone()) == pytest.approx(np.zeros(5), abs=1e-6)


def test_js_disjoint_one_hots_is_sqrt_ln2():
    # natural log (scipy's default, reference A's unit): the maximum distance is sqrt(ln 2) = 0.833
    expected = np.full(3, math.sqrt(math.log(2)))
    assert js_distance(one_hot_logits([0, 3, 9]), one_hot_logits([1, 4, 2])) == pytest.approx(expected, abs=1e-6)


# P = (1/3, 1/3, 1/3), Q = (1, 0, 0), M = (2/3, 1/6, 1/6), natural log:
# KL(P||M) = 1/3 ln(1/2) + 2/3 ln 2 = (ln 2) / 3; KL(Q||M) = ln(3/2); distance = sqrt of their mean
JS_UNIFORM_ONE_HOT = math.sqrt((math.log(2) / 3 + math.log(1.5)) / 2)


def test_js_uniform_vs_one_hot_hand_computed():
    assert js_distance(torch.zeros(1, 3), one_hot_logits([0], 3))[0] == pytest.approx(JS_UNIFORM_ONE_HOT, abs=1e-6)


def test_js_of_a_diverged_model_is_nan_never_zero():
    bad = torch.full((2, 3), float("nan"))
    assert np.isnan(js_distance(bad, one_hot_logits([0, 1], 3))).all()


def test_accuracy_hand_made():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 1])  # rows 0, 2, 3 right
    assert accuracy(logits, labels) == pytest.approx(75.0)
    assert math.isnan(accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))


def test_classwise_metrics_hand_made():
    # 3 classes, forget class 0. Train: rows 0, 2 forget (labels 0), rows 1, 3 retain (labels 1, 2).
    data = {"train_labels": torch.tensor([0, 1, 0, 2]), "test_labels": torch.tensor([0, 1, 2])}
    splits = {"forget": torch.tensor([0, 2]), "retain": torch.tensor([1, 3]),
              "test_forget": torch.tensor([0]), "test_retain": torch.tensor([1, 2]), "test_eval": torch.tensor([0, 1, 2])}
    train = one_hot_logits([0, 1, 1, 2], 3)  # forget: 1 of 2 right; retain: 2 of 2 right
    test = torch.cat([torch.zeros(1, 3), one_hot_logits([1, 0], 3)])  # row 0 uniform (argmax 0: right), row 2 wrong
    gold_test = torch.cat([one_hot_logits([0], 3), test[1:]])  # same as the model on test_retain
    m = classwise_metrics({"train": train, "test": test}, data, splits, gold={"train": train, "test": gold_test})
    assert m["acc_forget_train"] == pytest.approx(50.0)
    assert m["acc_retain_train"] == pytest.approx(100.0)
    assert m["acc_test_forget"] == pytest.approx(100.0)
    assert m["acc_test_retain"] == pytest.approx(50.0)
    assert m["acc_test"] == pytest.approx(200 / 3)
    assert m["entropy_test_forget"] == pytest.approx(math.log(3), abs=1e-6)
    assert m["jsd_gold_test_forget"] == pytest.approx(JS_UNIFORM_ONE_HOT, abs=1e-6)
    lo, hi = m["acc_forget_train_ci"]
    assert lo <= 50.0 <= hi and m["acc_forget_train_gap_ci"] == [0.0, 0.0]  # same train logits as gold
    assert m["jsd_gold_test_retain"] == pytest.approx(0.0, abs=1e-6)
    assert "jsd_gold_test_forget" not in classwise_metrics({"train": train, "test": test}, data, splits)


def test_partial_logits_are_nan_off_the_scored_rows_and_finite_checks_only_those():
    from common.metrics import finite
    from common.train import split_logits

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x = torch.randint(0, 256, (6, 3, 2, 2), dtype=torch.uint8)
    y = torch.zeros(6, dtype=torch.long)
    rows = torch.tensor([4, 1])
    out = split_logits(model, {"train": (x, y), "test": (x, y)}, 4, lambda b: b.float() / 255, "cpu",
                       rows={"train": rows})
    full = split_logits(model, {"train": (x, y)}, 4, lambda b: b.float() / 255, "cpu")["train"]
    assert torch.allclose(out["train"][rows], full[rows]) and torch.isnan(out["train"][[0, 2, 3, 5]]).all()
    assert torch.isfinite(out["test"]).all()
    assert finite(out, train_rows=rows) and not finite(out)


def test_split_logits_fills_features_from_the_same_pass_as_the_logits():
    """04 takes t-SNE and probe features from its evaluation pass: the logits must be the plain forward's and the
    features `predict(features=True)`'s, row for row, at any batch size."""
    import timm

    from common.train import predict, split_logits

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32).eval()
    x = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    y = torch.zeros(7, dtype=torch.long)
    tf = lambda b: b.float() / 255  # noqa: E731
    feats = {}
    out = split_logits(model, {"train": (x, y)}, 3, tf, "cpu", features=feats)
    with torch.no_grad():
        plain = model(tf(x))
    assert torch.allclose(out["train"], plain, atol=1e-5) and feats["train"].shape == (7, 192)
    alone = predict(model, [(tf(x[i:i + 3]), None) for i in range(0, 7, 3)], "cpu", features=True)
    assert torch.allclose(feats["train"], alone, atol=1e-5)
    with pytest.raises(ValueError, match="whole splits"):
        split_logits(model, {"train": (x, y)}, 3, tf, "cpu", rows={"train": torch.tensor([1])}, features={})
