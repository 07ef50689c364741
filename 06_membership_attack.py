"""Stage 06 - membership-inference attacks on every target model whose cached logits exist (no forward passes).

Tracks and targets (a model is attacked when its logits file exists; the output says which were missing):
  resnet  original, gold (results/02_train_resnet/logits/) and every method in results/05_unlearn_gan/logits/;
          forget set = sample_forget (reference B's forget batch), membership sets mia_sample_*
  vit     original, gold (results/03_train_vit_refs/logits/) and every method in results/04_unlearn_vit/logits/;
          forget set = forget (the forgotten class), membership sets mia_class_*
Members are training rows the model saw (retain), non-members are test rows; stage 01 drew both balanced and cut
each into an attack-training half (*_attack) and a held-out half (*_eval). Attack labels: 1 = member.

Attacks per model (scores: higher = member):
  reference_b  reference B's attack: scikit-learn MLP 10 -> 64 -> 32 (ReLU), Adam lr 1e-3, batch 64, 10 epochs, on
               the RAW (unsorted) softmax vector. Fitted on the *_attack half; B itself split one balanced set 80/20.
  own          the project's own attack: a scikit-learn classifier (--classifier: hgb | logreg | rf) on sorted
               softmax probabilities + true-class probability (common.metrics.attack_features), fitted on *_attack.
  loss         loss threshold (Yeom et al., CSF 2018): score = -cross-entropy of the true label. Nothing fitted.
  calibrated   per-class calibrated confidence (Watson et al., ICLR 2022): log p(true class) minus its mean over
               the *_nonmembers_attack rows of that class (the only fitted part: one offset per class).
No unlearning method trains against loss or calibrated, so they also check methods that target an attack.
On the vit track the forget rows are one class that no membership row has: calibrated gives it the mean offset of
all classes, and its forget_auc compares different classes, so only the comparison with gold's value means much.
Figures of every attack: `auc` and TPR at 0.1 % / 1 % FPR on the held-out half (members_eval vs nonmembers_eval;
TPR = best TPR at FPR <= level, no interpolation), `forget_auc` = AUC of forget rows vs held-out non-members (for
a model that never saw the forget rows, about the non-member level; read it against gold's). The two fitted
classifiers add accuracy / precision / recall / F1 / FNR on train (the *_attack half), test (*_eval) and forget
(every forget row is a true member of original's training set, so FNR = share called non-member). 95 % percentile
bootstrap intervals (1000 resamples, members and non-members resampled separately, seed = --seed) for every AUC,
forget_auc, forget_fnr and for SalUn's MIA-efficacy (RBF SVC, C=3, gamma auto, on true-class confidence, retain
(attack half) = member vs test (attack half) = non-member; the share of forget rows it calls non-member; the SVC is
fitted once and only its forget predictions are resampled).
Avg Gap per model (stage 07's summary, computed here because only here are the per-row outcomes of all four
terms at hand): mean over the track's three accuracies and MIA-efficacy of |model - gold| in %, with a 95 %
paired bootstrap interval over rows: per term one set of resampled rows (1000, seed = --seed) shared by every model
and gold; MIA-efficacy's SVC stays fitted, only its calls on the forget rows are resampled.
The target of every figure is gold's value (a model that never saw the forget set), not 0 or 1: each non-gold
model carries `vs_gold` = {figure: {value, gold, gap = value - gold}}, and the printed tables put gold first.

Reads   results/01_prepare_data/{data.pt, splits.pt}, the logits caches above
Writes  results/06_membership_attack/
  metrics.json = {"resnet": {model: figures}, "vit": {model: figures}, "note": "..."}, figures =
    {"attack_train" | "attack_test" | "attack_forget": {accuracy, precision, recall, f1, fnr, n},  # own attack
     "auc", "tpr_at_1pct_fpr",          # own attack, held-out half (TPR interpolated, common.metrics.roc_summary)
     "mia_efficacy", "mia_efficacy_ci": [low, high],
     "attacks": {"reference_b" | "own": {"{train,test,forget}_{accuracy,precision,recall,f1,fnr}", "forget_fnr_ci",
                                         "auc", "auc_ci", "forget_auc", "forget_auc_ci",
                                         "tpr_at_0.1pct_fpr", "tpr_at_1pct_fpr"},
                 "loss" | "calibrated": {"auc", "auc_ci", "forget_auc", "forget_auc_ci",
                                         "tpr_at_0.1pct_fpr", "tpr_at_1pct_fpr"}},
     "avg_gap", "avg_gap_ci": [low, high] (%, when gold was attacked),
     "logits": path, "vs_gold": {...} (non-gold models)}
    A model with non-finite logits gets {"diverged": true, "logits": path} only.
  roc.json = {track: {model: {attack: {"fpr": [...], "tpr": [...]}}}} (held-out half; thinned on a log-spaced FPR
    grid down to the smallest non-zero FPR, for log-log axes), manifest.json, log.jsonl
  avg_gap_boot.json = {"n_boot", "seed", "terms": {track: [...]}, "replicates": {track: {model: [n_boot Avg Gaps]}}}
    (paired across models: stage 07's pairwise tests and rank intervals with one seed)
Run
  python 06_membership_attack.py
  python 06_membership_attack.py --profile smoke --results results-smoke/results --device cpu
  python 06_membership_attack.py --classifier logreg
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.config import AttackConfig, config_dict, parse_config, print_config, resolve_runtime
from common.data import PREPARE_STAGE, load_prepared, stage_dir
from common.io import PipelineError, run_main, save_json, write_manifest
from common.log import RunLog
from common.metrics import (GAP_ROWS, attack_features, auc_ci, binary_metrics, calibrated_scores, finite, group_auc,
                            load_logits, mean_ci, mia_efficacy_svc, roc_points_log, roc_summary, softmax_features,
                            tpr_at_fpr, track_train_rows, true_class_confidence, true_class_log_prob)
from common.stats import avg_gap_point, avg_gap_replicates, percentile_interval, resample_indices
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
ATTACKS = ("reference_b", "own", "loss", "calibrated")
FITTED = ("reference_b", "own")  # attacks with a member / non-member classifier (binary figures, forget FNR)
PARTS = ("train", "test", "forget")
BINARY = ("accuracy", "precision", "recall", "f1", "fnr")
N_BOOT = 1000  # bootstrap resamples per 95 % interval


def reference_b_mlp(seed: int) -> MLPClassifier:
    """Reference B's attack model. alpha=0: B's loss is plain cross-entropy (sklearn's default adds L2 1e-4)."""
    return MLPClassifier(hidden_layer_sizes=(64, 32), activation="relu", solver="adam", learning_rate_init=1e-3,
                         batch_size=64, max_iter=10, alpha=0.0, random_state=seed)


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


def score_figures(s: dict, seed: int) -> tuple[dict, dict]:
    """Threshold-free figures of one attack's per-row member scores s = {row set: scores}, and its held-out ROC."""
    pos, neg, forget = s["members_eval"], s["nonmembers_eval"], s["forget"]
    y, scores = np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]
    tpr01, tpr1 = tpr_at_fpr(y, scores, (0.001, 0.01))
    return ({"auc": group_auc(pos, neg), "auc_ci": list(auc_ci(pos, neg, N_BOOT, seed)),
             "forget_auc": group_auc(forget, neg), "forget_auc_ci": list(auc_ci(forget, neg, N_BOOT, seed)),
             "tpr_at_0.1pct_fpr": tpr01, "tpr_at_1pct_fpr": tpr1},
            roc_points_log(y, scores))


