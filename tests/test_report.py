"""Stage 07 on hand-made metrics files: every model listed with its gap to gold, Avg Gap and RTE computed as
documented, missing stages named with their command, summary.csv one row per (track, model)."""
from __future__ import annotations

import json

import pandas as pd
import pytest


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _vit(forget, retain, test_retain, seconds):
    return dict(acc_forget_train=forget, acc_retain_train=retain, acc_test_forget=forget, acc_test_retain=test_retain,
                acc_test=test_retain, entropy_test_forget=1.0, jsd_gold_test_forget=0.1, jsd_gold_test_retain=0.05,
                seconds=seconds)


@pytest.fixture
def results(tmp_path):
    r = tmp_path / "results"
    _write(r / "01_prepare_data/metrics.json", dict(source="kaggle", n_train=100, n_test=20, forget_class=0,
                                                    forget_class_name="airplane", split_sizes={"sample_forget": 8}))
    _write(r / "04_unlearn_vit/metrics.json", dict(pretrained=False, img_size=32, models=dict(
        original=_vit(90, 90, 80, 100), gold=_vit(0, 92, 82, 80), finetune=_vit(10, 91, 81, 40))))
    _write(r / "02_train_resnet/metrics.json", dict(models=dict(
        original=dict(acc_forget=100, acc_retain=95, acc_test=70, seconds=50,
                      history=[dict(epoch=1, val_acc=60), dict(epoch=2, val_acc=70)]),
        gold=dict(acc_forget=70, acc_retain=95, acc_test=70, seconds=40, history=[dict(epoch=1, val_acc=61)]))))
    _write(r / "06_membership_attack/metrics.json", dict(
        vit=dict(original=dict(mia_efficacy=0.1, auc=0.6), gold=dict(mia_efficacy=0.9, auc=0.5),
                 finetune=dict(mia_efficacy=0.7, auc=0.55, attack_forget=dict(fnr=0.25, n=10), logits="x.pt",
                               vs_gold={"mia_efficacy": dict(value=0.7, gold=0.9, gap=-0.2)})),
        resnet=dict(original=dict(mia_efficacy=0.2), gold=dict(mia_efficacy=0.4))))
    _write(r / "06_membership_attack/roc.json", dict(vit=dict(gold=dict(loss=dict(fpr=[0, 0.01, 1], tpr=[0, 0.02, 1])))))
    return r


def test_report_lists_every_model_with_gaps(run_stage, results):
    code, err = run_stage("07_report.py", ["--profile", "smoke", "--results", str(results)])
    assert code == 0, err
    text = (results / "report.md").read_text()
    for model in ("original", "gold", "finetune"):
        assert f"| {model} |" in text
    assert "randomly initialised" in text
    assert "10.0 (+10.0)" in text  # finetune's forget accuracy beside its gap to gold
    # the missing stages get one line each, naming the command; the rest still renders
    for stage in ("03_train_vit_refs", "05_unlearn_gan"):
        assert f"**{stage}**" in text and f"make {results}/{stage}/metrics.json" in text
    assert "02_train_resnet**" not in text
    summary = pd.read_csv(results / "summary.csv")
    assert sorted(zip(summary.track, summary.model)) == sorted(
        [("vit", "original"), ("vit", "gold"), ("vit", "finetune"), ("resnet", "original"), ("resnet", "gold")])
    ft = summary[(summary.track == "vit") & (summary.model == "finetune")].iloc[0]
    # Avg Gap = mean(|10-0|, |91-92|, |81-82|, 100*|0.7-0.9|) = (10 + 1 + 1 + 20) / 4
    assert ft.avg_gap == pytest.approx(8.0)
    assert ft.rte_pct_of_gold == pytest.approx(50.0)
    assert ft.attack_forget_fnr == 0.25 and ft.attack_mia_efficacy == 0.7
    assert not [c for c in summary.columns if "vs_gold" in c]
    orig = summary[(summary.track == "resnet") & (summary.model == "original")].iloc[0]
    assert orig.avg_gap == pytest.approx((30 + 0 + 0 + 20) / 4)
    for fig in ("accuracy.png", "vit_js_entropy.png", "roc.png", "training_curves.png", "gap_vs_rte.png"):
        assert (results / "07_report" / fig).is_file() and f"07_report/{fig}" in text
    assert json.loads((results / "07_report/metrics.json").read_text())["missing_stages"] == [
        "03_train_vit_refs", "05_unlearn_gan"]


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
    # the ResNet track only: once in the summary, once in the seed's own section, each under a ResNet heading
    sections = text.split("### ")
    cautioned = [sec.splitlines()[0] for sec in sections if "**Caution:**" in sec]
    assert len(cautioned) == 2 and all(h.startswith("ResNet track") for h in cautioned)
    assert "72.0 (+2.0, n.s.)" in text  # the gap to gold, marked as not significant
    m["models"]["original"]["acc_forget_gap_ci"] = [20.0, 40.0]  # now the interval excludes 0
    _write(results / "02_train_resnet/metrics.json", m)
    assert run_stage("07_report.py", ["--profile", "smoke", "--results", str(results)])[0] == 0
    assert "**Caution:**" not in (results / "report.md").read_text()
