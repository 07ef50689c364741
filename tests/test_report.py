"""Stage 07 on hand-made metrics files: every model listed with its gap to gold, Avg Gap, compute (% of gold's
counted units), status and RTE computed as documented, the budget curve and the reproduction table, missing stages
named with their command, summary.csv one row per (track, model)."""
from __future__ import annotations

import json

import pandas as pd
import pytest


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _vit(forget, retain, test_retain, seconds, units, **extra):
    return dict(acc_forget_train=forget, acc_retain_train=retain, acc_test_forget=forget, acc_test_retain=test_retain,
                acc_test=test_retain, entropy_test_forget=1.0, jsd_gold_test_forget=0.1, jsd_gold_test_retain=0.05,
                seconds=seconds, units=units, **extra)


def _point(budget, units, forget, retain, test_retain, mia, over_budget=False):
    """One budget-curve point of stage 04 (gold's cost: 1000 units)."""
    return dict(budget=budget, units=units, pct_of_gold=units / 10, cut=not over_budget, over_budget=over_budget,
                acc_forget_train=forget, acc_retain_train=retain, acc_test_retain=test_retain,
                attack_mia_efficacy=mia)


@pytest.fixture
def results(tmp_path):
    r = tmp_path / "results"
    _write(r / "01_prepare_data/metrics.json", dict(source="kaggle", n_train=100, n_test=20, forget_class=0,
                                                    forget_class_name="airplane", split_sizes={"sample_forget": 8}))
    # gold's training cost: 1000 units; the budget 0.1 x that; finetune is cut at it, ssd's importances overran it
    _write(r / "04_unlearn_vit/metrics.json", dict(
        pretrained=False, img_size=32, gold_units=1000, budget=0.1, budget_units=100.0, budgets=[0.05, 0.1], bn="train",
        models=dict(original=_vit(90, 90, 80, 100, 3000), gold=_vit(0, 92, 82, 80, 1000),
                    finetune=_vit(10, 91, 81, 40, 100, pct_of_gold=10.0, steps=4, epochs=0.5, cut=True,
                                  over_budget=False, source="official defaults", settings=dict(lr=0.01)),
                    ssd=_vit(50, 85, 75, 20, 130, pct_of_gold=13.0, steps=0, epochs=1.0, cut=False, over_budget=True,
                             settings=dict(alpha=10.0))),
        curve=dict(finetune=[_point(0.05, 50, 40, 88, 78, 0.5), _point(0.1, 100, 10, 91, 81, 0.7)],
                   ssd=[_point(0.05, 130, 50, 85, 75, 0.8, over_budget=True)]),
        reproduction=dict(finetune=_vit(5, 90, 80, 160, 2000, pct_of_gold=200.0, steps=40, epochs=10.0, cut=False,
                                        over_budget=False, source="reference A"))))
    _write(r / "02_train_resnet/metrics.json", dict(models=dict(
        original=dict(acc_forget=100, acc_retain=95, acc_test=70, seconds=50, units=600,
                      history=[dict(epoch=1, val_acc=60), dict(epoch=2, val_acc=70)]),
        gold=dict(acc_forget=70, acc_retain=95, acc_test=70, seconds=40, units=400,
                  history=[dict(epoch=1, val_acc=61)]))))
    _write(r / "06_membership_attack/metrics.json", dict(
        vit=dict(original=dict(mia_efficacy=0.1, auc=0.6), gold=dict(mia_efficacy=0.9, auc=0.5),
                 finetune=dict(mia_efficacy=0.7, auc=0.55, attack_forget=dict(fnr=0.25, n=10), logits="x.pt",
                               vs_gold={"mia_efficacy": dict(value=0.7, gold=0.9, gap=-0.2)}),
                 ssd=dict(mia_efficacy=0.8, auc=0.52)),
        resnet=dict(original=dict(mia_efficacy=0.2), gold=dict(mia_efficacy=0.4))))
    _write(r / "06_membership_attack/roc.json", dict(vit=dict(gold=dict(loss=dict(fpr=[0, 0.01, 1], tpr=[0, 0.02, 1])))))
    return r


