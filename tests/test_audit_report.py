"""common.audit_report on seed trees made by hand: K trees whose stage 01/02/05 files hold logits built so that a
"method" that returns the original must be caught, one that returns another seed's gold must not; the calibration rows
come out right; trees with different forget rows, or too few trees, are one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common import audit_report as AR
from common.io import PipelineError

N_TRAIN, N_TEST, N_FORGET = 120, 60, 30


def logits(labels: torch.Tensor, known: torch.Tensor, gen: torch.Generator, difficulty: torch.Tensor) -> torch.Tensor:
    """Random logits + a per-row difficulty shared by all models + 4 on the true class of the rows in `known`."""
    z = torch.randn(len(labels), 10, generator=gen)
    z[torch.arange(len(labels)), labels] += difficulty + 4.0 * known
    return z


def make_trees(root: Path, k: int, shift_forget_of: int | None = None) -> dict[str, Path]:
    g0 = torch.Generator().manual_seed(0)
    train_labels, test_labels = torch.randint(0, 10, (N_TRAIN,), generator=g0), torch.randint(0, 10, (N_TEST,), generator=g0)
    diff_train, diff_test = torch.randn(N_TRAIN, generator=g0), torch.randn(N_TEST, generator=g0)
    forget = torch.arange(N_FORGET)
    in_train = torch.ones(N_TRAIN)
    out_forget = in_train.clone()
    out_forget[forget] = 0  # gold never saw the forget rows
    trees = {}
    for i in range(k):
        tree = root / f"seed-{i}"
        for d in ("01_prepare_data", "02_train_resnet/logits", "05_unlearn_gan/logits"):
            (tree / d).mkdir(parents=True)
        f = forget + 1 if shift_forget_of == i else forget
        torch.save({"sample_forget": f, "sample_retain": torch.arange(N_FORGET, N_TRAIN), "test_eval": torch.arange(N_TEST)},
                   tree / "01_prepare_data" / "splits.pt")
        torch.save({"train_labels": train_labels, "test_labels": test_labels}, tree / "01_prepare_data" / "data.pt")
        gen = torch.Generator().manual_seed(100 + i)

        def model(known_train):
            return {"train": logits(train_labels, known_train, gen, diff_train),
                    "test": logits(test_labels, torch.zeros(N_TEST), gen, diff_test)}
        for name, known in (("original", in_train), ("gold", out_forget), ("gold_2", out_forget)):
            torch.save(model(known), tree / "02_train_resnet" / "logits" / f"{name}.pt")
        torch.save(model(in_train), tree / "05_unlearn_gan" / "logits" / "returns_original.pt")
        torch.save(model(out_forget), tree / "05_unlearn_gan" / "logits" / "returns_other_gold.pt")
        trees[str(i)] = tree
    return trees


def test_calibration_rows_and_hand_made_methods(tmp_path):
    inputs = AR.load(make_trees(tmp_path, 8))
    assert inputs["models"]["gold"]["forget"].shape == (8, N_FORGET) and len(inputs["control"]) == N_FORGET
    df, examples = AR.run(inputs, n_boot=100, n_perm=200, seed=0)
    df = df.set_index("model")
    assert list(df.index[:2]) == ["original", "gold_2"] and (df.loc[["original", "gold_2"], "kind"] == "calibration").all()
    for caught in ("original", "returns_original"):
        assert df.loc[caught, "caught"] and df.loc[caught, "mean_auc"] > 0.95 and df.loc[caught, "rmia_auc"] > 0.9
    for missed in ("gold_2", "returns_other_gold"):
        assert not df.loc[missed, "caught"] and 0.3 < df.loc[missed, "mean_auc"] < 0.65
        assert 0.35 < df.loc[missed, "rmia_auc"] < 0.65
    # the retain control: every model here knows the retain rows, so nothing is caught there
    assert not df["retain_caught"].any()
    assert df.loc["returns_original", "forget_score"] < df.loc["returns_other_gold", "forget_score"]
    assert set(examples["model"]) == set(df.index) and len(examples) == len(df) * N_FORGET
    lines = AR.section(df.reset_index(), inputs, {"returns_original": True})
    text = "\n".join(lines)
    assert "K = 8 seed trees" in text and "the original is caught" in text and "gold_2 is not caught" in text
    assert "showed no gap to gold** (no gap shown across the seeds on MIA-efficacy nor on stage 06's forget-row " \
           "attack AUCs; \"no gap shown\" is not \"like gold\"): returns_original" in text
    assert "exact over the 128 distinct within-tree swaps" in text and df["testable"].all()


def test_below_the_k_that_can_reach_holm_the_audit_reports_effects_and_tests_nothing(tmp_path):
    inputs = AR.load(make_trees(tmp_path, 5))  # 2^4 = 16 swaps: smallest p 0.0625 > 0.05, even alone
    df, _ = AR.run(inputs, n_boot=50, n_perm=200, seed=0)
    assert not df["testable"].any() and df["caught"].isna().all() and df["retain_caught"].isna().all()
    text = "\n".join(AR.section(df, inputs, {}))
    assert "**Cannot test at K = 5**" in text and "smallest p is 0.0625" in text and "K >= 7" in text
    assert "Calibration**: not testable at K = 5" in text and "returns_original 1.00" in text
    assert "not Hayes et al.'s random-half shadow U-LiRA" in text and "pooled over the examples (K < 16)" in text


def test_bad_tree_sets_are_one_line_errors(tmp_path):
    with pytest.raises(PipelineError, match="at least 3 seed trees"):
        AR.load(make_trees(tmp_path / "two", 2))
    with pytest.raises(PipelineError, match="other sample_forget rows"):
        AR.load(make_trees(tmp_path / "mixed", 4, shift_forget_of=2))
    trees = make_trees(tmp_path / "nogold2", 3)
    (trees["1"] / "02_train_resnet" / "logits" / "gold_2.pt").unlink()
    with pytest.raises(PipelineError, match="gold_2.pt is missing"):
        AR.load(trees)


def test_a_diverged_method_is_left_out_of_the_audit_and_named(tmp_path):
    """A method whose logits are non-finite in one tree (stage 05's "diverged", e.g. Fisher forgetting at too large
    an alpha) has no per-example figure: it is not audited, the others are, and the section says which and why."""
    trees = make_trees(tmp_path, 5)
    for i, tree in enumerate(trees.values()):
        z = torch.load(tree / "05_unlearn_gan" / "logits" / "returns_original.pt", weights_only=True)
        if i == 2:
            z["train"][0, 0] = float("nan")
        torch.save(z, tree / "05_unlearn_gan" / "logits" / "diverges.pt")
    inputs = AR.load(trees)
    assert inputs["diverged"] == ["diverges"] and "diverges" not in inputs["models"]
    df, _ = AR.run(inputs, n_boot=20, n_perm=50, seed=0)
    assert "diverges" not in set(df["model"]) and "returns_original" in set(df["model"])
    text = "\n".join(AR.section(df, inputs, {}))
    assert "Diverged (non-finite logits in at least one tree), so not audited: diverges." in text
