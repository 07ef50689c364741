"""Stage 07's per-example audit (`make audit K=8`): K seed trees of the sample-wise (ResNet) track on one split, read
from their cached logits (no forward pass), scored by common.audit, rendered as the report's audit section.

Design, named honestly: a fixed-forget-set, K-seed audit in the NeurIPS 2023 unlearning challenge's style. Tree k
holds original_k, gold_k (retrained without the forget rows, seed k) and every method run on original_k. For each
model ("method") the K unlearned models are compared with the K golds on the same forget rows:
  - Gaussian test per example (U-LiRA-style, leave-one-seed-out; pooled variance when K < 16), with a permutation
    floor and p-value from within-tree swaps (tree k's model and gold_k trade labels: the only exchangeable pairs),
    Holm over the methods; "caught" only at a K where the swaps can reach Holm's level (K >= 10 for 13 methods),
    below it the effect sizes alone;
  - the challenge's forget score at N = K and its final score (x RA_u / RA_r x TA_u / TA_r), coarse below N = 16;
  - offline RMIA with the other trees' golds as OUT references and test_eval as the population.
Control: as many retain rows (a fixed sample of sample_retain, the same in every tree), Gaussian test only (the golds
trained on them, so they cannot be RMIA's OUT references there). Calibration rows: `original` (must be caught) and
`gold_2` (gold's recipe at seed + 10000: another gold, must not be). A deterministic method (SSD) gets its spread
from the K originals it starts from. This is not Hayes et al.'s random-half shadow U-LiRA (hundreds of shadows).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import audit as A
from common.io import PipelineError, load_torch
from common.stats import holm
from common.verdict import yes  # a mark that is set: True (None = not tested, False = not caught)

CALIBRATION = {"original": "the original, not unlearned: must be caught",
               "gold_2": "a gold of another seed (seed + 10000): must not be caught"}
PREP, REFS, UNLEARN = "01_prepare_data", "02_train_resnet", "05_unlearn_gan"
SAME_ROWS = ("sample_forget", "sample_retain", "test_eval")  # must be identical in every tree
CONTROL_SEED = 0  # the retain control rows: a fixed sample of sample_retain
ALPHA = 0.05


def load(trees: dict[str, Path]) -> dict:
    """Per model, [K, n] statistics over the K trees: logit-scaled confidence on the forget and control rows, true-class
    probability on forget and population (test_eval) rows, retain and test accuracy (%). One-line errors for a tree
    that lacks a stage, or trees whose splits differ."""
    if len(trees) < 3:
        raise PipelineError(f"the audit needs at least 3 seed trees of one split, got {len(trees)}: run make audit K=8")
    first, per_tree = None, []
    for tid, path in trees.items():
        splits = load_torch(path / PREP / "splits.pt", f"tree {tid}: index splits", "make audit")
        data = load_torch(path / PREP / "data.pt", f"tree {tid}: prepared data", "make audit")
        labels = {"train": data["train_labels"], "test": data["test_labels"]}
        if first is None:
            first = dict(splits=splits, labels=labels)
        for key in SAME_ROWS:
            if not torch.equal(splits[key], first["splits"][key]):
                raise PipelineError(f"tree {tid} has other {key} rows than tree {next(iter(trees))}: the audit needs one "
                                    "split (same SPLIT_SEED and FORGET_CLASS) in every tree")
        if not all(torch.equal(labels[p], first["labels"][p]) for p in labels):
            raise PipelineError(f"tree {tid} has other labels than tree {next(iter(trees))}: prepare every tree from the "
                                "same data (DATA_SOURCE, DATA_DIR)")
        files = {m: path / REFS / "logits" / f"{m}.pt" for m in ("original", "gold", "gold_2")}
        files.update({p.stem: p for p in sorted((path / UNLEARN / "logits").glob("*.pt"))})
        for m in ("original", "gold", "gold_2"):
            if not files[m].is_file():
                raise PipelineError(f"tree {tid}: {files[m]} is missing: run make audit (stage 02 with NOISE_GOLD)")
        if len(files) == 3:
            raise PipelineError(f"tree {tid}: no logits in {path / UNLEARN / 'logits'}: run make audit (stage 05)")
        per_tree.append(files)
    s, lab = first["splits"], first["labels"]
    forget, test = s["sample_forget"], s["test_eval"]
    control = s["sample_retain"][torch.randperm(len(s["sample_retain"]),
                                                generator=torch.Generator().manual_seed(CONTROL_SEED))[:len(forget)]]
    models = [m for m in per_tree[0] if all(m in f for f in per_tree)]
    out, diverged = {}, []
    for m in models:
        rows = []
        for files in per_tree:
            z = load_torch(files[m], f"logits of {m}", "make audit")
            tr, te = z["train"], z["test"]
            rows.append(dict(forget=A.logit_conf(tr[forget], lab["train"][forget]),
                             control=A.logit_conf(tr[control], lab["train"][control]),
                             forget_p=A.true_class_prob(tr[forget], lab["train"][forget]),
                             test_p=A.true_class_prob(te[test], lab["test"][test]),
                             acc_retain=100 * float((tr[s["sample_retain"]].argmax(1) == lab["train"][s["sample_retain"]])
                                                    .double().mean()),
                             acc_test=100 * float((te[test].argmax(1) == lab["test"][test]).double().mean())))
        stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        if all(np.isfinite(v).all() for v in stacked.values()) or m in ("original", "gold", "gold_2"):
            out[m] = stacked
        else:  # non-finite logits in some tree (stage 05's "diverged"): no per-example figure exists
            diverged.append(m)
    missing = sorted({m for f in per_tree for m in f} - set(models))
    return dict(models=out, trees=list(trees), forget=forget.numpy(), control=control.numpy(), missing=missing,
                diverged=diverged)


def run(inputs: dict, n_boot: int, n_perm: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per model (calibration rows first): every figure with its 95 % interval over forget examples, the
    within-tree-swap null and p (Holm over the methods; caught only where K can reach it), the control, the challenge's scores, RMIA. Also the per-example
    frame (model, row, AUC, accuracy, epsilon, the original-vs-gold gap of that row)."""
    mods, gold = inputs["models"], inputs["models"]["gold"]
    k = len(inputs["trees"])
    gap = (mods["original"]["forget"] - gold["forget"]).mean(0)  # per example: how much the original knew it
    rows, examples = [], []
    for m in [*CALIBRATION, *(x for x in mods if x not in ("gold", *CALIBRATION))]:
        u = mods[m]
        ga = A.gaussian_audit(u["forget"], gold["forget"])
        ci = A.column_bootstrap(ga, n_boot, seed)
        floor = A.permutation_floor(u["forget"], gold["forget"], n_perm, seed, ga["mean_auc"])
        gc = A.gaussian_audit(u["control"], gold["control"])
        cci = A.column_bootstrap(gc, n_boot, seed)
        cfloor = A.permutation_floor(u["control"], gold["control"], n_perm, seed, gc["mean_auc"])
        fs, eps = A.forget_score(u["forget"], gold["forget"])
        pts = A.forget_points(eps, k)
        rng = np.random.default_rng(seed)
        fs_reps = [pts[rng.integers(0, len(pts), len(pts))].mean() for _ in range(n_boot)]
        ra, ta = (u["acc_retain"].mean(), gold["acc_retain"].mean()), (u["acc_test"].mean(), gold["acc_test"].mean())
        rm = A.rmia_audit(u["forget_p"], gold["forget_p"], u["test_p"], gold["test_p"])
        rci = A.pooled_bootstrap(rm["scores_unlearned"], rm["scores_gold"], n_boot, seed)
        row = dict(model=m, kind="calibration" if m in CALIBRATION else "method", K=k, n_forget=ga["auc"].size,
                   pooled_variance=ga["pooled"])
        for key in ("mean_auc", "mean_accuracy", "share_auc_ge_0_9", "tpr_at_1pct_fpr"):
            row.update({key: ga[key], f"{key}_ci_lo": ci[key][0], f"{key}_ci_hi": ci[key][1]})
        row.update(floor_mean_auc=floor["mean"], floor_q95=floor["q95"], perm_p=floor["p"], perm_p_min=floor["p_min"],
                   perm_exact=floor["exact"], perm_n=floor["n"])
        for key in ("mean_auc", "share_auc_ge_0_9"):
            row.update({f"retain_{key}": gc[key], f"retain_{key}_ci_lo": cci[key][0], f"retain_{key}_ci_hi": cci[key][1]})
        row.update(retain_floor_mean_auc=cfloor["mean"], retain_perm_p=cfloor["p"],
                   forget_score=fs, forget_score_ci_lo=float(np.percentile(fs_reps, 2.5)),
                   forget_score_ci_hi=float(np.percentile(fs_reps, 97.5)),
                   challenge_score=A.challenge_score(fs, ra, ta), acc_retain=ra[0], acc_test=ta[0],
                   rmia_auc=rm["auc"], rmia_auc_ci_lo=rci["auc"][0], rmia_auc_ci_hi=rci["auc"][1],
                   rmia_tpr_at_1pct_fpr=rm["tpr_at_1pct_fpr"], rmia_tpr_ci_lo=rci["tpr_at_1pct_fpr"][0],
                   rmia_tpr_ci_hi=rci["tpr_at_1pct_fpr"][1])
        rows.append(row)
        examples.append(pd.DataFrame(dict(model=m, row=inputs["forget"], auc=ga["auc"], accuracy=ga["accuracy"],
                                          epsilon=eps, original_gold_gap=gap)))
    df = pd.DataFrame(rows)
    is_m = df["kind"] == "method"
    for col in ("perm_p", "retain_perm_p"):  # Holm over the methods only: the calibration rows are checks
        df.loc[is_m, f"{col}_holm"] = holm(df.loc[is_m, col].to_numpy())
        df.loc[~is_m, f"{col}_holm"] = df.loc[~is_m, col]
    # "caught" only where the swaps can reach the level: a method's Holm-adjusted p can fall below ALPHA only when
    # (number of methods) x the smallest p < ALPHA; a calibration row, tested alone, when the smallest p < ALPHA
    p_min = df["perm_p_min"].max()
    df["testable"] = np.where(is_m, int(is_m.sum()) * p_min < ALPHA, p_min < ALPHA)
    df["caught"] = [bool(p < ALPHA) if t else None for p, t in zip(df["perm_p_holm"], df["testable"])]
    df["retain_caught"] = [bool(p < ALPHA) if t else None for p, t in zip(df["retain_perm_p_holm"], df["testable"])]
    return df, pd.concat(examples, ignore_index=True)