def test_report_lists_every_model_with_gaps(run_stage, results):
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(results)])
    assert code == 0, err
    text = (results / "report.md").read_text()
    for model in ("original", "gold", "finetune", "ssd"):
        assert f"| {model} |" in text
    assert "randomly initialised" in text
    assert "10.0 (+10.0)" in text  # finetune's forget accuracy beside its gap to gold
    assert ("- ViT compute budget per method: 0.1 x gold's training cost (100 units = images forward + 2 x images "
            "backward); BatchNorm policy: train; budget curve at 0.05, 0.1 x gold's cost") in text
    assert "--grid" not in text and "| lr |" not in text
    assert "compute (units) | compute % of gold | status | RTE: wall s | RTE % of gold (wall) |" in text
    assert "never decides anything" in text and "2 more per image backward" in text
    per_seed = (results / "07_report/per_seed.md").read_text()
    assert "## Seed" not in text and "## Seed" in per_seed and "07_report/per_seed.md" in text
    # the verdict comes first, then the short summary per track and the figures, then the detail
    assert text.index("## Verdict") < text.index("## Summary") < text.index("## Figures") < text.index("## Run") \
        < text.index("How to read") < text.index("## Details per track")
    assert "| finetune | a | 1 [1, 2] | 8.0 | 10.0 | cut |" in text  # the summary: group, rank, Avg Gap, compute, status
    # one seed without stage 06's replicates: no ranking test, no equivalence test
    assert "- **Ranking:** not tested (no Avg Gap replicates from stage 06 (re-run it))." in text
    assert "- **Equivalent to gold:** cannot be tested: 1 gold (one per tree)" in text
    # summary: group, rank [interval], Avg Gap first; then units | compute % of gold | status | RTE: wall s | RTE %
    assert "| finetune | a | 1 [1, 2] | 8.0 | 10.0 (+10.0) |" in text and "| 100 | 10.0 | cut | 40.0 | 50.0 |" in text
    # seed table: Avg Gap | units | ...; ssd: (|50-0| + |85-92| + |75-82| + 100*|0.8-0.9|) / 4 = 18.5; 130 units
    assert per_seed.count("| 8.0 | 100 | 10.0 | cut | 40.0 | 50.0 |") == 1
    assert "| ssd | a | 2 [1, 2] | 18.5 |" in text
    assert per_seed.count("| 18.5 | 130 | 13.0 | over budget | 20.0 | 25.0 |") == 1
    assert text.index("| finetune |") < text.index("| ssd |")  # sorted by Avg Gap
    # the reproduction (no budget): Avg Gap over the three accuracies, (5 + 2 + 2) / 3; 2000 units = 200 % of gold
    for t in (text, per_seed):
        assert t.count("Reproduction (no budget, as the references ran)") == 1
        assert t.count("| finetune | 5.0 (+5.0) | 90.0 (-2.0) | 80.0 (-2.0) | 3.0 | 200.0 | 160.0 | 200.0 |") == 1
    # the missing stages get one line each, naming the command; the rest still renders
    for stage in ("03_train_vit_refs", "05_unlearn_gan"):
        assert f"**{stage}**" in text and f"make {results}/{stage}/metrics.json" in text
    assert "02_train_resnet**" not in text
    summary = pd.read_csv(results / "summary.csv")
    assert sorted(zip(summary.track, summary.model)) == sorted(
        [("vit", "original"), ("vit", "gold"), ("vit", "finetune"), ("vit", "ssd"), ("resnet", "original"),
         ("resnet", "gold")])
    row = {(t, m): r for (t, m), r in zip(zip(summary.track, summary.model), summary.itertuples())}
    ft = row["vit", "finetune"]
    # Avg Gap = mean(|10-0|, |91-92|, |81-82|, 100*|0.7-0.9|) = (10 + 1 + 1 + 20) / 4
    assert ft.avg_gap == pytest.approx(8.0)
    assert ft.rte_pct_of_gold == pytest.approx(50.0)
    assert ft.pct_of_gold == pytest.approx(10.0) and ft.status == "cut" and row["vit", "ssd"].status == "over budget"
    assert ft.attack_forget_fnr == 0.25 and ft.attack_mia_efficacy == 0.7
    assert not [c for c in summary.columns if "vs_gold" in c or c.startswith("settings")]
    # compute % of gold for the reference rows too, from their units
    assert row["vit", "original"].pct_of_gold == pytest.approx(300.0) and row["vit", "gold"].pct_of_gold == 100.0
    assert row["resnet", "original"].pct_of_gold == pytest.approx(150.0)
    orig = row["resnet", "original"]
    assert orig.avg_gap == pytest.approx((30 + 0 + 0 + 20) / 4)
    for fig in ("budget_curve.png", "accuracy.png", "vit_js_entropy.png", "roc.png", "training_curves.png"):
        assert (results / "07_report" / fig).is_file() and f"07_report/{fig}" in text
    assert "gap_vs_rte" not in text and not (results / "07_report/gap_vs_rte.png").exists()
    agg = json.loads((results / "07_report/metrics.json").read_text())
    assert agg["missing_stages"] == ["03_train_vit_refs", "05_unlearn_gan"]
    # the curve: finetune at 5 % of gold: (|40-0| + |88-92| + |78-82| + 100*|0.5-0.9|) / 4 = 22; ssd hollow (over)
    curve = {(p["method"], p["budget"]): p for p in agg["budget_curve"]["vit"]}
    assert sorted(curve) == [("finetune", 0.05), ("finetune", 0.1), ("ssd", 0.05)]
    assert curve["finetune", 0.05]["avg_gap"] == pytest.approx(22.0) and curve["finetune", 0.05]["pct_of_gold"] == 5.0
    assert curve["finetune", 0.1]["avg_gap"] == pytest.approx(8.0) and curve["finetune", 0.1]["n"] == 1
    assert curve["ssd", 0.05]["over_budget"] is True and curve["ssd", 0.05]["avg_gap"] == pytest.approx(18.5)
    assert agg["reproduction"]["vit/finetune"]["avg_gap"] == pytest.approx(3.0)


