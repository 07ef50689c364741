"""Stage 06 - membership-inference attacks on every target model whose cached logits exist (no forward passes).

Tracks and targets (a model is attacked when its logits file exists; the output says which were missing):
  resnet  original, gold (results/02_train_resnet/logits/), gan_unlearned (results/05_unlearn_gan/logits/);
          forget set = sample_forget (reference B's forget batch), membership sets mia_sample_*
  vit     original, gold (results/03_train_vit_refs/logits/) and every method in results/04_unlearn_vit/logits/;
          forget set = forget (the forgotten class), membership sets mia_class_*
Members are training rows the model saw (retain), non-members are test rows; stage 01 drew both balanced and cut
each into an attack-training half (*_attack) and a held-out half (*_eval).

Per model:
  - reference B's attack: a scikit-learn classifier (--classifier: hgb | logreg | rf) on attack features = sorted
    softmax probabilities + true-class probability (common.metrics.attack_features), fitted on the *_attack half
    (member = 1). Accuracy, precision, recall, F1 and FNR on `train` (the attack half it was fitted on), `test`
    (the held-out half) and `forget` (every forget row is a true member of original's training set, so there
    FNR = share of forget rows the attack calls non-member, accuracy = recall = 1 - FNR);
  - threshold-free: ROC AUC and TPR at 1 % FPR of the attack's member probability on the held-out half;
  - SalUn's MIA-efficacy: RBF SVC (C=3, gamma auto) on true-class confidence, retain (attack half) = member vs
    test (attack half) = non-member; the share of forget rows it predicts non-member.
The target of every figure is gold's value (a model that never saw the forget set), not 0 or 1: each non-gold
model carries `vs_gold` = {figure: {value, gold, gap = value - gold}}, and the printed tables put gold beside it.

Reads   results/01_prepare_data/{data.pt, splits.pt}, the logits caches above
Writes  results/06_membership_attack/metrics.json = {"resnet": {model: {...}}, "vit": {...}, "note": "..."},
        roc.json = {track: {model: {"fpr": [...], "tpr": [...]}}} (held-out half), manifest.json, log.jsonl
Run
  python 06_membership_attack.py
  python 06_membership_attack.py --profile smoke --results results-smoke/results --device cpu
  python 06_membership_attack.py --classifier logreg
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.config import AttackConfig, config_dict, parse_config, print_config, resolve_device
from common.data import PREPARE_STAGE, load_prepared, stage_dir
from common.io import PipelineError, run_main, save_json, write_manifest
from common.log import RunLog
from common.metrics import (attack_features, binary_metrics, load_logits, mia_efficacy, roc_summary,
                            true_class_confidence)
from common.seed import set_seed

STAGE = "06_membership_attack"
# track -> forget split, membership-set prefix, stages whose logits/ folders hold its targets (in display order)
TRACKS = {
    "resnet": dict(forget="sample_forget", mia="mia_sample", stages=("02_train_resnet", "05_unlearn_gan")),
    "vit": dict(forget="forget", mia="mia_class", stages=("03_train_vit_refs", "04_unlearn_vit")),
}
CLASSIFIERS = {
    "hgb": lambda seed: HistGradientBoostingClassifier(early_stopping=True, validation_fraction=0.2, random_state=seed),
    "logreg": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "rf": lambda seed: RandomForestClassifier(n_estimators=200, min_samples_leaf=5, random_state=seed),
}
PARTS = ("train", "test", "forget")
BINARY = ("accuracy", "precision", "recall", "f1", "fnr")


def find_targets(results, track: str) -> tuple[dict[str, Path], list[str]]:
    """{model: logits path} of a track (original, gold first) and the stages whose logits are missing."""
    found, missing = {}, []
    for stage in TRACKS[track]["stages"]:
        files = sorted(stage_dir(results, stage).glob("logits/*.pt"))
        if not files:
            missing.append(stage)
        for f in sorted(files, key=lambda f: ({"original": 0, "gold": 1}.get(f.stem, 2), f.stem)):
            found[f.stem] = f
    return found, missing


def fit_attack(logits: dict, data: dict, splits: dict, track: str, cfg: AttackConfig) -> tuple[dict, dict]:
    """Reference B's attack + ROC + SalUn's MIA-efficacy for one target model; returns (figures, roc points)."""
    ytr, yte = data["train_labels"], data["test_labels"]
    mia, cap = TRACKS[track]["mia"], (cfg.max_per_group or None)

    def member_set(half):  # (features, member labels) of one half: train rows = 1, test rows = 0
        m, n = splits[f"{mia}_members_{half}"][:cap], splits[f"{mia}_nonmembers_{half}"][:cap]
        x = np.concatenate([attack_features(logits["train"][m], ytr[m]), attack_features(logits["test"][n], yte[n])])
        return x, np.concatenate([np.ones(len(m)), np.zeros(len(n))])

    forget = splits[TRACKS[track]["forget"]]
    sets = {"train": member_set("attack"), "test": member_set("eval"),
            "forget": (attack_features(logits["train"][forget], ytr[forget]), np.ones(len(forget)))}
    clf = CLASSIFIERS[cfg.classifier](cfg.seed).fit(*sets["train"])
    out = {f"attack_{part}": binary_metrics(y, clf.predict(x)) for part, (x, y) in sets.items()}
    roc = roc_summary(sets["test"][1], clf.predict_proba(sets["test"][0])[:, 1])
    out["auc"], out["tpr_at_1pct_fpr"] = roc["auc"], roc["tpr_at_1pct_fpr"]
    m, n = splits[f"{mia}_members_attack"][:cap], splits[f"{mia}_nonmembers_attack"][:cap]
    out["mia_efficacy"] = mia_efficacy(true_class_confidence(logits["train"][m], ytr[m]),
                                       true_class_confidence(logits["test"][n], yte[n]),
                                       true_class_confidence(logits["train"][forget], ytr[forget]))
    return out, {"fpr": roc["roc_fpr"], "tpr": roc["roc_tpr"]}


def flat(fig: dict) -> dict:
    """{"forget fnr": ..., "test auc": ...}: every scalar figure of one model under a readable name."""
    out = {f"{part} {k}": fig[f"attack_{part}"][k] for part in PARTS for k in BINARY}
    out.update({"test auc": fig["auc"], "test tpr@1%fpr": fig["tpr_at_1pct_fpr"], "mia_efficacy": fig["mia_efficacy"]})
    return out


def vs_gold(fig: dict, gold: dict) -> dict:
    a, g = flat(fig), flat(gold)
    return {k: {"value": a[k], "gold": g[k], "gap": a[k] - g[k]} for k in a}


def table(track: str, figs: dict) -> str:
    """Figures as rows, models as columns, gold's column first after the figure name (the target)."""
    names = sorted(figs, key=lambda m: m != "gold")
    rows = [f"{'figure':16s}" + "".join(f"{('gold (target)' if m == 'gold' else m):>16s}" for m in names)]
    flats = {m: flat(figs[m]) for m in names}
    for key in flats[names[0]]:
        rows.append(f"{key:16s}" + "".join(f"{flats[m][key]:16.3f}" for m in names))
    return f"[{STAGE}] {track} track (1 = member; target for every model = gold's value)\n" + "\n".join(rows)


