"""The data a method may train on is never data an evaluation scores: the Ctx that stage 05 hands to every
method holds train rows and stage 01's test_unseen rows only, never a test_val, test_eval or attack row."""
from __future__ import annotations

import sys

import torch

from conftest import load_stage


def test_methods_see_only_train_rows_and_test_unseen(run_stage, monkeypatch, tmp_path, kaggle_dir):
    res = tmp_path / "results"
    common = ["--profile", "smoke", "--results", str(res), "--device", "cpu"]
    assert run_stage("01_prepare_data.py", [*common, "--source", "kaggle", "--data-dir", str(kaggle_dir),
                                            "--cache-dir", str(tmp_path / "cache"), "--forget-size", "8"])[0] == 0
    assert run_stage("02_train_resnet.py", [*common, "--epochs", "1", "--batch-size", "16"])[0] == 0
    stage = load_stage("05_unlearn_gan.py")
    seen = {}

    def capture(names, registry, model, ctx, *args, **kwargs):
        seen["ctx"] = ctx
        raise SystemExit(0)  # stop before any method runs: only what the methods would get matters

    monkeypatch.setattr(stage, "run_methods", capture)
    monkeypatch.setattr(sys, "argv", ["05_unlearn_gan.py", *common])
    try:
        stage.main()
    except SystemExit:
        pass
    ctx = seen["ctx"]
    data = torch.load(res / "01_prepare_data/data.pt", weights_only=True)
    s = torch.load(res / "01_prepare_data/splits.pt", weights_only=True)
    # the held-out images a method gets are exactly the test_unseen rows ...
    assert torch.equal(ctx.unseen[0].cpu(), data["test_images"][s["test_unseen"]])
    assert torch.equal(ctx.unseen[1].cpu(), data["test_labels"][s["test_unseen"]])
    # ... which share no row with what is scored: test_val, test_eval and every attack non-member
    scored = set(s["test_val"].tolist()) | set(s["test_eval"].tolist())
    for k in ("mia_sample_nonmembers_attack", "mia_sample_nonmembers_eval", "mia_class_nonmembers_attack",
              "mia_class_nonmembers_eval"):
        scored |= set(s[k].tolist())
    assert not set(s["test_unseen"].tolist()) & scored
    # its train images are the train split, and its forget / retain rows are stage 01's sample-wise rows
    assert torch.equal(ctx.images.cpu(), data["train_images"])
    assert torch.equal(ctx.forget, s["sample_forget"]) and torch.equal(ctx.retain, s["sample_retain"])