def simulated_forget_score(n_models: int, shift: float, n_examples: int = 100, seed: int = 0) -> float:
    """The challenge's forget score of a simulated unlearner whose statistic is gold's shifted by `shift` standard
    deviations (0 = an ideal unlearner): what the score can reach at this N."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n_models, n_examples))
    return A.forget_score(rng.standard_normal((n_models, n_examples)) + shift, g)[0]


def fmt(row, key: str, d: int = 3, lo: str | None = None, hi: str | None = None) -> str:
    lo, hi = lo or f"{key}_ci_lo", hi or f"{key}_ci_hi"
    return f"{row[key]:.{d}f} [{row[lo]:.{d}f}, {row[hi]:.{d}f}]"


def section(df: pd.DataFrame, inputs: dict, population_like_gold: dict[str, bool]) -> list[str]:
    """The report's audit section: what a reader may conclude first, then the design, then the table."""
    k, n = len(inputs["trees"]), int(df["n_forget"].iloc[0])
    cal = df.set_index("model")
    methods = df[df["kind"] == "method"]
    testable = bool(methods["testable"].all()) if len(methods) else False
    p_min, need = float(df["perm_p_min"].max()), A.k_needed(max(len(methods), 1), ALPHA)
    caught = methods.loc[methods["caught"].map(yes), "model"].tolist()
    hidden = [m for m in caught if population_like_gold.get(m)]
    exposed = methods.loc[methods["retain_caught"].map(yes), "model"].tolist()
    orig, g2 = cal.loc["original"], cal.loc["gold_2"]
    cal_ok = bool(orig["testable"])
    ok_orig, ok_g2 = yes(orig["caught"]), not yes(g2["caught"])
    ideal, shifted = simulated_forget_score(k, 0.0), simulated_forget_score(k, 1.0)
    swaps = (f"exact over the {int(df['perm_n'].max())} distinct within-tree swaps" if bool(df["perm_exact"].all())
             else f"{int(df['perm_n'].max()) - 1} random within-tree swaps")
    effects = ", ".join(f"{r['model']} {r['mean_auc']:.2f}" for _, r in methods.sort_values("mean_auc").iterrows())
    if testable:
        head = [f"- **Caught per example** (Gaussian test, mean per-example AUC against its within-tree-swap null, "
                f"one-sided permutation p {swaps}, Holm over {len(methods)} methods, α {ALPHA}): "
                f"{', '.join(caught) if caught else 'none'}.",
                f"- **Caught although the population attacks showed no gap to gold** (no gap shown across the seeds "
                f"on MIA-efficacy nor on stage 06's forget-row attack AUCs; \"no gap shown\" is not \"like gold\"): "
                f"{', '.join(hidden) if hidden else 'none'}.",
                f"- **Retain control** ({n} retain rows; a method caught there changed rows it should keep): "
                f"{', '.join(exposed) if exposed else 'none caught'}."]
    else:
        head = [f"- **Cannot test at K = {k}**: the within-tree swaps have 2^(K - 1) = {2 ** (k - 1)} distinct values, "
                f"so the smallest p is {p_min:.3g} and Holm over {len(methods)} methods can reach at best "
                f"{min(1.0, len(methods) * p_min):.3g} > α {ALPHA}: no method is called caught or cleared. "
                f"K >= {need} can reach it (make audit K={need}).",
                f"- **Effect sizes** (mean per-example AUC, 0.5 = cannot tell from gold; null mean "
                f"{methods['floor_mean_auc'].mean():.3f}): {effects}. Large effects suggest separation; at this K "
                "they are not a test."]
    if cal_ok:
        head.append(f"- **Calibration** (each tested alone): the original {'is' if ok_orig else 'is NOT'} caught (mean "
                    f"AUC {fmt(orig, 'mean_auc')}, p {orig['perm_p']:.3g}); gold_2 {'is not' if ok_g2 else 'IS'} "
                    f"caught (mean AUC {fmt(g2, 'mean_auc')}, null mean {g2['floor_mean_auc']:.3f}, p "
                    f"{g2['perm_p']:.3g})" + ("." if ok_orig and ok_g2 else
                                               ": the audit is not calibrated at this K; read nothing into it."))
    else:
        head.append(f"- **Calibration**: not testable at K = {k} (smallest p {p_min:.3g} >= α {ALPHA}): the original's "
                    f"mean AUC {fmt(orig, 'mean_auc')}, gold_2's {fmt(g2, 'mean_auc')}.")
    lines = [f"## Per-example audit: sample-wise track, K = {k} seed trees ({', '.join(inputs['trees'])})", "", *head,
             f"- **The challenge's forget score at N = {k} is coarse** (N < 16): a simulated ideal unlearner scores "
             f"{ideal:.2f}, one shifted by 1 standard deviation {shifted:.2f} (common.audit_report."
             "simulated_forget_score, 100 examples). The challenge runs 512 unlearnings from one original, so a "
             "deterministic method (SSD) scores 0 there; here its spread comes from the K originals, so its score is "
             "not comparable with the challenge's.", ""]
    if inputs["missing"]:
        lines += [f"Not in every tree, so not audited: {', '.join(inputs['missing'])}.", ""]
    if inputs.get("diverged"):
        lines += [f"Diverged (non-finite logits in at least one tree), so not audited: {', '.join(sorted(inputs['diverged']))}.",
                  ""]
    lines += [
        "Design: a fixed-forget-set, K-seed audit in the NeurIPS 2023 unlearning challenge's style, not Hayes et al.'s "
        "random-half shadow U-LiRA (hundreds of shadow models). Per forget example, the statistic log p_y - "
        "log(1 - p_y) of the K unlearned models and the K golds; for each held-out seed, Gaussians fitted to the other "
        f"K - 1 of each group{' with the variance pooled over the examples (K < 16)' if k < A.POOL_BELOW else ''}; "
        "the held-out unlearned model and gold are scored by the likelihood ratio. Per-example AUC over the 2K scores "
        "(0.5 = cannot tell; the null is what the test scores when tree k's model and gold_k trade labels, tree by "
        "tree: they share original_k, so only those swaps are exchangeable; leaving a model out of its own group's "
        "fit pulls it below 0.5), accuracy (ratio > 0 = called unlearned), the share of examples with "
        "AUC >= 0.9 and TPR at 1 % FPR over every (model, example) score; intervals: 95 % bootstrap over the forget "
        "examples (the K models fixed). Forget score: google-deepmind/unlearning_evaluation's per-example epsilon "
        f"(delta {A.DELTA:g}, its threshold families, cap {A.EPSILON_CAP:g} for perfect separation) in 0.5-wide buckets, "
        "on the CPU; challenge score = forget score x RA_u / RA_r x TA_u / TA_r (retain and test_eval accuracy, means "
        f"over the K models). Offline RMIA (a = {A.RMIA_A}, fixed and untuned: ml_privacy_meter tunes it on a paired "
        "reference model, which this audit does not train; gamma 1): each model scored against the other trees' golds "
        "as OUT references, test_eval as the population; pooled AUC and TPR at 1 % FPR. A deterministic method (SSD) "
        "gets its spread from the K originals it starts from.", "",
        "| model | Gaussian AUC | accuracy | AUC >= 0.9 | TPR @ 1 % FPR | null (mean, q95) | p (Holm) | retain control "
        "AUC (p Holm) | forget score | challenge score | RMIA AUC | RMIA TPR @ 1 % FPR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        name = f"{r['model']} (calibration)" if r["kind"] == "calibration" else r["model"]
        lines.append(
            f"| {name} | {fmt(r, 'mean_auc')} | {fmt(r, 'mean_accuracy')} | {fmt(r, 'share_auc_ge_0_9')} | "
            f"{fmt(r, 'tpr_at_1pct_fpr')} | {r['floor_mean_auc']:.3f}, {r['floor_q95']:.3f} | "
            f"{r['perm_p_holm']:.3g}{' **caught**' if yes(r['caught']) else ''} | {fmt(r, 'retain_mean_auc')} "
            f"({r['retain_perm_p_holm']:.3g}) | {fmt(r, 'forget_score', 2)} | {r['challenge_score']:.2f} | "
            f"{fmt(r, 'rmia_auc')} | {fmt(r, 'rmia_tpr_at_1pct_fpr', 3, 'rmia_tpr_ci_lo', 'rmia_tpr_ci_hi')} |")
    lines += ["", "Per model: audit.csv; per example (AUC, accuracy, epsilon, the original-vs-gold gap of the row): "
              "07_report/audit_examples.csv.", ""]
    return lines
