"""common.aggregate on hand-made numbers: mean, sample std (ddof = 1), the gold-vs-gold noise floor and the
"within noise" marking; and stage 07 over two seed trees (summary first, per-seed tables after, long summary.csv)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from common.aggregate import aggregate, noise_floor, t_interval


def table(gold: float, method: float, gold_2: float | None = None) -> pd.DataFrame:
    rows = {"gold": {"acc": gold}, "m": {"acc": method}}
    if gold_2 is not None:
        rows["gold_2"] = {"acc": gold_2}
    return pd.DataFrame.from_dict(rows, orient="index")


def test_mean_and_sample_std_across_seeds():
    per_seed = {"0": table(50, 60), "1": table(52, 64), "2": table(54, 68)}
    agg = aggregate(per_seed, ["acc"])
    assert agg.loc["m", "acc"] == pytest.approx(64.0) and agg.loc["m", "acc_n"] == 3
    assert agg.loc["m", "acc_std"] == pytest.approx(4.0)  # ddof = 1: sqrt(((-4)^2 + 0 + 4^2) / 2)
    assert agg.loc["m", "acc_gap"] == pytest.approx(12.0) and agg.loc["m", "acc_gap_std"] == pytest.approx(2.0)
    lo, hi = t_interval(np.array([10.0, 12.0, 14.0]))  # t(0.975, 2) = 4.303, se = 2 / sqrt(3)
    assert (agg.loc["m", "acc_gap_lo"], agg.loc["m", "acc_gap_hi"]) == pytest.approx((lo, hi))
    assert hi - 12.0 == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-5)


def test_noise_floor_from_seed_pairs_and_from_gold_2():
    per_seed = {"0": table(50, 0), "1": table(52, 0), "2": table(56, 0)}
    # pairs: |50-52| = 2, |50-56| = 6, |52-56| = 4 -> mean 4
    assert noise_floor(per_seed, ["acc"])["acc"] == pytest.approx(4.0)
    assert noise_floor({"0": table(50, 0, gold_2=47)}, ["acc"])["acc"] == pytest.approx(3.0)
    assert math.isnan(noise_floor({"0": table(50, 0)}, ["acc"])["acc"])  # one seed, no gold_2: no floor


def test_within_noise_marking():
    # one seed with gold_2 at distance 3: a gap of 2 is within noise, a gap of 5 is not
    small, large = {"0": table(50, 52, gold_2=47)}, {"0": table(50, 55, gold_2=47)}
    assert aggregate(small, ["acc"], noise_floor(small, ["acc"])).loc["m", "acc_within_noise"]
    assert not aggregate(large, ["acc"], noise_floor(large, ["acc"])).loc["m", "acc_within_noise"]
    # several seeds: a gap whose t-interval contains 0 is within noise even above the floor
    spread = {"0": table(50, 60), "1": table(50, 40), "2": table(51, 62)}
    agg = aggregate(spread, ["acc"], pd.Series({"acc": 0.5}))
    assert agg.loc["m", "acc_gap_lo"] < 0 < agg.loc["m", "acc_gap_hi"] and agg.loc["m", "acc_within_noise"]
    steady = {"0": table(50, 60), "1": table(50, 61), "2": table(51, 60)}
    assert not aggregate(steady, ["acc"], pd.Series({"acc": 0.5})).loc["m", "acc_within_noise"]


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_report_aggregates_two_seed_trees(run_stage, tmp_path):
    root = tmp_path / "results"
    for seed, (orig, gold, ft) in {"0": (100, 60, 70), "1": (98, 64, 74)}.items():
        r = root / f"seed-{seed}"
        _write(r / "01_prepare_data/metrics.json", dict(source="kaggle", n_train=100, n_test=20, forget_class=0,
                                                        forget_class_name="airplane", split_sizes={}))
        _write(r / "02_train_resnet/metrics.json", dict(models=dict(
            original=dict(acc_forget=orig, acc_retain=95, acc_test=70, seconds=50),
            gold=dict(acc_forget=gold, acc_retain=95, acc_test=70, seconds=40))))
        _write(r / "05_unlearn_gan/metrics.json", dict(models=dict(finetune=dict(
            acc_forget=ft, acc_retain=95, acc_test=70, seconds=4, cut=False, lr=0.01))))
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(root), "--seeds", "0 1"])
    assert code == 0, err
    text = (root / "report.md").read_text()
    per_seed = (root / "07_report/per_seed.md").read_text()
    assert "## Summary over 2 training seeds (0, 1)" in text and per_seed.index("## Seed 0") < per_seed.index("## Seed 1")
    # finetune forget: mean 72, std sqrt(8) = 2.83, t-interval 72 ± 12.706 x 2.83 / sqrt 2, gap +10 on each seed (≠)
    assert "| 72.0 ± 2.8 [46.6, 97.4] (+10.0, ≠) |" in text
    assert "Equivalence margins: none (2 golds: at least 3 are needed)." in text
    agg0 = json.loads((root / "07_report/metrics.json").read_text())
    assert agg0["noise_floor"]["resnet"]["acc_forget"] == pytest.approx(4.0)  # golds 60 / 64
    summary = pd.read_csv(root / "summary.csv")
    assert list(summary.columns[:6]) == ["tree", "seed", "split_seed", "forget_class", "track", "model"]
    assert sorted(set(summary.seed)) == [0, 1]
    assert len(summary) == 6  # 2 seeds x (original, gold, finetune)
    agg = json.loads((root / "07_report/metrics.json").read_text())
    assert agg["seeds"] == ["0", "1"] and agg["models"]["resnet/finetune"]["acc_forget_std"] == pytest.approx(8 ** 0.5)


def test_report_three_seeds_claims_equivalence_only_through_tost_and_checks_it_on_gold_2(run_stage, tmp_path):
    root = tmp_path / "results"
    golds = {"0": (60, 95, 70), "1": (64, 96, 71), "2": (62, 94, 69)}  # std 2 / 1 / 1 -> margins 5.54 / 2.77 / 2.77
    for seed, (f, r, t) in golds.items():
        tree = root / f"seed-{seed}"
        _write(tree / "01_prepare_data/metrics.json", dict(source="kaggle", n_train=100, n_test=20, forget_class=0,
                                                           forget_class_name="airplane", split_sizes={}))
        d = {"0": 1, "1": -1, "2": 0}[seed]
        _write(tree / "02_train_resnet/metrics.json", dict(models=dict(
            original=dict(acc_forget=100, acc_retain=95, acc_test=70), gold=dict(acc_forget=f, acc_retain=r, acc_test=t),
            gold_2=dict(acc_forget=f + d, acc_retain=r, acc_test=t))))  # an independent gold: gaps 1, -1, 0
        _write(tree / "05_unlearn_gan/metrics.json", dict(models=dict(
            close=dict(acc_forget=f + 0.5 * abs(d), acc_retain=r + 0.2 * d, acc_test=t),  # tiny gaps
            far=dict(acc_forget=f + 30 + abs(d), acc_retain=r, acc_test=t))))  # forget gap ~30 on every seed
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(root), "--seeds", "0 1 2"])
    assert code == 0, err
    text = (root / "report.md").read_text()
    verdict = text[text.index("## Verdict"):text.index("How to read")]
    assert "close beats far" in verdict and "paired t-test across the seeds, Holm over 1 pairs" in verdict
    # margins: golds + gold_2s pooled (forget 60 64 62 61 63 62: s 1.414 on 5 df), the 1 - 0.025 / 3 lower bound
    # s x sqrt(5 / chi2_0.99167,5) = 0.819, x 1.96 x sqrt 2 -> forget ±2.2; retain and test (s 0.894) ±1.4
    assert "margin = 1.96 x √2 x a 1 - 0.025 / 3 lower confidence bound" in verdict
    assert "forget ±2.2, retain ±1.4, test ±1.4; Holm over the 6 method x figure tests at α 0.025" in verdict
    assert "on every figure (forget, retain, test tested): close; on some: far: retain, test." in verdict
    assert "At 3 seeds a true gold would pass one test of this family with probability" in verdict
    assert "tested alone at α 0.025 against a margin from the 3 golds only, comes out equivalent on 3 of the 3" in text
    assert "Equivalence margins: forget ±2.2 (golds 60.0, 64.0, 62.0)" in text
    assert "| far | b | 2 [2, 2] |" in text and "| close | a | 1 [1, 1] |" in text
    assert "(+30.7, ≠)" in text and "(+0.3, ≡)" in text  # far's forget gap shown; close's forget gap equivalent
    claims = json.loads((root / "07_report/metrics.json").read_text())["claims"]["resnet"]
    assert claims["by"] == "seeds" and claims["marks"]["far"]["acc_forget_different"] is True
    assert claims["marks"]["far"]["acc_forget_equivalent"] is False and claims["pairs"][0]["significant"] is True


def test_report_aggregates_trees_over_forget_classes(run_stage, tmp_path):
    """FORGET_CLASSES: one tree per (seed, class), aggregated like seeds; summary.csv says which tree is which."""
    root = tmp_path / "results"
    for cls, (gold, ft) in {2: (0, 10), 3: (0, 20)}.items():
        tree = root / f"seed-0_class-{cls}"
        _write(tree / "01_prepare_data/metrics.json", dict(source="kaggle", n_train=100, n_test=20, forget_class=cls,
                                                           forget_class_name=str(cls), split_sizes={}))
        _write(tree / "01_prepare_data/manifest.json", dict(config=dict(seed=0, split_seed=42)))
        _write(tree / "04_unlearn_vit/metrics.json", dict(models=dict(
            gold=dict(acc_forget_train=gold, acc_retain_train=90, acc_test_retain=80),
            finetune=dict(acc_forget_train=ft, acc_retain_train=90, acc_test_retain=80))))
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(root),
                                           "--seeds", "0_class-2 0_class-3"])
    assert code == 0, err
    summary = pd.read_csv(root / "summary.csv")
    ft = summary[summary.model == "finetune"].set_index("forget_class")
    assert sorted(ft.index) == [2, 3] and set(ft.tree) == {"0_class-2", "0_class-3"} and set(ft.seed) == {0}
    assert set(ft.split_seed) == {42}
    text = (root / "report.md").read_text()
    assert "- Trees: 2 = training seeds x forget sets (split seeds 42; forget classes 2, 3)" in text
    assert "| 15.0 ± 7.1 [-48.5, 78.5] (+15.0) |" in text  # the two classes' forget accuracies, aggregated


def test_a_constant_gold_figure_keeps_a_method_that_forgot_nothing_off_the_every_figure_list():
    """Issue 30: where gold scores the same in every tree (ViT forget accuracy 0.0) there is no margin; a method that
    matches gold on the other figures but kept the forget class must not be listed as equivalent "on every figure"."""
    from common import verdict as V
    cols = ["acc_forget", "acc_retain", "acc_test"]
    per_seed = {}
    for i, s in enumerate(["0", "1", "2", "3", "4", "5", "6", "7"]):
        r, t, d = 90 + (i % 3), 80 + (i % 2), 0.01 * (i % 2)
        per_seed[s] = pd.DataFrame({"acc_forget": [100.0, 0.0, 0.0, 0.0, 100.0],
                                    "acc_retain": [99.0, r, r + 0.5 - i % 2, r + d, r + d],
                                    "acc_test": [81.0, t, t, t - d, t - d], "avg_gap": [12.0, 0, 0.1, 0.01, 33.3]},
                                   index=["original", "gold", "gold_2", "forgets", "keeps"])
    margin, cal = V.margins(per_seed, cols), V.margins(per_seed, cols, with_gold_2=False)
    assert margin["acc_forget"] == 0 and margin["acc_retain"] > 0
    comp = V.compare(per_seed, {}, ["forgets", "keeps"])
    mk = V.marks(per_seed, ["gold_2", "forgets", "keeps"], cols, margin, cal)
    assert V.yes(mk.loc["keeps", "acc_retain_equivalent"]) and mk.loc["keeps", "acc_forget_equivalent"] is None
    text = "\n".join(V.verdict(per_seed, comp, mk.loc[["forgets", "keeps"]], margin, cols, {}))
    assert "tested; acc_forget: gold's exact value on every seed): forgets;" in text
    assert "on some: keeps: acc_retain, acc_test" in text
