"""Stage 07's figures, drawn from the report's tables (no data files, no forward passes); each returns the PNG
path, or None when the tables hold nothing to draw. Conventions: ROC on log-log axes (LiRA, Carlini et al. 2022),
Avg Gap against RTE on a log x axis, error bars = std across seeds."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from common.io import save_figure  # noqa: E402

REFS = ("original", "gold", "gold_2")  # reference rows: not methods
ROC_ATTACK = "loss"  # the ROC figure's attack: no method trains against it


def plot_accuracy(summary: pd.DataFrame, out: Path) -> Path | None:
    """Accuracy per split and model, bars = mean over seeds, error bars = std across seeds."""
    acc = [c for c in summary.columns if c.startswith("acc_") and "_ci" not in c]
    if not acc or not len(summary):
        return None
    data = summary[["track", "model", "seed", *acc]].melt(["track", "model", "seed"], var_name="split",
                                                             value_name="accuracy (%)").dropna()
    g = sns.catplot(data=data, kind="bar", x="split", y="accuracy (%)", hue="model", col="track", errorbar="sd",
                    sharex=False, height=3.6, aspect=1.8)
    g.set_xticklabels(rotation=25, ha="right")
    save_figure(g.figure, out / "accuracy.png")
    plt.close(g.figure)
    return out / "accuracy.png"


def plot_js_entropy(tables: dict, out: Path) -> Path | None:
    df = tables.get("vit")
    cols = [c for c in ("jsd_gold_test_forget", "jsd_gold_test_retain", "entropy_test_forget") if c in df.columns] \
        if df is not None else []
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(4.6 * len(cols), 3.6), squeeze=False)
    for ax, c in zip(axes[0], cols):
        sns.barplot(x=df.index, y=df[c], ax=ax, hue=df.index, legend=False)
        ax.set_title(c + (" (JS distance, natural log)" if c.startswith("jsd") else " (nats)"), fontsize=9)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=45)
    if "entropy_test_forget" in cols:
        axes[0][-1].axhline(math.log(10), ls="--", c="grey", lw=1, label="uniform (ln 10)")
        axes[0][-1].legend(fontsize=8)
    save_figure(fig, out / "vit_js_entropy.png")
    plt.close(fig)
    return out / "vit_js_entropy.png"


def plot_roc(roc: dict, out: Path) -> Path | None:
    """The loss attack's ROC on held-out members vs non-members, log-log axes (LiRA's convention), a panel per
    track."""
    tracks = {t: v for t, v in roc.items() if isinstance(v, dict) and v}
    if not tracks:
        return None
    fig, axes = plt.subplots(1, len(tracks), figsize=(5.0 * len(tracks), 4.6), squeeze=False)
    for ax, (track, models) in zip(axes[0], tracks.items()):
        for model, curves in models.items():
            curve = curves.get(ROC_ATTACK, curves) if isinstance(curves, dict) else {}
            if "fpr" not in curve:
                continue
            pts = [(f, t) for f, t in zip(curve["fpr"], curve["tpr"]) if f > 0 and t > 0]
            if pts:
                ax.plot(*zip(*pts), label=model, lw=2 if model == "gold" else 1.2, ls="--" if model == "gold" else "-")
        ax.plot([1e-3, 1], [1e-3, 1], c="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="FPR", ylabel="TPR",
               title=f"{track}: {ROC_ATTACK} attack, held-out members vs non-members")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, ncol=2)
    save_figure(fig, out / "roc.png")
    plt.close(fig)
    return out / "roc.png"


def plot_gap_vs_rte(agg: dict, out: Path) -> Path | None:
    """Avg Gap (lower = closer to gold) against RTE (% of gold's training time, log x), every method of both
    tracks; error bars = std across seeds."""
    frames = [df.loc[[i for i in df.index if i not in REFS]].assign(track=t).reset_index(names="method")
              for t, df in agg.items() if {"avg_gap", "rte_pct_of_gold"} <= set(df.columns)]
    data = pd.concat(frames, ignore_index=True).dropna(subset=["avg_gap", "rte_pct_of_gold"]) if frames else None
    if data is None or not len(data[data.rte_pct_of_gold > 0]):
        return None
    data = data[data.rte_pct_of_gold > 0]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for marker, (track, d) in zip("os", data.groupby("track")):
        ax.errorbar(d.rte_pct_of_gold, d.avg_gap, xerr=d.get("rte_pct_of_gold_std"), yerr=d.get("avg_gap_std"),
                    fmt=marker, ms=6, capsize=2, lw=0.8, label=f"{track} track")
        for _, r in d.iterrows():
            ax.annotate(r["method"], (r["rte_pct_of_gold"], r["avg_gap"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set(xscale="log", xlabel="RTE: wall time, % of gold's training time (log)", ylabel="Avg Gap to gold (%)",
           title="Unlearning methods: distance to gold vs cost (mean ± std over seeds)")
    ax.legend(fontsize=8)
    save_figure(fig, out / "gap_vs_rte.png")
    plt.close(fig)
    return out / "gap_vs_rte.png"


def plot_training(m: dict, out: Path) -> Path | None:
    curves = []
    for stage, track in (("02_train_resnet", "resnet"), ("03_train_vit_refs", "vit")):
        for model, v in m.get(stage, {}).get("models", {}).items():
            for h in v.get("history", []) if isinstance(v, dict) else []:
                if "val_acc" in h:  # validation rows: the reported test rows are scored once, at the end
                    curves.append(dict(track=track, model=model, epoch=h["epoch"], val_acc=h["val_acc"]))
    if not curves:
        return None
    g = sns.relplot(data=pd.DataFrame(curves), kind="line", x="epoch", y="val_acc", hue="model", col="track",
                    marker="o", height=3.2, aspect=1.3, facet_kws=dict(sharex=False))
    g.set_axis_labels("epoch", "validation accuracy (%)")
    save_figure(g.figure, out / "training_curves.png")
    plt.close(g.figure)
    return out / "training_curves.png"