def fit_classifier(clf, x: dict) -> tuple[dict, dict]:
    """Fit clf on x["members_attack"] (1) vs x["nonmembers_attack"] (0) features; returns
    ({part: (true, predicted membership)} for train / test / forget, {row set: P(member)})."""
    def xy(half):
        m, n = x[f"members_{half}"], x[f"nonmembers_{half}"]
        return np.concatenate([m, n]), np.r_[np.ones(len(m)), np.zeros(len(n))]

    sets = {"train": xy("attack"), "test": xy("eval"), "forget": (x["forget"], np.ones(len(x["forget"])))}
    clf.fit(*sets["train"])
    predicted = {part: (y, clf.predict(v)) for part, (v, y) in sets.items()}
    return predicted, {k: clf.predict_proba(v)[:, 1] for k, v in x.items()}


def fit_attack(logits: dict, data: dict, splits: dict, track: str, cfg: AttackConfig) -> tuple[dict, dict]:
    """Every attack + SalUn's MIA-efficacy for one target model; returns (figures, {attack: held-out ROC points})."""
    ytr, yte = data["train_labels"], data["test_labels"]
    mia, cap = TRACKS[track]["mia"], (cfg.max_per_group or None)
    forget = splits[TRACKS[track]["forget"]]

    def rows(feature) -> dict:  # {row set: feature(logits, labels)}; members and forget rows are training rows
        out = {"forget": feature(logits["train"][forget], ytr[forget])}
        for half in ("attack", "eval"):
            m, n = splits[f"{mia}_members_{half}"][:cap], splits[f"{mia}_nonmembers_{half}"][:cap]
            out[f"members_{half}"] = feature(logits["train"][m], ytr[m])
            out[f"nonmembers_{half}"] = feature(logits["test"][n], yte[n])
        return out

    ref = splits[f"{mia}_nonmembers_attack"][:cap]  # calibration rows: attack-training non-members only
    scores, predicted = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 10 epochs is reference B's setting, not a mistake
        predicted["reference_b"], scores["reference_b"] = fit_classifier(
            reference_b_mlp(cfg.seed), rows(lambda z, y: softmax_features(z)))
    predicted["own"], scores["own"] = fit_classifier(CLASSIFIERS[cfg.classifier](cfg.seed), rows(attack_features))
    binary = {name: {part: binary_metrics(*yp) for part, yp in p.items()} for name, p in predicted.items()}
    scores["loss"] = rows(true_class_log_prob)
    scores["calibrated"] = rows(lambda z, y: calibrated_scores(z, y, logits["test"][ref], yte[ref]))

    attacks, roc = {}, {}
    for name in ATTACKS:
        attacks[name], roc[name] = score_figures(scores[name], cfg.seed)
        if name in FITTED:
            attacks[name].update({f"{part}_{k}": binary[name][part][k] for part in PARTS for k in BINARY})
            called_out = 1.0 - predicted[name]["forget"][1]  # 1 = forget row called non-member
            attacks[name]["forget_fnr_ci"] = list(mean_ci(called_out, N_BOOT, cfg.seed))

    # the project's own attack under its original keys (stage 07 reads them)
    out = {f"attack_{part}": binary["own"][part] for part in PARTS}
    own = scores["own"]
    held_out = roc_summary(np.r_[np.ones(len(own["members_eval"])), np.zeros(len(own["nonmembers_eval"]))],
                           np.r_[own["members_eval"], own["nonmembers_eval"]])
    out["auc"], out["tpr_at_1pct_fpr"] = held_out["auc"], held_out["tpr_at_1pct_fpr"]
    m = splits[f"{mia}_members_attack"][:cap]
    svc = mia_efficacy_svc(true_class_confidence(logits["train"][m], ytr[m]),
                           true_class_confidence(logits["test"][ref], yte[ref]))
    called_member = svc.predict(true_class_confidence(logits["train"][forget], ytr[forget]).reshape(-1, 1))
    out["mia_efficacy"] = float(1.0 - called_member.mean())  # = common.metrics.mia_efficacy, SVC fitted once
    out["mia_efficacy_ci"] = list(mean_ci(1.0 - called_member, N_BOOT, cfg.seed))
    out["attacks"] = attacks
    out["_called_nonmember"] = 1.0 - called_member  # per forget row, for the Avg Gap bootstrap (not saved)
    return out, roc