def test_budget_figure_falls_back_to_the_budgeted_runs(run_stage, results):
    """No --budgets curve: the figure still exists, one point per method (its compute used, its Avg Gap)."""
    v = json.loads((results / "04_unlearn_vit/metrics.json").read_text())
    v.update(curve={}, budgets=[], budget=0, budget_units=None)
    _write(results / "04_unlearn_vit/metrics.json", v)
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(results)])
    assert code == 0, err
    text = (results / "report.md").read_text()
    assert "- ViT compute budget per method: none (--budget 0: every method runs its full schedule); BatchNorm " \
           "policy: train\n" in text
    assert "07_report/budget_curve.png" in text and (results / "07_report/budget_curve.png").is_file()
    curve = json.loads((results / "07_report/metrics.json").read_text())["budget_curve"]
    points = {p["method"]: p for p in curve["vit"]}
    assert sorted(points) == ["finetune", "ssd"] and "resnet" not in curve  # ResNet: no methods ran
    assert (points["finetune"]["pct_of_gold"], points["finetune"]["avg_gap"]) == pytest.approx((10.0, 8.0))
    assert points["ssd"]["over_budget"] is True


def test_aggregate_curve_over_seeds():
    from common.aggregate import aggregate_curve

    pts = pd.DataFrame([dict(method="a", budget=0.1, pct_of_gold=10, avg_gap=4, over_budget=False),
                        dict(method="a", budget=0.1, pct_of_gold=12, avg_gap=8, over_budget=True),
                        dict(method="a", budget=0.3, pct_of_gold=30, avg_gap=2, over_budget=False)])
    c = aggregate_curve(pts).set_index("budget")
    assert (c.loc[0.1, "pct_of_gold"], c.loc[0.1, "avg_gap"], c.loc[0.1, "n"]) == (11, 6, 2)
    assert c.loc[0.1, "avg_gap_std"] == pytest.approx(8 ** 0.5) and c.loc[0.1, "over_budget"]  # ddof 1; any seed
    assert pd.isna(c.loc[0.3, "avg_gap_std"]) and not c.loc[0.3, "over_budget"]  # one seed: no std


def test_report_with_nothing_upstream_still_renders(run_stage, tmp_path):
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(tmp_path / "empty")])
    assert code == 0, err
    text = (tmp_path / "empty/report.md").read_text()
    assert text.count("has no outputs") == 6