def check_logits(logits: dict, data: dict, path: Path) -> None:
    if len(logits["train"]) != len(data["train_labels"]) or len(logits["test"]) != len(data["test_labels"]):
        raise PipelineError(f"{path} does not match stage 01's data (stale?): re-run the stage that wrote it")


def main() -> None:
    cfg = parse_config(AttackConfig)
    print_config(STAGE, cfg)
    if cfg.classifier not in CLASSIFIERS:
        raise PipelineError(f"unknown classifier {cfg.classifier!r}: use one of {', '.join(CLASSIFIERS)}")
    device = resolve_device(cfg.device)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    targets = {track: find_targets(cfg.results, track) for track in TRACKS}
    if not any(found for found, _ in targets.values()):
        raise PipelineError(f"no cached logits under {cfg.results}/02_train_resnet/logits or 03_train_vit_refs/logits: "
                            "run 02_train_resnet.py (and 05, or 03/04) first")
    empty = [k for k in splits if k.startswith("mia_") and len(splits[k]) == 0]
    if empty:
        raise PipelineError(f"empty membership set(s) {empty}: re-run 01 with more data per class")
    out = stage_dir(cfg.results, STAGE)
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    set_seed(cfg.seed)

    metrics, roc, notes, inputs = {}, {}, [], []
    for track, (found, missing) in targets.items():
        if missing:
            notes.append(f"{track}: no logits in {', '.join(missing)} (those stages have not run)")
        metrics[track], roc[track] = {}, {}
        for model, path in found.items():
            logits = load_logits(path)
            check_logits(logits, data, path)
            metrics[track][model], roc[track][model] = fit_attack(logits, data, splits, track, cfg)
            metrics[track][model]["logits"] = str(path)
            inputs.append(path)
        if metrics[track] and "gold" not in metrics[track]:
            notes.append(f"{track}: no gold logits, so no gold targets")
        if "gold" in metrics[track]:
            for model, fig in metrics[track].items():
                if model != "gold":
                    fig["vs_gold"] = vs_gold(fig, metrics[track]["gold"])
        if metrics[track]:
            print(table(track, metrics[track]))
            for model, fig in metrics[track].items():
                log.log("attack", echo=False, track=track, model=model, **flat(fig))

    metrics["note"] = ("Attack labels: 1 = member. The target for every figure of an unlearned model is gold's value "
                       "(gold never saw the forget set), not 0 or 1. " + " ".join(notes)).strip()
    print(f"[{STAGE}] note: {metrics['note']}")
    save_json(roc, out / "roc.json")
    d01 = stage_dir(cfg.results, PREPARE_STAGE)
    write_manifest(out, config_dict(cfg), device, started, [d01 / "data.pt", d01 / "splits.pt", *inputs],
                   [out / "roc.json"])
    log.close()
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