def gap_rows(track: str, logits: dict, data: dict, splits: dict, called_nonmember: np.ndarray) -> dict:
    """{term: per-row 0/1 outcome} of Avg Gap's terms: correct on each accuracy term's rows (GAP_ROWS), called
    non-member by MIA-efficacy's fitted SVC on the forget rows."""
    out = {}
    for key, (part, split) in GAP_ROWS[track].items():
        rows = splits[split]
        out[key] = (logits[part][rows].argmax(1) == data[f"{part}_labels"][rows]).double().numpy()
    out["attack_mia_efficacy"] = np.asarray(called_nonmember, float)
    return out


def avg_gap_boot(rows: dict, seed: int) -> tuple[dict, dict]:
    """Per model (gold among them): Avg Gap (%), its 95 % interval and its N_BOOT paired replicates: one set of
    resampled row indices per term, shared by every model and gold (common.stats.avg_gap_replicates)."""
    gold = rows["gold"]
    idx = resample_indices({t: len(v) for t, v in gold.items()}, N_BOOT, seed)
    figures, replicates = {}, {}
    for model, r in rows.items():
        rep = avg_gap_replicates(r, gold, idx)
        figures[model] = {"avg_gap": avg_gap_point(r, gold), "avg_gap_ci": list(percentile_interval(rep))}
        replicates[model] = np.round(rep, 4).tolist()
    return figures, replicates


def figure_rows(fig: dict) -> dict[str, tuple[float, list | None]]:
    """{"forget fnr": (value, ci or None), ...}: every scalar figure of one model under a readable name."""
    out = {f"{part} {k}": (fig[f"attack_{part}"][k], None) for part in PARTS for k in BINARY}
    out.update({"test auc": (fig["auc"], None), "test tpr@1%fpr": (fig["tpr_at_1pct_fpr"], None),
                "mia_efficacy": (fig["mia_efficacy"], fig.get("mia_efficacy_ci"))})
    for name, a in fig.get("attacks", {}).items():
        for key in ("auc", "forget_auc", "forget_fnr"):
            if key in a:
                out[f"{name} {key.replace('_', ' ')}"] = (a[key], a.get(f"{key}_ci"))
    return out