def test_report_cautions_only_when_the_original_gold_gap_interval_contains_0(run_stage, results):
    m = json.loads((results / "02_train_resnet/metrics.json").read_text())
    m["models"]["original"].update(acc_forget=72.0, acc_forget_gap_ci=[-4.0, 8.0])  # indistinguishable from gold
    _write(results / "02_train_resnet/metrics.json", m)
    v = json.loads((results / "04_unlearn_vit/metrics.json").read_text())
    v["models"]["original"]["acc_forget_train_gap_ci"] = [85.0, 95.0]  # clearly above gold
    _write(results / "04_unlearn_vit/metrics.json", v)
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(results)])
    assert code == 0, err
    text = (results / "report.md").read_text()
    per_seed = (results / "07_report/per_seed.md").read_text()
    # the ResNet track only: in the summary and in the seed's own section, each under a ResNet heading
    for t in (text, per_seed):
        cautioned = [sec.splitlines()[0] for sec in t.split("### ") if "**Caution:**" in sec]
        assert len(cautioned) == 1 and cautioned[0].startswith("ResNet track")
    assert "72.0 (+2.0, n.s.)" in per_seed  # the gap to gold, marked as not shown
    assert "72.0 (+2.0) |" in text  # the summary: neither different (no ≠) nor, with one seed, testable as equal
    m["models"]["original"]["acc_forget_gap_ci"] = [20.0, 40.0]  # now the interval excludes 0
    _write(results / "02_train_resnet/metrics.json", m)
    assert run_stage("07_report.py", ["--profile", "smoke", "--results", str(results)])[0] == 0
    assert "**Caution:**" not in (results / "report.md").read_text()


def test_report_on_the_resnet_track_only(run_stage, results):
    """TRACKS=resnet (make all / make audit): the ViT stages are neither missing nor shown."""
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(results), "--tracks", "resnet"])
    assert code == 0, err
    text = (results / "report.md").read_text()
    assert "03_train_vit_refs" not in text and "04_unlearn_vit**" not in text and "ViT track" not in text
    assert "**05_unlearn_gan** (ResNet unlearning) has no outputs" in text and "ResNet track" in text
    summary = pd.read_csv(results / "summary.csv")
    assert set(summary.track) == {"resnet"}
    agg = json.loads((results / "07_report/metrics.json").read_text())
    assert agg["missing_stages"] == ["05_unlearn_gan"]
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(results), "--tracks", "cnn"])
    assert code != 0 and "names no track" in err


def test_report_names_the_methods_a_track_leaves_out_and_why():
    """Stage 05's `not_applicable` (a method written for class-wise forgetting only) becomes a line of the track's
    settings list, with its reason; a track without one gets no such line."""
    from conftest import load_stage

    report = load_stage("07_report.py")
    m = {"05_unlearn_gan": dict(tuned={"finetune": dict(status="official", why="--settings official")},
                                not_applicable={"unsir": "class-wise only: its official code has no sample-wise variant"})}
    lines = report.settings_lines(m, "resnet")
    assert "- Not run on this track: unsir (class-wise only: its official code has no sample-wise variant)." in lines
    assert lines[-1] == "" and any(line.startswith("- finetune: official defaults") for line in lines)
    m["05_unlearn_gan"].pop("tuned")
    assert report.settings_lines(m, "resnet")[0].startswith("- Not run on this track: unsir")
    assert not any("Not run" in line for line in report.settings_lines({"04_unlearn_vit": {}}, "vit"))


def test_a_diverged_model_says_so_in_its_status():
    """Non-finite logits (stage 04 / 05 `diverged`): the status column names it, per seed and over seeds."""
    from conftest import load_stage

    report = load_stage("07_report.py")
    row = pd.Series(dict(over_budget=True, cut=False, diverged=True))
    assert report.status(row) == "over budget, diverged"
    per_seed = {s: pd.DataFrame([dict(over_budget=True, diverged=d)], index=["fisher"]) for s, d in (("1", True), ("2", False))}
    assert report.agg_status(per_seed, "fisher") == "over budget, diverged (1/2 seeds)"