def flat(fig: dict) -> dict:
    """{"forget fnr": ..., "test auc": ...}: every scalar figure of one model under a readable name."""
    return {k: v for k, (v, _) in figure_rows(fig).items()}


def vs_gold(fig: dict, gold: dict) -> dict:
    a, g = flat(fig), flat(gold)
    return {k: {"value": a[k], "gold": g[k], "gap": a[k] - g[k]} for k in a}


def table(track: str, figs: dict) -> str:
    """Figures as rows, models as columns, gold's column first (the target); 95 % intervals in brackets."""
    names = sorted(figs, key=lambda m: m != "gold")
    rows_of = {m: figure_rows(figs[m]) for m in names}

    def cell(value, ci):
        return f"{value:.3f}" + (f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci else "")

    lines = [f"{'figure':24s}" + "".join(f"{('gold (target)' if m == 'gold' else m):>22s}" for m in names)]
    for key in rows_of[names[0]]:
        lines.append(f"{key:24s}" + "".join(f"{cell(*rows_of[m][key]):>22s}" for m in names))
    return f"[{STAGE}] {track} track (1 = member; target for every model = gold's value)\n" + "\n".join(lines)


def check_logits(logits: dict, data: dict, path: Path) -> None:
    if len(logits["train"]) != len(data["train_labels"]) or len(logits["test"]) != len(data["test_labels"]):
        raise PipelineError(f"{path} does not match stage 01's data (stale?): re-run the stage that wrote it")


def main() -> None:
    cfg = parse_config(AttackConfig)
    print_config(STAGE, cfg)
    if cfg.classifier not in CLASSIFIERS:
        raise PipelineError(f"unknown classifier {cfg.classifier!r}: use one of {', '.join(CLASSIFIERS)}")
    device = resolve_runtime(cfg)
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

    metrics, roc, notes, inputs, boot = {}, {}, [], [], {}
    for track, (found, missing) in targets.items():
        if missing:
            notes.append(f"{track}: no logits in {', '.join(missing)} (those stages have not run)")
        metrics[track], roc[track], rows = {}, {}, {}
        for model, path in found.items():
            logits = load_logits(path)
            check_logits(logits, data, path)
            inputs.append(path)
            if not finite(logits, track_train_rows(track, splits)):  # diverged: no attack is meaningful
                metrics[track][model] = {"diverged": True, "logits": str(path)}
                notes.append(f"{track}: {model} has non-finite logits (diverged), not attacked")
                continue
            metrics[track][model], roc[track][model] = fit_attack(logits, data, splits, track, cfg)
            metrics[track][model]["logits"] = str(path)
            rows[model] = gap_rows(track, logits, data, splits, metrics[track][model].pop("_called_nonmember"))
        if "gold" in rows:  # Avg Gap with its paired row-bootstrap interval (stage 07's tests read the replicates)
            figures, boot[track] = avg_gap_boot(rows, cfg.seed)
            for model, f in figures.items():
                metrics[track][model].update(f)
        attacked = {m: f for m, f in metrics[track].items() if not f.get("diverged")}
        if attacked and "gold" not in attacked:
            notes.append(f"{track}: no gold figures, so no gold targets")
        if "gold" in attacked:
            for model, fig in attacked.items():
                if model != "gold":
                    fig["vs_gold"] = vs_gold(fig, attacked["gold"])
        if attacked:
            print(table(track, attacked))
            for model, fig in attacked.items():
                log.log("attack", echo=False, track=track, model=model, **flat(fig))

    metrics["note"] = ("Attack labels: 1 = member. The target for every figure of an unlearned model is gold's value "
                       "(gold never saw the forget set), not 0 or 1. [low, high] = 95 % bootstrap interval. "
                       + " ".join(notes)).strip()
    print(f"[{STAGE}] note: {metrics['note']}")
    save_json(roc, out / "roc.json")
    save_json({"n_boot": N_BOOT, "seed": cfg.seed, "terms": {t: [*GAP_ROWS[t], "attack_mia_efficacy"] for t in boot},
               "replicates": boot}, out / "avg_gap_boot.json")
    d01 = stage_dir(cfg.results, PREPARE_STAGE)
    write_manifest(out, config_dict(cfg), device, started, [d01 / "data.pt", d01 / "splits.pt", *inputs],
                   [out / "roc.json", out / "avg_gap_boot.json"])
    log.close()
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
